"""Domain entities kept whole: one mapping per entity, one repository for all of them.

An entity's fields are its table's columns (a nested dataclass, such as a request's Plan,
is flattened into columns of its own names); the columns' types (storage.models) convert
each value, so a row reads back as the entity and an entity saves as a row with no
converter of its own. Columns the store keeps for itself (work leases, a drill's open
slot) are not fields of the entity.

`save(entity, expected_version)` is the one way to change a record: a compare-and-set
`UPDATE … SET <every field>, version = expected + 1 WHERE id = ? AND version = expected`
with its audit event in the same transaction. The engine's own writes also name their
lease (`AND lease_owner = ?`), so a worker that lost its lease cannot write. A change of
state must be one the domain's state machine allows (`check`), judged against the row as
stored in the same transaction.

Work leases (`claim`, `release`) mark who is moving a record forward and until when;
they leave the version alone: a lease is not a change of the record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import psycopg.errors
from sqlalchemy import Row, Table, and_, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.domain.audit import AuditEvent

if TYPE_CHECKING:
    from storage.store import SqlStore

E = TypeVar("E")
T = TypeVar("T")


@dataclass(frozen=True)
class EntityMap(Generic[E]):
    """How one kind of domain entity is a row of `table`."""

    table: Table
    entity: type[E]
    duplicate: type[Exception]  # raised when a unique key (id, name) is taken
    state_column: str  # what `list(states)` filters on
    nested: Mapping[str, type] = field(default_factory=dict)  # field -> flattened dataclass
    # store-only columns derived from the entity (a drill's open slot)
    kept: Callable[[Any], dict[str, Any]] = lambda entity: {}
    # (stored, new): raise ValueError for a change the domain does not allow
    check: Callable[[Any, Any], None] | None = None

    def row(self, entity: E) -> dict[str, Any]:
        if not isinstance(entity, self.entity):
            raise TypeError(f"expected a {self.entity.__name__}, got {type(entity).__name__}")
        values: dict[str, Any] = {}
        for item in fields(entity):  # type: ignore[arg-type]
            value = getattr(entity, item.name)
            if item.name in self.nested:
                kind = self.nested[item.name]
                if not isinstance(value, kind):
                    raise TypeError(f"{item.name} must be a {kind.__name__}")
                values |= {part.name: getattr(value, part.name) for part in fields(value)}
            else:
                values[item.name] = value
        return values | self.kept(entity)

    def entity_of(self, row: Row[Any]) -> E:
        data = row._mapping
        values: dict[str, Any] = {}
        for item in fields(self.entity):  # type: ignore[arg-type]
            if item.name in self.nested:
                kind = self.nested[item.name]
                assert is_dataclass(kind)
                values[item.name] = kind(**{part.name: data[part.name]
                                            for part in fields(kind)})
            else:
                values[item.name] = data[item.name]
        return self.entity(**values)


def state_change(check: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """A mapping's `check` from a domain transition rule: staying in a state is no
    transition; an unknown state is a ValueError."""
    def checked(stored: Any, new: Any) -> None:
        state = type(stored.state)(new.state)
        if state != stored.state:
            check(stored.state, state)
    return checked


def is_unique_violation(exc: IntegrityError) -> bool:
    """A unique key was taken (not a NOT NULL or another constraint)."""
    if isinstance(exc.orig, sqlite3.IntegrityError):
        return "UNIQUE constraint failed" in str(exc.orig)
    return isinstance(exc.orig, psycopg.errors.UniqueViolation)


class Records(Generic[E]):
    """The records of one kind of entity in a SqlStore."""

    def __init__(self, store: SqlStore, mapping: EntityMap[E]) -> None:
        self._store = store
        self._map = mapping
        self._table = mapping.table

    def add(self, entity: E, event: AuditEvent) -> E:
        """Insert the entity and append `event` in one transaction. Raises the mapping's
        duplicate error (and records nothing) when its id or another unique key is taken."""
        values = self._map.row(entity)

        def work(conn: Connection) -> E:
            conn.execute(insert(self._table).values(**values))
            self._store.append_in(conn, event)
            return self._read(conn, values["id"])

        return self._write(work, f"{values['id']} cannot be recorded")

    def get(self, entity_id: str) -> E | None:
        row = self._store.transaction(
            lambda conn: conn.execute(
                select(self._table).where(self._table.c.id == entity_id)).first(),
            write=False)
        return None if row is None else self._map.entity_of(row)

    def list(self, states: tuple[StrEnum, ...] | None = None, *,
             limit: int | None = None) -> list[E]:
        """Records (in `states`, if given), newest first (by created_at, then id)."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise ValueError("limit must be a positive int")
        query = select(self._table)
        if states is not None:
            if not states:
                return []
            query = query.where(self._table.c[self._map.state_column].in_(states))
        query = query.order_by(self._table.c.created_at.desc(), self._table.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        rows = self._store.transaction(lambda conn: conn.execute(query).all(), write=False)
        return [self._map.entity_of(row) for row in rows]

    def counts(self, *columns: str) -> dict[tuple[Any, ...], int]:
        """How many records have each combination of these columns' values (such as
        ("state",) or ("action", "state")), read as the domain's values."""
        selected = [self._table.c[name] for name in columns]
        query = select(*selected, func.count()).group_by(*selected)
        rows = self._store.transaction(lambda conn: conn.execute(query).all(), write=False)
        return {tuple(row[:-1]): row[-1] for row in rows}

    def find(self, **columns: Any) -> E | None:
        """The record whose columns have these values (a unique key), or None."""
        query = select(self._table).where(
            and_(*(self._table.c[name] == value for name, value in columns.items())))
        row = self._store.transaction(lambda conn: conn.execute(query).first(), write=False)
        return None if row is None else self._map.entity_of(row)

    def save(self, entity: E, expected_version: int, event: AuditEvent | None = None, *,
             lease_owner: str | None = None) -> E | None:
        """Write the whole entity if the stored version is still `expected_version` (and,
        given `lease_owner`, that owner still holds the lease), with `event` in the same
        transaction; the version is bumped and `updated_at` set to now. None, and nothing
        written, when another change got there first or the lease was lost. ValueError
        for a change of state the domain does not allow."""
        if isinstance(expected_version, bool) or not isinstance(expected_version, int):
            raise TypeError("expected_version must be an int")
        values = self._map.row(entity)
        entity_id = values.pop("id")
        values.pop("version", None)
        table = self._table

        def work(conn: Connection) -> E | None:
            if self._map.check is not None:
                stored = conn.execute(select(table).where(table.c.id == entity_id)).first()
                if stored is None or stored.version != expected_version:
                    return None  # stale: the caller must read again whatever it wants
                self._map.check(self._map.entity_of(stored), entity)
            condition = and_(table.c.id == entity_id, table.c.version == expected_version)
            if lease_owner is not None:
                condition = and_(condition, table.c.lease_owner == lease_owner)
            result = conn.execute(update(table).where(condition).values(
                {**values, "updated_at": self._store.now(), "version": expected_version + 1}))
            if result.rowcount != 1:
                return None
            if event is not None:
                self._store.append_in(conn, event)
            return self._read(conn, entity_id)

        return self._write(work, f"{entity_id} cannot be changed so")

    # --- work leases ---------------------------------------------------------------

    def claim(self, entity_id: str, owner: str, lease_seconds: float) -> E | None:
        """Take (or extend, for the same owner) the work lease until now + lease_seconds.
        None when another owner's lease has not run out, or there is no such record.
        Leases use this process's clock: keep replicas' clocks in sync (NTP)."""
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        table = self._table

        def work(conn: Connection) -> E | None:
            now = self._store.now()
            result = conn.execute(
                update(table)
                .where(and_(table.c.id == entity_id,
                            or_(table.c.lease_until.is_(None), table.c.lease_until < now,
                                table.c.lease_owner == owner)))
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds)))
            return self._read(conn, entity_id) if result.rowcount == 1 else None

        return self._store.transaction(work, write=True)

    def release(self, entity_id: str, owner: str) -> None:
        """Give up the lease if `owner` holds it; otherwise do nothing."""
        table = self._table
        self._store.transaction(
            lambda conn: conn.execute(
                update(table).where(and_(table.c.id == entity_id, table.c.lease_owner == owner))
                .values(lease_owner=None, lease_until=None)),
            write=True)

    def lease_of(self, entity_id: str) -> tuple[str, datetime] | None:
        """(owner, until) of the current lease, run out or not; None if there is none."""
        row = self._store.transaction(
            lambda conn: conn.execute(
                select(self._table.c.lease_owner, self._table.c.lease_until)
                .where(self._table.c.id == entity_id)).first(),
            write=False)
        if row is None or row.lease_owner is None or row.lease_until is None:
            return None
        return row.lease_owner, row.lease_until

    def _write(self, work: Callable[[Connection], T], refusal: str) -> T:
        """Run a writing transaction; a taken unique key is the entity's duplicate error."""
        try:
            return self._store.transaction(work, write=True)
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
            raise self._map.duplicate(
                f"{self._map.entity.__name__} {refusal}: {exc.orig}") from exc

    def _read(self, conn: Connection, entity_id: str) -> E:
        return self._map.entity_of(
            conn.execute(select(self._table).where(self._table.c.id == entity_id)).one())
