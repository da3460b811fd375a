"""Alerts and escalation.

Every failure that nobody is watching goes to ALERTS_CHANNEL in one shape: what failed,
what Lifeguard tried, and what to do next. The hooks are small on purpose:

- backups and restores: `AlertingBackupNotifier` / `AlertingRequestNotifier` wrap the
  services' notifiers (which already see every state change) and alert when a backup or a
  request reaches `failed` (verification failures included). Neither service changes.
- scheduled jobs: `Alerts.run_job` runs a job, turns an exception into an alert and a
  `JobResult`, and never raises, so a scheduler thread never dies of it.

Each alert is recorded in the audit trail (`alert.posted`, subject: what it is about);
an alert about one backup's or request's failure is posted once, even when its state is
shown again.

An Alert's texts are mrkdwn-ready (bot.domain.text): a reason, a branch name from Neon or
an exception's message is escaped where it is written in; a composed error (a request's,
a backup's) is taken as it is.

Escalation: `ApprovalReminders` mentions the approvers once, in the approval card's
thread, for each request still pending after APPROVAL_REMINDER_AFTER. The reminder is
recorded with a compare-and-set on the request (`extra.reminded_at`, audit
`request.reminded`) before it is posted, so two runs or two replicas remind at most once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.domain.audit import AuditEntry, AuditEvent
from bot.domain.backups import Backup, BackupStatus
from bot.domain.durations import humanize_age
from bot.domain.requests import (
    ACTION_TITLES,
    ChangeRequest,
    RequestAction,
    RequestState,
    Step,
)
from bot.domain.text import escape
from bot.services.backups import BackupNotifier
from bot.services.ports import MessageRef, Records
from bot.services.restores import RequestNotifier

log = logging.getLogger("lifeguard.alerts")

SYSTEM = "system"
SCHEDULER = "scheduler"  # the actor of scheduled work in the audit trail
ALERT_POSTED = "alert.posted"
ALERT_UNDELIVERED = "alert.undelivered"
REMINDED = "request.reminded"


@dataclass(frozen=True)
class Alert:
    """One alert: what failed, what was tried, what to do next; each text mrkdwn-ready."""

    title: str  # what failed, one line: "Backup `backup-…` failed"
    tried: str  # what Lifeguard tried
    next_step: str  # what a person should do now
    error: str | None = None  # the cause, in plain words, when known
    subject: str = "lifeguard"  # what it is about (audit subject): a branch, a request id
    kind: str = "job.failed"  # what sort of failure: backup.failed, request.failed, …


@dataclass(frozen=True)
class JobResult:
    """How one run of a job went, for the scheduler's log and `python -m bot run-job`."""

    job: str
    ok: bool
    summary: str


class AlertPoster(Protocol):
    def post_alert(self, alert: Alert) -> None:
        """Post the alert to ALERTS_CHANNEL; raise when it could not be posted."""
        ...


class AlertAudit(Protocol):
    def append(self, event: AuditEvent) -> AuditEntry: ...

    def audit_for(self, subject: str) -> list[AuditEntry]: ...


class Alerts:
    def __init__(self, poster: AlertPoster, audit: AlertAudit) -> None:
        self.poster = poster
        self.audit = audit

    def notify(self, alert: Alert, *, once: bool = False) -> bool:
        """Post the alert and record it. With `once`, an alert of the same kind about the
        same subject that was posted before is not posted again. Never raises: an alert
        that cannot be posted is logged (and recorded when the store answers). True when
        it was posted now."""
        try:
            if once and self._posted_before(alert):
                return False
        except Exception:
            log.exception("could not read the audit trail before alerting; alerting anyway")
        details = {"kind": alert.kind, "title": alert.title, "tried": alert.tried,
                   "next_step": alert.next_step, "error": alert.error}
        try:
            self.poster.post_alert(alert)
        except Exception as error:
            log.exception("could not post alert %r", alert.title)
            self._record(AuditEvent(SYSTEM, ALERT_UNDELIVERED, alert.subject,
                                    details | {"why": f"{type(error).__name__}: {error}"}))
            return False
        self._record(AuditEvent(SYSTEM, ALERT_POSTED, alert.subject, details))
        return True

    def _posted_before(self, alert: Alert) -> bool:
        return any(e.action == ALERT_POSTED and e.details.get("kind") == alert.kind
                   for e in self.audit.audit_for(alert.subject))

    def _record(self, event: AuditEvent) -> None:
        try:
            self.audit.append(event)
        except Exception:
            log.exception("could not record %s about %s", event.action, event.subject)

    # --- what failed, what was tried, what next --------------------------------------

    def backup_failed(self, backup: Backup) -> bool:
        return self.notify(backup_failure(backup), once=True)

    def request_failed(self, request: ChangeRequest) -> bool:
        return self.notify(request_failure(request), once=True)

    def run_job(self, job: str, work: Callable[[], JobResult]) -> JobResult:
        """Run one job; an exception becomes an alert and a failed JobResult. Never
        raises (the scheduler's thread and the command line both carry on)."""
        try:
            return work()
        except Exception as error:
            log.exception("job %s failed", job)
            cause = str(error) or type(error).__name__
            tried, next_step = JOB_ADVICE.get(job, (f"Running the {job} job.", GENERIC_NEXT))
            self.notify(Alert(title=f"The scheduled {job} job failed", tried=tried,
                              next_step=next_step, error=escape(cause), subject=f"job:{job}",
                              kind="job.failed"))
            return JobResult(job, False, f"failed: {cause}")


