"""Property: whatever text follows /restore, nothing changes in Neon before an approval,
and input that is refused records no request. In-process: the real parser, the real
restore service and a real SQLite store; Neon and Slack are recording stand-ins."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.domain.errors import LifeguardError
from bot.domain.restores import RestoreAt, RestoreFrom, RestorePromote, parse_restore_command
from storage import SqlStore
from tests.support.restore_stubs import RecordingNeon, restore_service

_folder = Path(tempfile.mkdtemp(prefix="lifeguard-props-"))
STORE = SqlStore(f"sqlite:///{_folder / 'store.db'}")
NEON = RecordingNeon()
SERVICE = restore_service(STORE, NEON)

FRAGMENTS = st.sampled_from([
    "from", "promote", "status", "cancel", "log", "help", "ago", "minutes", "hours", "days",
    "14:25", "25:99", "2026-11-21", "2026-11-21T14:25:00Z", "2027-01-01 00:00", "UTC",
    "Europe/Berlin", "Mars/Olympus", "+01:00", "backup-20261120-101500", "restore-x",
    "pre-restore-20261121-101010", "main", "-", ":", "T", "Z", "0", "999999", "`", "<!channel>",
])
BRANCH_COMMANDS = st.tuples(
    st.sampled_from(["from", "promote", "FROM", "promote  "]),
    st.sampled_from(["backup-20261120-101500", "restore-20261121-1425", "main",
                     "pre-restore-20261121-101010", "backup-2026", "x" * 300]),
    st.text(max_size=20)).map(" ".join)
TEXTS = st.one_of(st.text(max_size=80), st.lists(FRAGMENTS, max_size=6).map(" ".join),
                  BRANCH_COMMANDS)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_no_neon_mutation_and_no_request_for_refused_input(text: str) -> None:
    before = len(STORE.requests.list(limit=10_000))
    recorded = False
    try:
        parsed = parse_restore_command(text)
        where: dict[str, Any] = {"channel_id": "C0OPS", "response_url": None}
        if isinstance(parsed, RestoreAt):
            SERVICE.request_point_in_time("U0ALICE", parsed.when_text, parsed.reason, **where)
            recorded = True
        elif isinstance(parsed, RestoreFrom):
            SERVICE.request_from_branch("U0ALICE", parsed.branch_name, parsed.reason, **where)
            recorded = True
        elif isinstance(parsed, RestorePromote):
            SERVICE.request_promotion("U0ALICE", parsed.branch_name, parsed.reason, **where)
            recorded = True
    except LifeguardError:
        pass
    assert NEON.mutations == []
    after = len(STORE.requests.list(limit=10_000))
    assert after == before + (1 if recorded else 0)
