"""Composition root: the only module that knows every piece and wires them together."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Literal, TextIO

from apscheduler.schedulers.background import BackgroundScheduler
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.background import Background
from bot.config import Settings
from bot.neon import NeonClient
from bot.scheduler import build_scheduler
from bot.services.backups import BackupService
from bot.services.doctor import Check, check_neon, check_slack, check_store
from bot.services.restores import RestoreService
from bot.services.verification import verify_branch
from bot.web import WsgiApp, make_wsgi_app
from handlers.backup import SlackBackupNotifier, register_backup_handlers
from handlers.directory import SlackDirectory
from handlers.home import register_home_handlers
from handlers.restore import SlackRequestNotifier, register_restore_handlers
from storage import SqlStore, write_audit_export
from storage.migrate import current_revision, head_revision, upgrade_to_head

log = logging.getLogger("lifeguard")


def slack_client(settings: Settings) -> WebClient:
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=15,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=3),
            ConnectionErrorRetryHandler(max_retry_count=2),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def neon_client(settings: Settings) -> NeonClient:
    return NeonClient(settings.neon_api_key.get_secret_value(), settings.neon_project_id,
                      base_url=settings.neon_api_url)


@dataclass
class Lifeguard:
    settings: Settings
    store: SqlStore
    neon: NeonClient
    slack: WebClient
    bolt: App
    backups: BackupService
    restores: RestoreService
    background: Background
    scheduler: BackgroundScheduler = field(init=False)

    def __post_init__(self) -> None:
        self.scheduler = build_scheduler(
            reconcile=self.reconcile, reconcile_interval=self.settings.reconcile_interval,
            housekeeping=self.backups.mark_expired)

    def reconcile(self) -> None:
        """Expire what waited too long, and hand every unfinished piece of work to a
        worker; leases keep each to one worker at a time."""
        self.restores.expire_due()
        for request in self.restores.runnable():
            self.background.run(lambda r=request: self.restores.advance(r.id),
                                f"reconcile request {request.id}")
        for backup in self.backups.unfinished():
            self.background.run(lambda b=backup: self.backups.advance(b.id),
                                f"reconcile backup {backup.branch_name}")

    def store_problem(self) -> str | None:
        try:
            self.store.ping()
        except Exception as error:
            return f"the store does not answer: {type(error).__name__}"
        return None

    def wsgi(self) -> WsgiApp:
        return make_wsgi_app(None if self.settings.socket_mode else self.bolt,
                             self.store_problem)

    def start(self) -> None:
        self.scheduler.start()

    def close(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.background.shutdown(wait=False)
        self.neon.close()
        self.store.close()


def build(settings: Settings) -> Lifeguard:
    """Build every piece. Applies pending store migrations."""
    store = SqlStore(settings.database_url, migrate=True)
    client = slack_client(settings)
    neon = neon_client(settings)
    bolt = App(
        client=client,
        signing_secret=(settings.slack_signing_secret.get_secret_value()
                        if settings.slack_signing_secret else ""),
        request_verification_enabled=not settings.socket_mode,
        # The token is checked by `python -m bot doctor`; a Slack outage during a deploy
        # must not stop the bot from starting and finishing interrupted work.
        token_verification_enabled=False,
        process_before_response=False,
    )
    background = Background(settings.worker_threads)
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    backups = BackupService(store, neon, SlackBackupNotifier(client),
                            retention=settings.backup_retention, worker_id=worker_id)
    directory = SlackDirectory(client, settings.approvers)
    restores = RestoreService(
        store, neon, directory,
        SlackRequestNotifier(client, directory, settings.approvals_channel),
        partial(verify_branch, custom_checks=settings.verify_checks,
                exact_row_limit=settings.verify_exact_row_limit),
        project_id=settings.neon_project_id, required_approvals=settings.required_approvals,
        approval_ttl=settings.approval_ttl, approvers_configured=bool(settings.approvers),
        worker_id=worker_id)
    register_backup_handlers(bolt, backups, background.run)
    register_restore_handlers(bolt, restores, background.run, settings.approvals_channel)
    register_home_handlers(bolt, backups)
    return Lifeguard(settings=settings, store=store, neon=neon, slack=client, bolt=bolt,
                     backups=backups, restores=restores, background=background)


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