GENERIC_NEXT = escape("`python -m bot doctor` says whether Slack, Neon and the store answer; "
                      "the job runs again at its next scheduled time, or now with "
                      "`python -m bot run-job <name>`.")
JOB_ADVICE: dict[str, tuple[str, str]] = {
    "backup": ("Taking the scheduled daily backup of the default branch.",
               "Take one by hand with `/backup now`. " + GENERIC_NEXT),
    "prune": ("Pruning old backups by the retention policy. Nothing is deleted when the "
              "plan cannot be made.",
              "`/backup prune` shows the plan and can run it by hand. " + GENERIC_NEXT),
    "health": ("Building and posting the daily health report.",
               "`/backup health` shows the checks now. " + GENERIC_NEXT),
    "reminders": ("Reminding approvers of requests still waiting for approval.",
                  "Look in the approvals channel for requests still waiting. " + GENERIC_NEXT),
}


def _who(user_id: str) -> str:
    return "the schedule" if user_id == SCHEDULER else f"<@{user_id}>"


def backup_failure(backup: Backup) -> Alert:
    reason = f" (reason: _{escape(backup.reason)}_)" if backup.reason else ""
    name = escape(backup.branch_name)
    created = backup.branch_id is not None
    tried = (f"Creating the backup branch `{name}` of the default branch in Neon, asked by "
             f"{_who(backup.requested_by)}{reason}. "
             + ("Neon accepted the branch but it did not become ready."
                if created else "Neon did not create the branch."))
    next_step = ("Take a backup by hand with `/backup now` once the cause is fixed; "
                 "`python -m bot doctor` checks the Neon key and project. "
                 "`/backup health` shows how old the newest good backup is.")
    if created:
        next_step += (f" `{name}` may be left in Neon half made: check it in the Neon "
                      "console before relying on it.")
    return Alert(title=f"Backup `{name}` failed", tried=tried, next_step=next_step,
                 error=backup.error, subject=backup.branch_name, kind="backup.failed")


def request_failure(request: ChangeRequest) -> Alert:
    plan = request.plan
    title = f"{ACTION_TITLES[plan.action]} `{request.id}` failed"
    approved = ", ".join(f"<@{a.user_id}>" for a in request.approvals) or "nobody"
    # Branch names may come from Neon (the default branch is whatever it is called there).
    source, target = escape(plan.source_branch_name), escape(plan.target_branch_name)
    preserve = escape(plan.preserve_under_name or "")
    if plan.action == RequestAction.PROMOTE:
        tried = (f"Restoring the live branch `{target}` in place from `{source}`, keeping its "
                 f"old state as `{preserve}`")
    elif plan.action == RequestAction.RESTORE_POINT_IN_TIME:
        instant = plan.instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") \
            if plan.instant else "?"
        tried = f"Creating `{target}` from `{source}` as it was at {instant}"
    elif plan.action == RequestAction.DELETE_BACKUP:
        tried = f"Deleting backup `{source}`"
    elif plan.action == RequestAction.PRUNE_BACKUPS:
        tried = f"Deleting {len(plan.branches)} backup(s) the retention policy no longer keeps"
    else:
        tried = f"Creating `{target}` from backup `{source}`"
    step = request.step.value.replace("_", " ") if request.step else "start"
    tried += (f", asked by <@{plan.requester}> and approved by {approved}; it stopped at "
              f"the step _{step}_.")
    log_hint = f"`/restore log {request.id}` shows every step."
    if plan.action == RequestAction.PROMOTE and request.step in (
            Step.WAIT_PROMOTION, Step.VERIFY):
        next_step = (f"The live branch `{target}` may already hold `{source}`'s data. Its "
                     f"previous state is kept as `{preserve}`; `/restore promote {preserve}` "
                     f"puts it back. {log_hint}")
    elif plan.action == RequestAction.PROMOTE:
        next_step = (f"The live branch was not changed. {log_hint} Fix the cause, then ask "
                     "again with `/restore promote`.")
    elif plan.action in (RequestAction.DELETE_BACKUP, RequestAction.PRUNE_BACKUPS):
        next_step = (f"What was not deleted is kept (the error says which). {log_hint} Fix "
                     "the cause, then ask again with `/backup delete` or `/backup prune`.")
    elif request.step == Step.VERIFY:
        next_step = (f"Production was not changed. The restored branch `{target}` is kept so "
                     "it can be inspected; do not promote it before the differences are "
                     f"understood. {log_hint}")
    else:
        next_step = (f"Production was not changed. {log_hint} Fix the cause, then ask "
                     "again with `/restore`.")
    return Alert(title=title, tried=tried, next_step=next_step, error=request.error,
                 subject=request.id, kind="request.failed")


