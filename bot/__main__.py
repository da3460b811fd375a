"""`python -m bot` and its subcommands.

    python -m bot                       serve Slack (HTTP on $PORT, or Socket Mode)
    python -m bot doctor                check settings, Slack, Neon and the store
    python -m bot migrate               bring the store's schema up to date
    python -m bot audit verify          check the audit trail's hash chain
    python -m bot audit export [--format jsonl|csv] [--since DATE] [--output FILE]
    python -m bot run-job <name>        run one scheduled job once now (scheduled_backup,
                                        prune, health_report, approval_reminders, …)
    python -m bot export list           finished exports in EXPORT_URL (no Slack, Neon or store)
    python -m bot export verify <id>    read an export back against its manifest; exit 1 if not
    python -m bot export restore <id> --into <postgresql-url> [--database NAME]
                                        restore an export into any PostgreSQL, checked
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Literal, TextIO

from bot.config import Settings, SettingsError, load_settings, load_store_settings
from bot.domain.errors import LifeguardError


def _configure_logging(level: str = "INFO", settings: Settings | None = None) -> None:
    from bot.logs import configure_logging

    if settings is None:  # the store commands: no secrets known but those seen by shape
        configure_logging(level)
    else:
        configure_logging(level, settings.log_format, settings.secret_values())


def serve() -> int:
    settings = load_settings()
    _configure_logging(settings.log_level, settings)
    from bot.app import build
    from bot.web import serve as serve_http

    lifeguard = build(settings)
    lifeguard.start()
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("lifeguard").info("signal %d: stopping", signum)
        lifeguard.close()
        stop.set()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.socket_mode:
        from bot.app import connect_socket_mode

        # In the background: a Slack outage at start must not stop the health check, the
        # scheduler or the resumption of interrupted work.
        threading.Thread(target=connect_socket_mode, args=(lifeguard, stop), daemon=True,
                         name="socket-mode").start()
    serve_http(lifeguard.wsgi(), settings.port)
    return 0


def doctor() -> int:
    from bot.services.doctor import check_settings, render

    try:
        settings = load_settings()
    except SettingsError as error:
        print(render(check_settings(error.problems)))
        print("\nNot ready: Settings.")
        return 1
    from bot.app import doctor_checks

    checks = doctor_checks(settings)
    print(render(checks))
    failed = [c.name for c in checks if not c.ok]
    print("\nAll green." if not failed else f"\nNot ready: {', '.join(failed)}.")
    return 0 if not failed else 1


def migrate() -> int:
    from bot.app import migrate_store

    revision = migrate_store(load_store_settings().database_url)
    print(f"The store's schema is up to date (revision {revision}).")
    return 0


def audit_verify() -> int:
    from bot.app import open_store

    store = open_store(load_store_settings().database_url)
    try:
        checked, broken = store.verify()
        head = store.head() if broken is None and checked else None
    finally:
        store.close()
    if broken is None:
        print(f"Audit trail intact: {checked} entries checked"
              + (f"; newest is #{head.seq}, hash {head.hash}." if head else "."))
        return 0
    print(f"Audit trail BROKEN at entry #{broken.seq}: {broken.reason}. "
          f"Entries before #{broken.seq} are intact.")
    return 1


def _parse_since(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date; write 2026-01-13 or 2026-01-13T14:25:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def audit_export(fmt: Literal["jsonl", "csv"], since: datetime | None, output: TextIO) -> int:
    from bot.app import export_audit, open_store

    store = open_store(load_store_settings().database_url)
    try:
        count = export_audit(store, fmt, since, output)
    finally:
        store.close()
    print(f"Exported {count} audit entries.", file=sys.stderr)
    return 0


def run_job(name: str) -> int:
    """Run one of the scheduler's jobs once, now, in this process; exit 1 if it failed."""
    settings = load_settings()
    _configure_logging(settings.log_level, settings)
    from bot.app import run_job_once

    result = run_job_once(settings, name)
    print(f"{result.job}: {'ok' if result.ok else 'FAILED'}: {result.summary}")
    return 0 if result.ok else 1


