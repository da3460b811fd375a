"""Composition root: the only module that knows every piece and wires them together."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Literal, TextIO
from zoneinfo import ZoneInfo

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.background import Background
from bot.config import Settings
from bot.domain.backups import BackupStatus
from bot.domain.export_jobs import ExportState
from bot.domain.retention import RetentionPolicy
from bot.exports import Archive, tools_summary
from bot.leadership import Leadership
from bot.metrics import Metrics, WorkFigures
from bot.neon import NeonClient
from bot.scheduler import (
    JobHandler,
    build_jobs,
    describe_schedule,
    register_job_handlers,
)
from bot.services.alerts import (
    AlertingBackupNotifier,
    AlertingRequestNotifier,
    Alerts,
    ApprovalReminders,
    JobResult,
)
from bot.services.backups import BackupService
from bot.services.doctor import (
    Check,
    check_exports,
    check_neon,
    check_pg_dump,
    check_slack,
    check_store,
)
from bot.services.drills import DrillService
from bot.services.exports import ExportService
from bot.services.health import HealthService
from bot.services.incident_steps import Settings as IncidentSettings
from bot.services.incidents import IncidentEcho, IncidentService
from bot.services.restores import RestoreService
from bot.services.scheduled_backups import ScheduledBackups
from bot.services.verification import verify_branch
from bot.web import WsgiApp, make_wsgi_app
from handlers import wiring
from handlers.backup import SlackBackupNotifier
from handlers.directory import SlackDirectory
from handlers.drill import SlackDrillNotifier, post_drill_reminder
from handlers.export import SlackExportNotifier
from handlers.health_blocks import SlackOpsNotifier
from handlers.incident_room import SlackIncidentRoom
from handlers.restore import SlackRequestNotifier
from storage import SqlStore, write_audit_export
from storage.migrate import current_revision, head_revision, upgrade_to_head

log = logging.getLogger("lifeguard")


class CountingWebClient(WebClient):
    """Slack's Web API client, counting the calls that failed (after its own retries)."""

    metrics: Metrics | None = None

    def api_call(self, api_method: str, **kwargs: Any) -> Any:  # type: ignore[override]
        try:
            return super().api_call(api_method, **kwargs)
        except SlackApiError as error:
            self._count(api_method, str(error.response.get("error") or "error"))
            raise
        except Exception as error:  # the connection, a timeout
            self._count(api_method, type(error).__name__)
            raise

    def _count(self, api_method: str, error: str) -> None:
        if self.metrics is not None:
            self.metrics.slack_errors.labels(api_method, error).inc()


def slack_client(settings: Settings, metrics: Metrics | None = None) -> WebClient:
    client = CountingWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=15,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=3),
            ConnectionErrorRetryHandler(max_retry_count=2),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )
    client.metrics = metrics
    return client


def neon_client(settings: Settings, metrics: Metrics | None = None) -> NeonClient:
    return NeonClient(settings.neon_api_key.get_secret_value(), settings.neon_project_id,
                      base_url=settings.neon_api_url,
                      observe=metrics.neon_attempt if metrics is not None else None)