# --- hooks into the services' notifiers ---------------------------------------------------


class AlertingBackupNotifier:
    """The backup service's notifier, plus an alert when a backup fails."""

    def __init__(self, inner: BackupNotifier, alerts: Alerts) -> None:
        self.inner = inner
        self.alerts = alerts

    def backup_changed(self, backup: Backup) -> MessageRef | None:
        try:
            return self.inner.backup_changed(backup)
        finally:
            if backup.status == BackupStatus.FAILED:
                self.alerts.backup_failed(backup)


class AlertingRequestNotifier:
    """The restore service's notifier, plus an alert when a request fails."""

    def __init__(self, inner: RequestNotifier, alerts: Alerts) -> None:
        self.inner = inner
        self.alerts = alerts

    def request_changed(self, request: ChangeRequest) -> MessageRef | None:
        try:
            return self.inner.request_changed(request)
        finally:
            if request.state == RequestState.FAILED:
                self.alerts.request_failed(request)

    def ask_approvers(self, request: ChangeRequest) -> None:
        self.inner.ask_approvers(request)


# --- escalation ------------------------------------------------------------------------


class ReminderNotifier(Protocol):
    def remind_approvers(self, request: ChangeRequest, waited: timedelta) -> None:
        """Mention the approvers in the thread of the request's card; raise on failure."""
        ...


class ReminderStore(Protocol):
    requests: Records[ChangeRequest]


class ApprovalReminders:
    def __init__(self, store: ReminderStore, notifier: ReminderNotifier, alerts: Alerts, *,
                 after: timedelta,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.notifier = notifier
        self.alerts = alerts
        self.after = after
        self.now = now

    def due(self) -> list[ChangeRequest]:
        """Pending, not expired, waiting at least `after`, and not reminded yet."""
        now = self.now()
        return [r for r in self.store.requests.list((RequestState.PENDING,), limit=500)
                if now - r.created_at >= self.after and now < r.expires_at
                and "reminded_at" not in r.extra]

    def run(self) -> list[ChangeRequest]:
        """Remind the approvers of every due request, once each. Returns those reminded."""
        reminded: list[ChangeRequest] = []
        for request in self.due():
            now = self.now()
            waited = now - request.created_at
            # Recorded first, compare-and-set on the version: only one run wins. A request
            # changed meanwhile (approved, say) is looked at again next time.
            updated = self.store.requests.save(
                replace(request, extra={**request.extra, "reminded_at": now.isoformat()}),
                request.version,
                AuditEvent(SYSTEM, REMINDED, request.id,
                           {"waited_seconds": int(waited.total_seconds()),
                            "after_seconds": int(self.after.total_seconds())}))
            if updated is None:
                continue
            try:
                self.notifier.remind_approvers(updated, waited)
            except Exception as error:
                log.exception("could not remind the approvers of request %s", request.id)
                self.alerts.notify(Alert(
                    title=f"Approvers of request `{request.id}` could not be reminded",
                    tried=(f"Mentioning the approvers in the thread of the approval card; "
                           f"the request has waited {humanize_age(waited)}."),
                    next_step="Tell the approvers yourself; the card is in the approvals "
                              "channel. Lifeguard does not remind twice.",
                    error=escape(f"{type(error).__name__}: {error}"), subject=request.id,
                    kind="reminder.failed"))
                continue
            reminded.append(updated)
        return reminded

    def job(self) -> JobResult:
        reminded = self.run()
        ids = ", ".join(r.id for r in reminded)
        return JobResult("reminders", True,
                         f"reminded the approvers of {len(reminded)} request(s)"
                         + (f": {ids}" if ids else ""))
