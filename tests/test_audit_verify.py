"""The streaming verifier (storage/audit_verify.py) on SQLite and PostgreSQL: chains written
as the store writes them verify, and for every kind of damage it names the same first
bad entry, with the same reason, as the slow reference (each row read alone through
SQLAlchemy, then `find_chain_break`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.domain.audit import AuditEvent
from storage import SqlStore
from storage.audit_verify import verify_chain
from tests.support.audit_chain import bulk_insert, chained_rows, reference_verify
from tests.test_storage_audit import Attacker

COUNT = 12


@pytest.fixture
def attacker(database_url: str) -> Iterator[Attacker]:
    a = Attacker(database_url)
    yield a
    a.close()


def appended(store: SqlStore, count: int = COUNT) -> None:
    for n in range(1, count + 1):
        store.append(AuditEvent(f"U{n:04d}", "backup.requested", f"backup-{n}",
                                {"n": n, "reason": f"reason «{n}»\n\t\"quoted\" \\ ✓"}))


def same_as_reference(store: SqlStore) -> tuple[int, Any]:
    """The fast answer, checked against the reference for several fetch sizes."""
    expected = reference_verify(store)
    assert store.verify() == expected
    for fetch_size in (1, 2, 5, 1000):
        assert verify_chain(store.engine, fetch_size=fetch_size) == expected, fetch_size
    return expected


def test_a_chain_written_in_bulk_verifies(database_url: str) -> None:
    rows = list(chained_rows(2500))
    with SqlStore(database_url) as store:
        bulk_insert(database_url, rows)
        assert store.verify() == (2500, None)
        assert verify_chain(store.engine, fetch_size=7) == (2500, None)
        head = store.head()
        assert head is not None and head.hash == rows[-1].hash


def test_details_equivalent_to_what_was_hashed_still_verify(
        store: SqlStore, attacker: Attacker) -> None:
    """Entries whose stored text is not the text that was hashed, though it means the
    same: integer keys (stored in numeric order, hashed in text order) and spacing."""
    appended(store, 3)
    store.append(AuditEvent("U1", "x", "y", {2: "two", 10: "ten"}))  # type: ignore[dict-item]
    appended(store, 3)
    original = attacker.raw("details", 2)
    attacker.set("details", 2, json.dumps(json.loads(original), indent=2))
    assert same_as_reference(store) == (7, None)
    attacker.set("actor", 6, "U_EVIL")  # a real edit after them is still found at its entry
    checked, broken = same_as_reference(store)
    assert (checked, broken.seq) == (5, 6) and "edited" in broken.reason


Tamper = Callable[[Attacker], object]

TAMPERS: dict[str, tuple[Tamper, int, int]] = {
    # name: (what the attacker does, the seq of the first bad entry, entries checked)
    "edited actor": (lambda a: a.set("actor", 5, "U_EVIL"), 5, 4),
    "edited details": (lambda a: a.set("details", 8, '{"n":-8}'), 8, 7),
    "details not JSON": (lambda a: a.set("details", 4, "not json {"), 4, 3),
    "details not an object": (lambda a: a.set("details", 4, "[1, 2]"), 4, 3),
    "edited hash": (lambda a: a.set("hash", 6, "f" * 64), 6, 5),
    "edited prev_hash": (lambda a: a.set("prev_hash", 9, "e" * 64), 9, 8),
    "removed entry": (lambda a: a.run("DELETE FROM audit_entries WHERE seq = 7"), 8, 6),
    "removed first entry": (lambda a: a.run("DELETE FROM audit_entries WHERE seq = 1"), 2, 0),
    # (hashes made unique with a letter no hex digest has)
    "inserted before the first": (lambda a: a.run(
        "INSERT INTO audit_entries SELECT 0, created_at, actor, action, subject, details, "
        "'y' || substr(prev_hash, 2), 'z' || substr(hash, 2) FROM audit_entries "
        "WHERE seq = 1"), 0, 0),
    "inserted after a gap": (lambda a: a.run(
        f"INSERT INTO audit_entries SELECT {COUNT + 2}, created_at, actor, action, subject, "
        "details, hash, 'z' || substr(hash, 2) FROM audit_entries "
        f"WHERE seq = {COUNT}"), COUNT + 2, COUNT),
    "an edit before an unreadable row": (
        lambda a: (a.set("subject", 3, "backup-x"), a.set("details", 5, "{")), 3, 2),
    "an unreadable row before an edit": (
        lambda a: (a.set("details", 3, "{"), a.set("subject", 5, "backup-x")), 3, 2),
}

SQLITE_TAMPERS: dict[str, tuple[Tamper, int | None]] = {
    # SQLite keeps any text, or any type, in any column. None: the chain still holds.
    "timestamp not a time": (lambda a: a.set("created_at", 6, "yesterday"), 6),
    "timestamp moved": (lambda a: a.set("created_at", 6, "2020-01-01 00:00:00.000000"), 6),
    "timestamp moved by a zone": (
        lambda a: a.set("created_at", 6, a.raw("created_at", 6) + "+01:00"), 6),
    "timestamp written another way, same instant": (
        lambda a: a.set("created_at", 6, a.raw("created_at", 6).replace(" ", "T") + "Z"),
        None),
    "timestamp with another separator, same instant": (
        lambda a: a.set("created_at", 6, a.raw("created_at", 6).replace(" ", "X")), None),
    "actor a number": (lambda a: a.set("actor", 4, 4), 4),
    "details a number": (lambda a: a.set("details", 4, 4), 4),
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_the_first_bad_entry_is_the_references(
        store: SqlStore, attacker: Attacker, name: str) -> None:
    tamper, first_bad, checked_before = TAMPERS[name]
    appended(store)
    tamper(attacker)
    checked, broken = same_as_reference(store)
    assert broken is not None and broken.seq == first_bad
    assert checked == checked_before


@pytest.mark.parametrize("name", list(SQLITE_TAMPERS))
def test_the_first_bad_entry_on_sqlite_text(tmp_path: Any, name: str) -> None:
    url = f"sqlite:///{tmp_path / 'lifeguard.db'}"
    tamper, first_bad = SQLITE_TAMPERS[name]
    with SqlStore(url) as store:
        appended(store)
        attacker = Attacker(url)
        try:
            tamper(attacker)
        finally:
            attacker.close()
        checked, broken = same_as_reference(store)
    if first_bad is None:
        assert (checked, broken) == (COUNT, None)
    else:
        assert broken is not None and broken.seq == first_bad and checked == first_bad - 1


_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                max_size=8)
_columns = st.sampled_from(["actor", "action", "subject", "details", "prev_hash", "hash"])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_edit_is_judged_as_the_reference_judges_it(
        store: SqlStore, attacker: Attacker, data: st.DataObject) -> None:
    # The store lives across examples: each example extends the chain, then undoes its edit.
    count = data.draw(st.integers(1, 4))
    appended(store, count)
    head = store.head()
    assert head is not None
    seq = head.seq - data.draw(st.integers(0, count - 1))  # one of this example's entries
    column = data.draw(_columns)
    original = attacker.raw(column, seq)
    replacement = data.draw(st.one_of(
        st.just(original[:-1] + " "), st.just(original.upper()), _text,
        st.just(json.dumps({"tampered": True})), st.just(original[:-1] + "0")))
    if replacement == original:
        return
    attacker.set(column, seq, replacement)
    try:
        checked, broken = same_as_reference(store)
        if broken is not None:
            assert broken.seq == seq and checked == seq - 1
    finally:
        attacker.set(column, seq, original)
    assert store.verify() == (head.seq, None)