@dataclass
class Lifeguard:
    settings: Settings
    store: SqlStore
    neon: NeonClient
    slack: WebClient
    bolt: App
    backups: BackupService
    restores: RestoreService
    drills: DrillService
    background: Background
    alerts: Alerts
    health: HealthService
    scheduled: ScheduledBackups
    reminders: ApprovalReminders
    metrics: Metrics
    exports: ExportService
    incidents: IncidentService
    leadership: Leadership = field(init=False)

    def __post_init__(self) -> None:
        # Jobs live in the store; only the one leader among replicas runs them.
        self.leadership = Leadership(
            self.store.engine, build_jobs(self.settings),
            interval=self.settings.reconcile_interval, record=self.store.append)

    # --- the scheduler's jobs (also `python -m bot run-job NAME`) ------------------------

    def job_handlers(self) -> dict[str, JobHandler | None]:
        """What each job of bot.scheduler.JOBS does in this process, counted."""
        return {name: partial(self.counted, name, handler) for name, handler in {
            "reconcile": self.reconcile,
            "housekeeping": self.backups.mark_expired,
            "scheduled_backup": self.run_scheduled_backup,
            "prune": self.run_prune,
            "health_report": self.run_health_report,
            "drill_reminder": self.run_drill_reminder,
            "approval_reminders": self.run_approval_reminders,
            "scheduled_export": self.run_scheduled_export,
        }.items()}

    def counted(self, name: str, handler: Callable[[], object]) -> object:
        try:
            result = handler()
        except Exception:
            self.metrics.job_ran(name, ok=False)
            raise
        self.metrics.job_ran(name, ok=not isinstance(result, JobResult) or result.ok)
        return result

    def reconcile(self) -> None:
        """Expire what waited too long, and hand every unfinished piece of work to a
        worker; leases keep each to one worker at a time."""
        self.restores.expire_due()
        self.restores.tables.remove_unused_sources()  # table restores that never ran
        for work, unfinished in ((self.restores.work, self.restores.runnable()),
                                 (self.backups.work, self.backups.unfinished()),
                                 (self.drills.work, self.drills.runnable()),
                                 (self.exports.work, self.exports.unfinished()),
                                 (self.incidents.work, self.incidents.runnable())):
            for item in unfinished:
                self.background.run(partial(work.advance, item.id, patient=True),
                                    f"reconcile {work.kind.name} {item.id}")
        # timeline lines whose poster died, or that Slack refused for a while
        self.background.run(self.incidents.post_waiting, "post waiting incident lines")

    # Each of these never raises: a failure is posted to ALERTS_CHANNEL and returned.

    def run_scheduled_backup(self) -> JobResult:
        return self.alerts.run_job("backup", self.scheduled.backup_job)

    def run_prune(self) -> JobResult:
        return self.alerts.run_job("prune", self.scheduled.prune_job)

    def run_health_report(self) -> JobResult:
        return self.alerts.run_job("health", self.health.job)

    def run_scheduled_export(self) -> JobResult:
        return self.alerts.run_job("export", self.exports.scheduled_job)

    def run_approval_reminders(self) -> JobResult:
        return self.alerts.run_job("reminders", self.reminders.job)

    def run_drill_reminder(self) -> JobResult:
        """The reminder, with its "Start drill" button, in ALERTS_CHANNEL."""
        def remind() -> JobResult:
            post_drill_reminder(self.slack, self.settings.alerts_channel, self.drills)
            return JobResult("drill reminder", True, "reminder posted")
        return self.alerts.run_job("drill reminder", remind)

    # --- serving --------------------------------------------------------------------------

    def store_problem(self) -> str | None:
        try:
            self.store.ping()
        except Exception as error:
            return f"the store does not answer: {type(error).__name__}"
        return None

    def wsgi(self) -> WsgiApp:
        return make_wsgi_app(None if self.settings.socket_mode else self.bolt,
                             self.store_problem, self.metrics)

    def start(self) -> None:
        register_job_handlers(self.job_handlers())
        self.leadership.start()

    def close(self) -> None:
        self.leadership.stop()  # stops the scheduler and releases the leader lock
        self.background.shutdown(wait=False)
        self.neon.close()
        self.store.close()


