"""Retention: which backup branches a grandfather-father-son (GFS) policy keeps.

The definition (restic's `forget --keep-daily/--keep-weekly/--keep-monthly`):

- A *Lifeguard backup* is a candidate recorded_by_lifeguard that is not the default branch
  (a backup someone made the default is live data now, not a backup). Only Lifeguard
  backups count towards the periods; a protected Lifeguard backup counts like any other.
- Each backup's instant is read in `zone` and falls in one calendar day (`2026-11-21`),
  one ISO week (`2026-W47`, ISO year and week: 2027-01-03 is in `2026-W53`) and one
  month (`2026-11`).
- `daily = n`: of the n most recent days that have at least one Lifeguard backup, keep the
  newest backup of each day. Days without a backup are skipped, not counted.
  `weekly` does the same with ISO weeks, `monthly` with months.
- The three rules are applied independently; the kept set is their union (a backup can be
  kept by several rules at once, and then it uses a slot in each). This is restic's rule,
  not borg's: borg lets a later rule skip archives an earlier rule already kept, and keeps
  the oldest archive when a rule runs short; Lifeguard does neither.
- "Newest" orders by created_at and, for equal instants, by branch name (the greater name
  is newer), so the result never depends on the input order.

Safety rules on top of the definition, never overridden by a policy:

- a branch not recorded as a backup by Lifeguard, the default branch and a protected branch
  are always kept (reasons "not a Lifeguard backup", "default branch", "protected");
- the newest Lifeguard backup is always kept, even with a policy of all zeros
  (reason "newest backup" when no rule of the policy keeps it already).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

DEFAULT_BRANCH = "default branch"
PROTECTED = "protected"
NOT_A_BACKUP = "not a Lifeguard backup"
NEWEST_BACKUP = "newest backup"


@dataclass(frozen=True)
class RetentionPolicy:
    """How many days, ISO weeks and months keep their newest backup. Each is 0 or more."""

    daily: int = 7
    weekly: int = 4
    monthly: int = 12

    def __post_init__(self) -> None:
        for name in ("daily", "weekly", "monthly"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"the retention policy's {name} count must be a whole number of 0 or "
                    f"more (got {value!r})"
                )

    def describe(self) -> str:
        """`7 daily, 4 weekly, 12 monthly`."""
        return f"{self.daily} daily, {self.weekly} weekly, {self.monthly} monthly"


@dataclass(frozen=True)
class PruneCandidate:
    """A branch of the project as the pruner sees it."""

    name: str
    created_at: datetime  # timezone-aware
    recorded_by_lifeguard: bool  # Lifeguard created it and recorded it as a backup
    is_default: bool
    is_protected: bool

    @property
    def is_lifeguard_backup(self) -> bool:
        """Counts towards the policy's periods (and may be deleted unless protected)."""
        return self.recorded_by_lifeguard and not self.is_default

    @property
    def may_be_deleted(self) -> bool:
        return self.is_lifeguard_backup and not self.is_protected


@dataclass(frozen=True)
class PrunePlan:
    """What to keep and what to delete, both newest first; reasons: name -> why kept."""

    keep: tuple[PruneCandidate, ...]
    delete: tuple[PruneCandidate, ...]
    reasons: dict[str, str]


def day_label(local: datetime) -> str:
    return local.strftime("%Y-%m-%d")


def week_label(local: datetime) -> str:
    year, week, _ = local.isocalendar()
    return f"{year}-W{week:02d}"


def month_label(local: datetime) -> str:
    return local.strftime("%Y-%m")


_RULES: tuple[tuple[str, Callable[[datetime], str]], ...] = (
    ("daily", day_label),
    ("weekly", week_label),
    ("monthly", month_label),
)


def newest_first(candidates: Iterable[PruneCandidate]) -> list[PruneCandidate]:
    """Newest first by created_at, then by name (greater first) for equal instants."""
    return sorted(candidates, key=lambda c: (c.created_at, c.name), reverse=True)


def plan_prune(candidates: Iterable[PruneCandidate], policy: RetentionPolicy, *,
               zone: tzinfo = UTC) -> PrunePlan:
    """Split the candidates into keep and delete by the GFS definition in this module's
    docstring, read in `zone`. Raises ValueError for naive times or repeated names."""
    items = list(candidates)
    names: set[str] = set()
    for candidate in items:
        if candidate.created_at.tzinfo is None or candidate.created_at.utcoffset() is None:
            raise ValueError(f"branch {candidate.name!r} has a naive created_at; "
                             "retention needs timezone-aware times")
        if candidate.name in names:
            raise ValueError(f"branch {candidate.name!r} appears twice among the candidates")
        names.add(candidate.name)
    items = newest_first(items)

    why: dict[str, list[str]] = {c.name: [] for c in items}
    for candidate in items:
        if candidate.is_default:
            why[candidate.name].append(DEFAULT_BRANCH)
        if candidate.is_protected:
            why[candidate.name].append(PROTECTED)
        if not candidate.recorded_by_lifeguard:
            why[candidate.name].append(NOT_A_BACKUP)

    backups = [c for c in items if c.is_lifeguard_backup]
    for rule, label in _RULES:
        count: int = getattr(policy, rule)
        periods: set[str] = set()
        for backup in backups:  # newest first: the first one met in a period is its newest
            if len(periods) >= count:
                break
            period = label(backup.created_at.astimezone(zone))
            if period not in periods:
                periods.add(period)
                why[backup.name].append(f"{rule} {period}")
    if backups and not why[backups[0].name]:
        why[backups[0].name].append(NEWEST_BACKUP)

    keep = tuple(c for c in items if why[c.name])
    delete = tuple(c for c in items if not why[c.name])
    unsafe = [c.name for c in delete if not c.may_be_deleted]
    if unsafe:  # cannot happen by construction; the safety rules are checked once more
        raise RuntimeError(f"retention would delete branches it must keep: {unsafe}")
    return PrunePlan(keep=keep, delete=delete,
                     reasons={c.name: ", ".join(why[c.name]) for c in keep})
