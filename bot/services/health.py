"""The health report: gathers what the checks of bot.domain.health need, evaluates them,
and (on the scheduled run) alerts on the checks whose level changed.

Inputs, and where each comes from:

- restore window: the project's `history_retention_seconds` (GET /projects/{id});
- branches: `GET …/branches/count` against the plan's branch limit, which Neon reports as
  `project.owner.branches_limit` (ProjectOwnerData in Neon's OpenAPI document); the
  composition root passes a callable that reads it (None: not reported, the check is OK
  and says so);
- newest backup: the newest `ready` backup in Lifeguard's store;
- last drill: a callable giving the last successful drill (None when none is recorded,
  or when no drill service is wired: the check then fails, "no successful drill");
- storage: the largest branch's `logical_size` against the per-branch logical size limit
  Neon reports, `settings.quota.logical_size_bytes` when set (a project quota), else
  `branch_logical_size_limit_bytes` (the plan's). Both are per branch in Neon's document:
  a branch over it cannot be written to. Zero or absent means unlimited: OK, "no quota";
- requests: change requests and backups that failed in the last 24 h, and those
  unfinished (approved/running, requested/creating/deleting) with no progress for
  `stuck_after_minutes`. Pending requests wait for people, not for Lifeguard: not stuck.

State per check lives in the audit trail: the previous level of a check is the `level` of
the latest `health.changed` entry whose subject is `health:<key>`. The scheduled run posts
one alert per changed check (bot.domain.health.changes), then appends its
`health.changed` entry (posting first: a Slack outage means the alert is tried again on
the next run, not lost), and then posts the full report as the daily digest. The report
on demand (`/backup health`) reads the same inputs and neither alerts nor records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from bot.domain import health as rules
from bot.domain.audit import AuditEntry, AuditEvent
from bot.domain.backups import UNFINISHED_BACKUP_STATUSES, Backup, BackupStatus
from bot.domain.health import Check, Level, Thresholds
from bot.domain.requests import ChangeRequest, RequestState
from bot.domain.text import escape
from bot.neon.errors import NeonError
from bot.neon.models import Branch, Project
from bot.services.alerts import JobResult
from bot.services.neon_errors import explain_neon_error
from bot.services.ports import Records

log = logging.getLogger("lifeguard.health")
T = TypeVar("T")

SYSTEM = "system"
CHANGED = "health.changed"
FAILED_WINDOW = timedelta(hours=24)


def subject_of(key: str) -> str:
    return f"health:{key}"


class HealthNeon(Protocol):
    def get_project(self) -> Project: ...
    def count_branches(self) -> int: ...
    def list_branches(self, search: str | None = None) -> list[Branch]: ...


class HealthStore(Protocol):
    backups: Records[Backup]
    requests: Records[ChangeRequest]

    def audit_for(self, subject: str) -> list[AuditEntry]: ...
    def append(self, event: AuditEvent) -> AuditEntry: ...


class HealthNotifier(Protocol):
    def health_changed(self, check: Check, previous: Level | None) -> None:
        """Post one alert about a check whose level changed; raise if it was not posted."""
        ...

    def health_digest(self, report: HealthReport) -> None:
        """Post the full report (the daily digest)."""
        ...


@dataclass(frozen=True)
class HealthReport:
    checks: tuple[Check, ...]
    level: Level
    at: datetime
    problems: tuple[str, ...] = ()  # inputs that could not be read, in plain words


@dataclass(frozen=True)
class HealthRun:
    """What the scheduled run did."""

    report: HealthReport
    alerted: tuple[tuple[Check, Level | None], ...]


class HealthService:
    def __init__(self, store: HealthStore, neon: HealthNeon, notifier: HealthNotifier, *,
                 branches_limit: Callable[[], int | None] | None = None,
                 last_drill: Callable[[], datetime | None] | None = None,
                 thresholds: Thresholds | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.neon = neon
        self.notifier = notifier
        self.branches_limit = branches_limit
        self.last_drill = last_drill
        self.thresholds = thresholds or Thresholds()
        self.now = now

    # --- the report -----------------------------------------------------------------------

    def report(self) -> HealthReport:
        """Every check, now. Reads Neon and the store; posts and records nothing."""
        now = self.now()
        t = self.thresholds
        problems: list[str] = []

        def read(what: str, call: Callable[[], T] | None) -> T | None:
            if call is None:
                return None
            try:
                return call()
            except NeonError as error:
                problems.append(f"{what}: {explain_neon_error(error)}")
            except Exception as error:  # a source that fails must not hide the others
                log.exception("health: could not read %s", what)
                problems.append(f"{what}: {escape(f'{type(error).__name__}: {error}')}")
            return None

        project = read("the project", self.neon.get_project)
        count = read("the branch count", self.neon.count_branches)
        limit = read("the branch limit", self.branches_limit)
        branches = read("the branches", self.neon.list_branches)
        drill = read("the last drill", self.last_drill)
        failed, stuck = self._failed_and_stuck(now)
        checks = (
            rules.check_restore_window(
                project.history_retention_seconds if project else None, t),
            rules.check_branch_count(count, limit, t),
            rules.check_backup_age(self._newest_backup(), now, t),
            rules.check_last_drill(drill, now, t),
            self._storage(project, branches),
            rules.check_requests(failed, stuck, t),
        )
        return HealthReport(checks, rules.overall(checks), now, tuple(problems))

    def _newest_backup(self) -> datetime | None:
        ready = self.store.backups.list((BackupStatus.READY,))
        return max((b.created_at for b in ready), default=None)

    def _storage(self, project: Project | None, branches: list[Branch] | None) -> Check:
        t = self.thresholds
        if project is None:
            # The quota itself is unknown, not "not reported": fail closed, as for a usage
            # that cannot be read against a known quota (any positive quota gives that).
            return rules.check_storage(None, 1, t)
        quota = _positive(project.quota.get("logical_size_bytes")) \
            or _positive(project.branch_logical_size_limit_bytes)
        sized = [b for b in branches or [] if b.logical_size is not None]
        if quota is None:
            used = max((b.logical_size or 0 for b in sized), default=None)
            return rules.check_storage(used, None, t)
        if branches is None or not sized:
            return rules.check_storage(None, quota, t)
        largest = max(sized, key=lambda b: (b.logical_size or 0, b.name))
        check = rules.check_storage(largest.logical_size, quota, t)
        return replace(check, value=f"{check.value}, largest branch `{escape(largest.name)}`")

    def _failed_and_stuck(self, now: datetime) -> tuple[int, int]:
        stuck_after = timedelta(minutes=self.thresholds.stuck_after_minutes)
        since = now - FAILED_WINDOW
        failed = [r for r in self.store.requests.list((RequestState.FAILED,), limit=500)
                  if (r.finished_at or r.updated_at) >= since]
        failed_backups = [b for b in self.store.backups.list((BackupStatus.FAILED,))
                          if b.updated_at >= since]
        stuck = [r for r in self.store.requests.list(
                     (RequestState.APPROVED, RequestState.RUNNING), limit=500)
                 if now - r.updated_at > stuck_after]
        stuck_backups = [b for b in self.store.backups.list(UNFINISHED_BACKUP_STATUSES)
                         if now - b.updated_at > stuck_after]
        return len(failed) + len(failed_backups), len(stuck) + len(stuck_backups)

    # --- state per check, alerts and the digest ------------------------------------------

    def previous_levels(self) -> dict[str, Level]:
        """The level each check had at its latest recorded change."""
        levels: dict[str, Level] = {}
        for key in KEYS:
            entries = [e for e in self.store.audit_for(subject_of(key)) if e.action == CHANGED]
            if entries:
                try:
                    levels[key] = Level(entries[-1].details.get("level"))
                except ValueError:
                    log.warning("health: unreadable level in audit entry #%d",
                                entries[-1].seq)
        return levels

    def run_scheduled(self) -> HealthRun:
        """The daily run: alert once per changed check, record it, post the digest."""
        report = self.report()
        alerted: list[tuple[Check, Level | None]] = []
        for check, before in rules.changes(self.previous_levels(), report.checks):
            try:
                self.notifier.health_changed(check, before)
            except Exception:
                log.exception("health: could not post the alert for %s; it is tried again "
                              "on the next run", check.key)
                continue
            self.store.append(AuditEvent(SYSTEM, CHANGED, subject_of(check.key), {
                "level": check.level.value,
                "previous": before.value if before else None,
                "value": check.value, "threshold": check.threshold}))
            alerted.append((check, before))
        self.notifier.health_digest(report)
        return HealthRun(report, tuple(alerted))

    def job(self) -> JobResult:
        run = self.run_scheduled()
        changed = ", ".join(f"{c.key} {p.value if p else 'new'}→{c.level.value}"
                            for c, p in run.alerted)
        return JobResult("health", True,
                         f"overall {run.report.level.value}; "
                         + (f"{len(run.alerted)} alert(s): {changed}" if changed
                            else "no check changed"))


KEYS = (rules.RESTORE_WINDOW, rules.BRANCH_COUNT, rules.BACKUP_AGE, rules.LAST_DRILL,
        rules.STORAGE, rules.REQUESTS)


def _positive(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else None
