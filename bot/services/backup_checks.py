"""`/backup verify <branch>`: connect to a backup (or a restore branch) the way restores
do, count its tables and read their newest `…_at` values, compare them with production,
and run VERIFY_CHECKS on it. Nothing is written: both sides are read in read-only
transactions, and a backup is reached through a read-only endpoint."""

from __future__ import annotations

from bot.domain.audit import AuditEvent
from bot.domain.backups import is_backup_name
from bot.domain.echo import echo
from bot.domain.errors import ExternalServiceError, NotAllowed, NotFound
from bot.domain.restores import RESTORE_NAME
from bot.domain.verification import VerificationReport
from bot.neon.errors import NeonError
from bot.services.branches import BranchAccess, branch_connection_uri
from bot.services.neon_errors import explain_neon_error
from bot.services.ports import AuditLog
from bot.services.verification import Verifier


class BackupChecks:
    def __init__(self, neon: BranchAccess, verifier: Verifier, audit: AuditLog) -> None:
        self.neon = neon
        self.verifier = verifier
        self.audit = audit

    def verify(self, user_id: str, branch_name: str) -> tuple[str, VerificationReport]:
        """(the production branch's name, the report) for the backup named."""
        if not (is_backup_name(branch_name) or RESTORE_NAME.match(branch_name)):
            raise NotAllowed(f"`{echo(branch_name)}` is neither a backup (backup-YYYYMMDD-HHMMSS) "
                             "nor a restore branch (restore-…); `/backup verify` checks only "
                             "those. `/backup list` shows the backups.")
        try:
            branch = self.neon.find_branch_by_name(branch_name)
            if branch is None:
                raise NotFound(f"Neon has no branch named `{echo(branch_name)}`. "
                               "`/backup list` shows the backups.")
            default = self.neon.default_branch()
            self.audit.append(AuditEvent(user_id, "backup.verify_asked", branch_name,
                                         {"branch_id": branch.id}))
            backup_url = branch_connection_uri(self.neon, branch.id)
            live_url = branch_connection_uri(self.neon, default.id)
        except NeonError as error:
            raise ExternalServiceError(explain_neon_error(error)) from None
        # Production has moved on since the backup: differences are shown, and expected.
        report = self.verifier(backup_url, live_url, compared_with=f"{default.name} (live)",
                               allow_differences=True)
        self.audit.append(AuditEvent(user_id, "backup.verified", branch_name, {
            "ok": report.ok, "summary": report.summary(), "tables": report.compared_tables}))
        return default.name, report