def build(settings: Settings) -> Lifeguard:
    """Build every piece. Applies pending store migrations."""
    store = SqlStore(settings.database_url, migrate=True)
    metrics = Metrics(partial(work_figures, store))
    client = slack_client(settings, metrics)
    neon = neon_client(settings, metrics)
    bolt = App(
        client=client,
        signing_secret=(settings.slack_signing_secret.get_secret_value()
                        if settings.slack_signing_secret else ""),
        request_verification_enabled=not settings.socket_mode,
        # The token is checked by `python -m bot doctor`; a Slack outage during a deploy
        # must not stop the bot from starting and finishing interrupted work.
        token_verification_enabled=False,
        process_before_response=False,
        # A request no listener takes (an unknown button or form) reaches the error
        # handler, which answers it, instead of getting a bare 404.
        raise_error_for_unhandled_request=True,
    )
    background = Background(settings.worker_threads)
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    directory = SlackDirectory(client, settings.approvers)
    ops = SlackOpsNotifier(client, directory, alerts_channel=settings.alerts_channel,
                           approvals_channel=settings.approvals_channel)
    alerts = Alerts(ops, store)
    verifier = partial(verify_branch, custom_checks=settings.verify_checks,
                       exact_row_limit=settings.verify_exact_row_limit)
    archive = Archive.from_settings(settings)  # None while exports are off

    # Every change of work linked to an incident is echoed into its channel.
    incidents = IncidentService(
        store, SlackIncidentRoom(client, settings.alerts_channel),
        IncidentSettings(project_id=settings.neon_project_id,
                         responders=settings.incident_responders,
                         runbook_url=settings.incident_runbook_url),
        worker_id=worker_id)
    # Failed backups and failed restores or verifications also alert, once each.
    backups = BackupService(store, neon,
                            IncidentEcho(AlertingBackupNotifier(SlackBackupNotifier(client),
                                                                alerts), incidents),
                            retention=settings.backup_retention, worker_id=worker_id)
    restores = RestoreService(
        store, neon, directory,
        IncidentEcho(AlertingRequestNotifier(
            SlackRequestNotifier(client, directory, settings.approvals_channel), alerts),
            incidents),
        verifier,
        project_id=settings.neon_project_id, required_approvals=settings.required_approvals,
        approval_ttl=settings.approval_ttl, approvers_configured=bool(settings.approvers),
        backups=backups, worker_id=worker_id, exports=archive)
    drills = DrillService(store, neon,
                          IncidentEcho(SlackDrillNotifier(client, settings.alerts_channel),
                                       incidents),
                          verifier, target_age=settings.drill_target_age, worker_id=worker_id)
    health = HealthService(store, neon, ops, branches_limit=partial(neon_branches_limit, neon),
                           last_drill=partial(last_drill_success, drills))
    scheduled = ScheduledBackups(
        backups, neon, store, alerts, zone=ZoneInfo(settings.schedule_timezone),
        policy=RetentionPolicy(settings.retention_daily, settings.retention_weekly,
                               settings.retention_monthly))
    reminders = ApprovalReminders(store, ops, alerts, after=settings.approval_reminder_after)
    exports = ExportService(
        store, neon, archive, SlackExportNotifier(client), alerts,
        project_id=settings.neon_project_id, zone=ZoneInfo(settings.schedule_timezone),
        policy=RetentionPolicy(0, settings.export_retention_weekly,
                               settings.export_retention_monthly),
        worker_id=worker_id)

    wiring.install(bolt, wiring.Services(
        backups=backups, restores=restores, drills=drills, health=health, scheduled=scheduled,
        describe_schedule=partial(describe_schedule, settings), run_later=background.run,
        approvals_channel=settings.approvals_channel, alerts_channel=settings.alerts_channel,
        exports=exports, incidents=incidents))
    return Lifeguard(settings=settings, store=store, neon=neon, slack=client, bolt=bolt,
                     backups=backups, restores=restores, drills=drills, background=background,
                     alerts=alerts, health=health, scheduled=scheduled, reminders=reminders,
                     metrics=metrics, exports=exports, incidents=incidents)


# --- pieces of the wiring ------------------------------------------------------------


SOCKET_MODE_RETRY_SECONDS = (1, 2, 5, 10, 30, 60)


