"""Asking for a table restore: `/restore table <table> from <branch>|at <when> …` becomes a
change request like every restore (two-person approval, plan hash, expiry), after every
check that can be made before approval.

The source is a backup or restore branch, or, for `at <when>`, a restore branch of the
default branch at that moment, made when the request is made so that the table, its
columns, the row condition and the count are read from the data as it was then; that
branch is removed when the request ends (the steps remove it after a run; a request
rejected, cancelled or expired has it removed by the reconciler, `remove_unused_sources`).
If a check refuses the request, the branch is removed at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol

from bot.domain.audit import AuditEvent
from bot.domain.errors import ExternalServiceError, NotAllowed, NotFound
from bot.domain.instants import check_restore_window, describe_instant
from bot.domain.requests import ChangeRequest, Plan, RequestAction, RequestState
from bot.domain.restores import new_request_id, restore_branch_name
from bot.domain.table_restores import (
    RestoreTable,
    TableCopy,
    TableMode,
    check_table_source,
    restored_table_name,
)
from bot.domain.text import escape
from bot.domain.when import parse_when
from bot.neon.errors import NeonError
from bot.neon.models import Branch
from bot.services.branches import branch_connection_uri
from bot.services.neon_errors import explain_neon_error
from bot.services.ports import Records
from bot.services.table_source import Inspection, inspect
from bot.services.table_steps import TableNeon, remove_branch
from bot.services.work import SYSTEM

log = logging.getLogger("lifeguard.table_restores")

BRANCH_READY_SECONDS = 120.0  # the branch for `at <when>`, made while the person waits
CLOSED = (RequestState.REJECTED, RequestState.CANCELLED, RequestState.EXPIRED)


class Zones(Protocol):
    def time_zone(self, user_id: str) -> tzinfo: ...


class Recorder(Protocol):
    """The restore service's part: approvers, recording, the card and the DMs."""

    def check_approvers_configured(self) -> None: ...

    def record_request(self, request_id: str, plan: Plan, reason: str, extra: dict[str, Any],
                       *, channel_id: str | None,
                       response_url: str | None) -> ChangeRequest: ...


Inspect = Callable[..., Inspection]


class TableRestores:
    def __init__(self, neon: TableNeon, zones: Zones, records: Records[ChangeRequest],
                 recorder: Recorder, *, project_id: str, inspect_table: Inspect = inspect,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.neon = neon
        self.zones = zones
        self.records = records
        self.recorder = recorder
        self.project_id = project_id
        self.inspect_table = inspect_table
        self.now = now

    def request(self, user_id: str, asked: RestoreTable, *, channel_id: str | None,
                response_url: str | None) -> ChangeRequest:
        self.recorder.check_approvers_configured()
        request_id, now = new_request_id(), self.now()
        default: Branch = self._neon(self.neon.default_branch)
        extra: dict[str, Any] = {}
        instant = None
        if asked.branch_name is not None:
            check_table_source(asked.branch_name)
            source = self._named_branch(asked.branch_name)
            if source.id == default.id:
                raise NotAllowed(f"`{escape(source.name)}` is the live branch itself.")
            label = f"`{escape(source.name)}`"
        else:
            assert asked.when_text is not None
            zone = self.zones.time_zone(user_id)
            instant = parse_when(asked.when_text, now=now, zone=zone)
            project = self._neon(self.neon.get_project)
            check_restore_window(instant, now=now,
                                 window_seconds=project.history_retention_seconds, zone=zone)
            extra["instant_shown"] = describe_instant(instant, zone)
            source = self._branch_at(default, instant, request_id)
            extra["temporary_source"] = True
            label = f"`{escape(default.name)}` as it was at {extra['instant_shown']}"
        try:
            target = asked.table.name
            if asked.mode == TableMode.NEW:
                target = restored_table_name(asked.table.name, now)
            inspection = self._inspect(source, default, asked, label, target)
            table = inspection.table
            copy = TableCopy(schema=table.schema, table=table.name, mode=asked.mode,
                             condition=asked.condition, target_table=target)
            plan = Plan(action=RequestAction.RESTORE_TABLE, project_id=self.project_id,
                        requester=user_id, source_branch_id=source.id,
                        source_branch_name=source.name, target_branch_name=default.name,
                        target_branch_id=default.id, instant=instant, table_copy=copy)
            extra |= {"columns": list(table.copied), "key": list(table.key),
                      "rows": inspection.rows, "live_rows": inspection.live_rows,
                      "counted_at": now.isoformat()}
            return self.recorder.record_request(request_id, plan, asked.reason, extra,
                                                channel_id=channel_id,
                                                response_url=response_url)
        except BaseException:
            if extra.get("temporary_source"):
                self._remove_quietly(source)
            raise

    def _inspect(self, source: Branch, default: Branch, asked: RestoreTable, label: str,
                 target: str) -> Inspection:
        source_url = self._neon(lambda: branch_connection_uri(self.neon, source.id))
        live_url = self._neon(lambda: branch_connection_uri(self.neon, default.id))
        return self.inspect_table(source_url, live_url, asked.table, asked.mode,
                                  asked.condition, source_label=label, new_table=target)

    def _branch_at(self, default: Branch, instant: datetime, request_id: str) -> Branch:
        """A restore branch of the default branch at `instant`, to read the table from."""
        name = f"{restore_branch_name(instant)}-{request_id}"
        change = self._neon(lambda: self.neon.create_branch(
            name, parent_id=default.id, parent_timestamp=instant, with_endpoint=True))
        try:
            if change.operations:
                self.neon.wait_for_operations(list(change.operations),
                                              timeout=BRANCH_READY_SECONDS)
            return self.neon.wait_for_branch_ready(change.branch.id,
                                                   timeout=BRANCH_READY_SECONDS)
        except NeonError as error:
            self._remove_quietly(change.branch)
            raise ExternalServiceError(explain_neon_error(error)) from None

    def _named_branch(self, name: str) -> Branch:
        branch = self._neon(lambda: self.neon.find_branch_by_name(name))
        if branch is None:
            raise NotFound(f"Neon has no branch named `{escape(name)}`. `/backup list` shows "
                           "backups.")
        return branch

    def _remove_quietly(self, branch: Branch) -> None:
        try:
            remove_branch(self.neon, branch.id, branch.name)
        except Exception:  # the reconciler's sweep does not see it: say so in the log
            log.exception("could not remove branch %s made for a table restore", branch.name)

    @staticmethod
    def _neon(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except NeonError as error:
            raise ExternalServiceError(explain_neon_error(error)) from None

    # --- the reconciler's part -----------------------------------------------------------

    def remove_unused_sources(self) -> list[str]:
        """The branches made for `at <when>` requests that never ran (rejected, cancelled,
        expired) are removed; returns their names."""
        removed: list[str] = []
        for request in self.records.list(CLOSED, limit=100):
            if (request.plan.action != RequestAction.RESTORE_TABLE
                    or not request.extra.get("temporary_source")
                    or request.extra.get("source_removed")):
                continue
            name = request.plan.source_branch_name
            try:
                remove_branch(self.neon, request.plan.source_branch_id, name)
            except NeonError as error:
                log.warning("could not remove %s yet: %s", name, explain_neon_error(error))
                continue
            saved = self.records.save(
                replace(request, extra={**request.extra, "source_removed": True}),
                request.version,
                AuditEvent(SYSTEM, "request.source_removed", request.id, {"branch": name}))
            if saved is not None:
                removed.append(name)
        return removed
