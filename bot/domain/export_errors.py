"""The errors of exports: what the export adapter (bot/exports) raises. Each message is a
sentence for the person who asked; none holds a secret."""

from __future__ import annotations

from bot.domain.errors import LifeguardError


class ExportError(LifeguardError):
    """An export, its verification or a restore from it could not be done."""


class ObjectStoreError(ExportError):
    """The object store refused or failed. `reason` is one of REASONS, for callers that
    react differently (an existing key is a bug or a clash, unreachable may pass)."""

    REASONS = ("no_bucket", "access_denied", "unreachable", "exists", "not_found", "failed")

    def __init__(self, message: str, reason: str = "failed") -> None:
        super().__init__(message)
        if reason not in self.REASONS:
            raise ValueError(f"unknown object store error reason {reason!r}")
        self.reason = reason


class PgToolsError(ExportError):
    """No usable pg_dump/pg_restore: missing, or older than the server."""


class DumpFailed(ExportError):
    """pg_dump exited non-zero or was killed; the message has its first line of stderr."""


class VerificationFailed(ExportError):
    """An export file is not what its manifest says; `file` names it."""

    def __init__(self, message: str, file: str) -> None:
        super().__init__(message)
        self.file = file


class RestoreFailed(ExportError):
    """pg_restore, or the decryption or decompression feeding it, failed."""


class InvalidManifest(ExportError):
    """manifest.json or SHA256SUMS cannot be read; the message says where."""

