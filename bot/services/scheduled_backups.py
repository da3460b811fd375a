"""Scheduled backups and pruning by a grandfather-father-son retention policy.

- `run_backup` takes the daily backup through the same BackupService path as
  `/backup now` (actor `scheduler`, no channel): it is recorded, audited and moved forward
  the same way, and the reconciler finishes it after a crash. A success is quiet (the
  daily health report shows the newest backup's age); a failure is posted to
  ALERTS_CHANNEL by the alerting notifier wrapped around the backup service's.
- Pruning plans with bot.domain.retention.plan_prune. The candidates are the project's
  branches named like backups, each marked `recorded_by_lifeguard` only when the store
  holds a `ready` backup of that name (and, once known, that branch id), so a branch
  someone else made, the default branch and a protected branch are always kept. Each
  deletion goes through BackupService's own delete path (`prepare_delete`, which checks
  Neon's flags again, `confirm_delete`, then `settle`): audited entry by entry, and
  refused there too for anything not a recorded backup.
- `/backup prune` shows the plan and a confirmation bound to the plan's hash (SHA-256 of
  the policy, the zone and the names kept and deleted). The click is recorded before
  Slack is acknowledged; then Lifeguard plans again and refuses when the hash differs,
  so nothing is deleted that was not shown.

Audit: `prune.planned` (shown to someone), `prune.confirmed`, `prune.refused`,
`prune.cancelled`, `prune.started` (the schedule), `prune.finished`; and per branch the
backup service's `backup.delete_asked`, `backup.delete_confirmed`, `backup.deleted` (or
`backup.delete_refused` / `backup.delete_failed`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Protocol

from bot.domain.audit import AuditEntry, AuditEvent
from bot.domain.backups import Backup, BackupStatus, is_backup_name
from bot.domain.errors import Conflict, ExternalServiceError, LifeguardError
from bot.domain.retention import PruneCandidate, PrunePlan, RetentionPolicy, plan_prune
from bot.domain.text import escape
from bot.neon.errors import NeonError
from bot.neon.models import Branch
from bot.services.alerts import SCHEDULER, Alert, Alerts, JobResult
from bot.services.backups import BackupService
from bot.services.neon_errors import explain_neon_error

log = logging.getLogger("lifeguard.scheduled_backups")

SCHEDULED_REASON = "scheduled daily backup"
PRUNE_SUBJECT = "prune"


class PruneNeon(Protocol):
    def list_branches(self, search: str | None = None) -> list[Branch]: ...


class PruneAudit(Protocol):
    def append(self, event: AuditEvent) -> AuditEntry: ...


@dataclass(frozen=True)
class PruneView:
    """A plan as shown: what goes, what stays and why, and the hash a confirmation names."""

    plan: PrunePlan
    plan_hash: str
    policy: RetentionPolicy
    zone: str


@dataclass(frozen=True)
class PruneOutcome:
    view: PruneView
    deleted: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]  # (branch name, why)
    pending: tuple[str, ...] = ()  # confirmed; Neon still deleting (the reconciler finishes)


class ScheduledBackups:
    def __init__(self, backups: BackupService, neon: PruneNeon, audit: PruneAudit,
                 alerts: Alerts, *, policy: RetentionPolicy, zone: tzinfo,
                 settle_seconds: float = 120.0,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.backups = backups
        self.neon = neon
        self.audit = audit
        self.alerts = alerts
        self.policy = policy
        self.zone = zone
        self.settle_seconds = settle_seconds
        self.now = now

    # --- the daily backup -----------------------------------------------------------------

    def run_backup(self) -> Backup:
        """Take the scheduled backup and wait (bounded) for it. A failure has been alerted
        by the time this returns (the alerting notifier sees the `failed` state)."""
        backup = self.backups.request_backup(SCHEDULER, SCHEDULED_REASON, channel_id=None,
                                             response_url=None)
        return self.backups.settle(backup.id, timeout=self.settle_seconds) or backup

    def backup_job(self) -> JobResult:
        backup = self.run_backup()
        if backup.status == BackupStatus.READY:
            return JobResult("backup", True, f"backup {backup.branch_name} is ready")
        if backup.status == BackupStatus.FAILED:
            return JobResult("backup", False,
                             f"backup {backup.branch_name} failed: {backup.error}")
        return JobResult("backup", True, f"backup {backup.branch_name} is "
                         f"{backup.status.value}; the reconciler finishes it")

    # --- planning -------------------------------------------------------------------------

    def plan(self) -> PruneView:
        """Plan from Neon's branches and the store's records. Raises
        ExternalServiceError when Neon cannot be asked (nothing is planned then)."""
        try:
            branches = self.neon.list_branches(search="backup-")
        except NeonError as error:
            raise ExternalServiceError(explain_neon_error(error)) from None
        records = {b.branch_name: b for b in self.backups.store.backups.list(
            (BackupStatus.READY,))}
        candidates = []
        for branch in branches:
            record = records.get(branch.name)
            recorded = record is not None and record.branch_id in (None, branch.id)
            if not (recorded or is_backup_name(branch.name)):
                continue  # not a backup at all (a name that merely contains "backup-")
            candidates.append(PruneCandidate(
                name=branch.name,
                # Lifeguard's own instant for its backups (the one in the name)
                created_at=record.created_at if record and recorded else branch.created_at,
                recorded_by_lifeguard=recorded, is_default=branch.default,
                is_protected=branch.protected))
        plan = plan_prune(candidates, self.policy, zone=self.zone)
        return PruneView(plan, self._hash(plan), self.policy, str(self.zone))

    def _hash(self, plan: PrunePlan) -> str:
        body = {"policy": self.policy.describe(), "zone": str(self.zone),
                "keep": sorted(c.name for c in plan.keep),
                "delete": sorted(c.name for c in plan.delete)}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    # --- /backup prune ------------------------------------------------------------------

    def show_prune(self, user_id: str) -> PruneView:
        view = self.plan()
        self.audit.append(AuditEvent(user_id, "prune.planned", PRUNE_SUBJECT, {
            "plan_hash": view.plan_hash, "policy": view.policy.describe(),
            "delete": [c.name for c in view.plan.delete],
            "keep": len(view.plan.keep)}))
        return view

    def current_plan(self, user_id: str, plan_hash: str) -> PruneView:
        """Plan again: the plan shown (`plan_hash`), or Conflict when the backups changed
        since it was shown (nothing is asked for then)."""
        view = self.plan()
        if view.plan_hash != plan_hash:
            self.audit.append(AuditEvent(user_id, "prune.refused", PRUNE_SUBJECT, {
                "shown_hash": plan_hash, "current_hash": view.plan_hash}))
            raise Conflict("The backups changed since this plan was shown (a backup was "
                           "taken, deleted or protected), so nothing was asked for. Run "
                           "`/backup prune` again to see the plan as it is now.")
        return view

    def cancel_prune(self, user_id: str, plan_hash: str) -> None:
        self.audit.append(AuditEvent(user_id, "prune.cancelled", PRUNE_SUBJECT,
                                     {"plan_hash": plan_hash}))

    # --- the schedule's prune -----------------------------------------------------------

    def run_prune(self) -> PruneOutcome:
        view = self.plan()
        self.audit.append(AuditEvent(SCHEDULER, "prune.started", PRUNE_SUBJECT, {
            "plan_hash": view.plan_hash, "policy": view.policy.describe(),
            "delete": [c.name for c in view.plan.delete]}))
        return self._delete(SCHEDULER, view)

    def prune_job(self) -> JobResult:
        outcome = self.run_prune()
        summary = (f"deleted {len(outcome.deleted)}, kept {len(outcome.view.plan.keep)}"
                   + (f", still deleting {len(outcome.pending)}" if outcome.pending else "")
                   + (f", {len(outcome.failed)} failed" if outcome.failed else ""))
        return JobResult("prune", not outcome.failed, summary)

    # --- deleting -------------------------------------------------------------------------

    def _delete(self, actor: str, view: PruneView) -> PruneOutcome:
        deleted: list[str] = []
        pending: list[str] = []
        failed: list[tuple[str, str]] = []
        for candidate in view.plan.delete:
            name = candidate.name
            try:
                backup = self.backups.prepare_delete(actor, name)
                self.backups.confirm_delete(actor, backup.id)
            except LifeguardError as refusal:
                failed.append((name, str(refusal)))
                continue
            done = self.backups.settle(backup.id, timeout=self.settle_seconds)
            if done is not None and done.status == BackupStatus.DELETED:
                deleted.append(name)
            elif done is not None and done.status == BackupStatus.DELETING:
                pending.append(name)
            else:
                failed.append((name, (done.error if done else None) or "not deleted"))
        outcome = PruneOutcome(view, tuple(deleted), tuple(failed), tuple(pending))
        self.audit.append(AuditEvent(actor, "prune.finished", PRUNE_SUBJECT, {
            "plan_hash": view.plan_hash, "deleted": deleted, "pending": pending,
            "failed": [{"branch": n, "why": w} for n, w in failed]}))
        if failed:
            self.alerts.notify(Alert(
                title=f"Pruning old backups: {len(failed)} of {len(view.plan.delete)} "
                      "deletions failed",
                tried=(f"Deleting the backups the retention policy ({view.policy.describe()}) "
                       "no longer keeps: "
                       + "; ".join(f"`{escape(n)}`: {w}" for n, w in failed)),
                next_step=escape("Those backups are still there and are tried again at the "
                                 "next prune. `/backup prune` shows the plan; "
                                 "`/backup delete <branch>` deletes one by hand."),
                error=failed[0][1], subject=PRUNE_SUBJECT, kind="prune.failed"))
        return outcome