def connect_socket_mode(lifeguard: Lifeguard, stop: threading.Event) -> None:
    """Connect to Slack over Socket Mode, retrying (1 s, 2 s, … then every minute) until it
    works or the process stops; once connected, slack_sdk's client reconnects by itself."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    assert lifeguard.settings.slack_app_token is not None
    handler = SocketModeHandler(lifeguard.bolt,
                                lifeguard.settings.slack_app_token.get_secret_value(),
                                web_client=lifeguard.slack)
    attempt = 0
    while not stop.is_set():
        try:
            handler.connect()
            log.info("connected to Slack in Socket Mode")
            return
        except Exception as error:
            wait = SOCKET_MODE_RETRY_SECONDS[min(attempt, len(SOCKET_MODE_RETRY_SECONDS) - 1)]
            log.warning("Socket Mode connection failed (%s: %s); trying again in %d s",
                        type(error).__name__, error, wait)
            attempt += 1
            stop.wait(wait)


def run_job_once(settings: Settings, name: str) -> JobResult:
    """`python -m bot run-job <name>`: build everything (no scheduler, no HTTP), run the
    scheduler's job `name` once now, close. Unknown names are answered with the known."""
    lifeguard = build(settings)
    try:
        handlers = {k: v for k, v in lifeguard.job_handlers().items() if v is not None}
        handler = handlers.get(name)
        if handler is None:
            return JobResult(name, False, f"no job {name!r} here; jobs: "
                             + ", ".join(sorted(handlers)))
        result = handler()
        return result if isinstance(result, JobResult) else JobResult(name, True, "done")
    finally:
        lifeguard.close()


def work_figures(store: SqlStore) -> WorkFigures:
    """What /metrics reads from the store at each scrape."""
    newest_backup = store.backups.list((BackupStatus.READY,), limit=1)
    last_drill = store.drills.last_successful()
    newest_export = store.exports.list((ExportState.SUCCEEDED,), limit=1)
    return WorkFigures(
        requests={(action.value, state.value): n
                  for (action, state), n in store.requests.counts("action", "state").items()},
        backups={status.value: n for (status,), n in store.backups.counts("status").items()},
        drills={state.value: n for (state,), n in store.drills.counts("state").items()},
        last_success={
            "backup": newest_backup[0].created_at if newest_backup else None,
            "drill": (last_drill.finished_at or last_drill.updated_at) if last_drill else None,
            "export": (newest_export[0].finished_at or newest_export[0].updated_at)
            if newest_export else None,
        })


def neon_branches_limit(neon: NeonClient) -> int | None:
    """The plan's branch limit, as Neon reports it (`project.owner.branches_limit`)."""
    return neon.get_project().branches_limit


def last_drill_success(drills: DrillService) -> datetime | None:
    drill = drills.last_success()
    return None if drill is None else (drill.finished_at or drill.updated_at)


# --- the command line's pieces (python -m bot doctor | migrate | audit …) ---------------


def doctor_checks(settings: Settings) -> list[Check]:
    checks = [Check("Settings", True, "all present and well-formed"
                    + (" (Socket Mode)" if settings.socket_mode else " (HTTP mode)"))]
    checks += check_slack(slack_client(settings), {
        "APPROVALS_CHANNEL": settings.approvals_channel,
        "ALERTS_CHANNEL": settings.alerts_channel})
    with neon_client(settings) as neon:
        checks += check_neon(neon)
        try:
            server_major: int | None = neon.get_project().pg_version
        except Exception:  # check_neon has said why already
            server_major = None
    checks.append(check_pg_dump(tools_summary, server_major))
    archive = Archive.from_settings(settings)
    checks.append(check_exports(archive and archive.check, archive.where() if archive else "",
                                len(settings.export_recipients), bool(settings.export_identity)))
    try:
        store = SqlStore(settings.database_url, migrate=False)
    except Exception as error:
        return [*checks, Check("Store", False, f"cannot open: {type(error).__name__}: {error}",
                               "Check DATABASE_URL.")]
    try:
        return checks + check_store(store.ping,
                                    lambda: current_revision(settings.database_url),
                                    head_revision())
    finally:
        store.close()


def migrate_store(database_url: str) -> str:
    return upgrade_to_head(database_url)


def open_store(database_url: str) -> SqlStore:
    """The store as it is, for reading the audit trail: no migration."""
    return SqlStore(database_url, migrate=False)


def export_audit(store: SqlStore, fmt: Literal["jsonl", "csv"], since: datetime | None,
                 output: TextIO) -> int:
    return write_audit_export(store.entries(since), fmt, output)
