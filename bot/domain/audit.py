"""The audit trail's hash chain: each entry holds the hash of the one before it.

The hash covers every field a reader relies on, in a canonical JSON form, so changing any
of them (or removing, inserting or reordering entries) breaks the chain at that entry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditEvent:
    """What happened, before it is written: who did what to which thing, with details."""

    actor: str  # a Slack user id (U…), or "system" / "cli:<user>" for the bot itself
    action: str  # dotted verb, e.g. "backup.requested", "backup.created"
    subject: str  # what it was done to: a branch name, a request id
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry:
    """One stored link of the chain."""

    seq: int
    created_at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


def canonical_timestamp(value: datetime) -> str:
    """UTC, microseconds, always the same text for the same instant."""
    if value.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(
    *,
    seq: int,
    created_at: datetime,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any],
    prev_hash: str,
) -> str:
    body = {
        "seq": seq,
        "created_at": canonical_timestamp(created_at),
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": details,
        "prev_hash": prev_hash,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    reason: str


def find_chain_break(entries: list[AuditEntry], prev_hash: str = GENESIS_HASH,
                     expected_seq: int | None = None) -> ChainBreak | None:
    """The first entry whose link or content does not hold, or None when the chain holds.

    `entries` must be in `seq` order. Pass the previous batch's last hash and next seq to
    check a long chain in batches.
    """
    for entry in entries:
        if expected_seq is not None and entry.seq != expected_seq:
            return ChainBreak(entry.seq, f"expected entry {expected_seq} next, found {entry.seq}"
                              " (an entry was removed or inserted)")
        if entry.prev_hash != prev_hash:
            return ChainBreak(entry.seq, "its prev_hash does not match the entry before it")
        recomputed = entry_hash(
            seq=entry.seq,
            created_at=entry.created_at,
            actor=entry.actor,
            action=entry.action,
            subject=entry.subject,
            details=entry.details,
            prev_hash=entry.prev_hash,
        )
        if recomputed != entry.hash:
            return ChainBreak(entry.seq, "its content does not match its hash (it was edited)")
        prev_hash = entry.hash
        expected_seq = entry.seq + 1
    return None
