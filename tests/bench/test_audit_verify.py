"""`audit verify` of 1,000,000 entries on SQLite and on PostgreSQL: the streaming verifier
(storage/audit_verify.py, what `python -m bot audit verify` runs) side by side with the
verifier it replaced (entries read through SQLAlchemy in batches, `find_chain_break`).

Run: `python -m pytest -q -s tests/bench/test_audit_verify.py`. The goal is under 10 s for
a million entries on each store. The chain is made once with `entry_hash`, as appends
make it, and written in bulk. Prints figures and ratios; `BENCH_AUDIT_ENTRIES` changes
the count.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from storage import SqlStore
from tests.support.audit_chain import bulk_insert, chained_rows, old_verify
from tests.support.postgres import PostgresServer

ENTRIES = int(os.environ.get("BENCH_AUDIT_ENTRIES", "1000000"))
GOAL_SECONDS = 10.0


def timed(work):  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    result = work()
    return result, time.perf_counter() - began


@pytest.mark.bench
def test_audit_verify_of_a_million_entries(postgres: PostgresServer, tmp_path: Path) -> None:
    entries, making = timed(lambda: list(chained_rows(ENTRIES)))
    stores = {"SQLite": f"sqlite:///{tmp_path / 'bench-audit.db'}",
              "PostgreSQL": postgres.create_database("bench_audit_verify")}
    lines = []
    for name, url in stores.items():
        with SqlStore(url) as store:  # migrated, empty
            _, filling = timed(lambda url=url: bulk_insert(url, entries))
            store.batch_size = 1000
            new, new_seconds = timed(store.verify)
            old, old_seconds = timed(lambda store=store: old_verify(store))
            assert new == old == (ENTRIES, None)
            head = store.head()
            assert head is not None and head.hash == entries[-1].hash
        verdict = "met" if new_seconds < GOAL_SECONDS else "NOT met"
        lines.append(f"  {name:<10}  fill {filling:6.1f} s   old {old_seconds:6.1f} s   "
                     f"new {new_seconds:6.2f} s   old/new {old_seconds / new_seconds:5.1f}×"
                     f"   goal < {GOAL_SECONDS:.0f} s: {verdict}")
    print()
    print(f"audit verify bench: {ENTRIES} entries (chain made with entry_hash in "
          f"{making:.1f} s, then written in bulk)")
    print("\n".join(lines))
