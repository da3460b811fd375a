"""Two rules of cron that APScheduler 3 does not follow on its own (bot/scheduler.py's
triggers apply them): cron's weekday numbers, and a wall-clock time that fires once."""

from __future__ import annotations

from datetime import datetime

_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron's 0-6 (7 = sun too)


def _cron_day(token: str) -> int:
    if token.isdigit():
        day = int(token)
        if not 0 <= day <= 7:
            raise ValueError(token)
        return day
    return _CRON_DAYS.index(token[:3])


def cron_weekdays(field: str) -> str:
    """A cron weekday field as day names, which APScheduler 3 reads as cron does.

    `1-5` → `mon,tue,wed,thu,fri`; `0`, `7` → `sun`; `*` and anything not understood is
    returned as it is (APScheduler then accepts or rejects it).
    """
    if field == "*":
        return field
    try:
        days: set[int] = set()
        for part in field.lower().split(","):
            span, _, step_text = part.partition("/")
            step = int(step_text) if step_text else 1
            if span == "*":
                first, last = 0, 6
            else:
                start, dash, end = span.partition("-")
                first = _cron_day(start)
                last = _cron_day(end) if dash else (6 if step_text else first)
            if step < 1 or first > last:
                raise ValueError(part)
            days.update(day % 7 for day in range(first, last + 1, step))
    except ValueError:
        return field
    return ",".join(_CRON_DAYS[day] for day in sorted(days))


def repeated_wall_time(local: datetime) -> bool:
    """The second occurrence of a wall-clock time repeated when the clock was set back."""
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()