def export_command(action: str, export_id: str | None) -> int:
    """`export list` and `export verify <id>`, from the bucket alone; exit 1 when an export
    does not match its manifest, 2 when it cannot be read at all."""
    from bot.config import load_export_settings
    from bot.domain.export_errors import ExportError
    from bot.exports import Archive
    from bot.services.export_reports import list_report, verify_report

    archive = Archive.from_settings(load_export_settings())
    if archive is None:
        print("Exports are off: set EXPORT_URL (and EXPORT_RECIPIENTS) to the bucket.",
              file=sys.stderr)
        return 2
    try:
        if action == "list":
            print(list_report(archive))
            return 0
        assert export_id is not None
        passed, report = verify_report(archive, export_id)
    except ExportError as error:
        print(f"Cannot read the exports: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0 if passed else 1
def export_restore(export_id: str, into: str, database: str | None) -> int:
    """Restore an export into any PostgreSQL with nothing but the bucket and the age
    identity: exit 0 when every table's rows match the manifest, 1 otherwise."""
    from bot.config import load_export_settings

    try:
        settings = load_export_settings(required=("export_url", "export_identity"))
    except SettingsError as error:
        print("`python -m bot export restore` needs EXPORT_URL, NEON_PROJECT_ID (the "
              "export folders' prefix) and EXPORT_IDENTITY (EXPORT_S3_ENDPOINT for a store "
              "other than AWS); Slack, Neon's API and the store are not needed.\n"
              + "\n".join(f"  - {problem}" for problem in error.problems), file=sys.stderr)
        return 2
    from bot.domain.export_restores import report_lines
    from bot.exports import Archive
    from bot.exports.targets import TargetServer
    from bot.services.export_recovery import ExportRecovery

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        archive = Archive.from_settings(settings)
        assert archive is not None  # EXPORT_URL is required above
        target = TargetServer(into)
    except LifeguardError as error:
        print(f"Nothing was restored: {error}", file=sys.stderr)
        return 1
    result = ExportRecovery(archive, target, progress=say).restore(export_id,
                                                                  database=database)
    if result.problem is not None:
        print(f"FAILED: {result.problem}", file=sys.stderr)
        return 1
    assert result.report is not None and result.manifest is not None
    where = ", ".join(f"{p.database.database!r} -> {p.target!r}" for p in result.placements)
    print(f"Export {export_id} (taken {result.manifest.started_at:%Y-%m-%d %H:%M:%S} UTC from "
          f"branch {result.manifest.branch_name!r}) restored into {target.describe()}: {where}")
    print("\n".join(report_lines(result.report)))
    if not result.ok:
        print(f"FAILED: the restored rows do not match the export's manifest "
              f"({result.seconds:.1f} s).")
        return 1
    print(f"OK: {result.report.compared_tables} tables, every row count matches the "
          f"export's manifest ({result.seconds:.1f} s).")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Lifeguard")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve Slack (the default)")
    commands.add_parser("doctor", help="check settings, Slack, Neon and the store")
    commands.add_parser("migrate", help="bring the store's schema up to date")
    audit = commands.add_parser("audit", help="the audit trail").add_subparsers(dest="audit")
    audit.add_parser("verify", help="check the hash chain")
    export = audit.add_parser("export", help="write every entry as JSON lines or CSV")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--since", type=_parse_since, default=None,
                        help="only entries at or after this date (UTC unless a zone is given)")
    export.add_argument("--output", type=argparse.FileType("w", encoding="utf-8"),
                        default=sys.stdout)
    job = commands.add_parser("run-job", help="run one scheduled job once, now")
    job.add_argument("name", help="scheduled_backup, prune, health_report, "
                                  "approval_reminders, drill_reminder, reconcile, …")
    exports = commands.add_parser("export", help="exports in EXPORT_URL, without Slack, "
                                  "Neon or the store").add_subparsers(dest="export")
    exports.add_parser("list", help="finished exports, oldest first")
    exports.add_parser("verify", help="read an export back against its manifest").add_argument(
        "export_id", help="the export id, as `export list` shows it")
    restore = exports.add_parser(
        "restore", help="restore an export into any PostgreSQL (disaster recovery)")
    restore.add_argument("export_id", help="the export's id (`python -m bot export list`)")
    restore.add_argument("--into", required=True, metavar="POSTGRESQL_URL",
                         help="postgresql://user:password@host:5432/database, or a server "
                              "URL without a database for an export of several")
    restore.add_argument("--database", default=None, metavar="NAME",
                         help="restore only this database of the export")
    args = parser.parse_args(argv)
    try:
        if args.command in (None, "serve"):
            return serve()
        if args.command == "run-job":
            return run_job(args.name)
        _configure_logging("WARNING")
        if args.command == "doctor":
            return doctor()
        if args.command == "migrate":
            return migrate()
        if args.command == "audit" and args.audit == "verify":
            return audit_verify()
        if args.command == "audit" and args.audit == "export":
            return audit_export(args.format, args.since, args.output)
        if args.command == "export" and args.export in ("list", "verify"):
            return export_command(args.export, getattr(args, "export_id", None))
        if args.command == "export" and args.export == "restore":
            return export_restore(args.export_id, args.into, args.database)
        parser.print_help()
        return 2
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
