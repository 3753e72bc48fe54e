"""Check-in days and streaks in the tenant's time zone (pure)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo


def local_day(moment: dt.datetime, tz_name: str) -> dt.date:
    """The calendar day of ``moment`` (aware) in ``tz_name``."""
    if moment.tzinfo is None:
        raise ValueError("aware datetime required")
    return moment.astimezone(ZoneInfo(tz_name)).date()


def day_bounds(day: dt.date, tz_name: str) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` of a local day as aware UTC datetimes (handles DST days of 23/25 hours)."""
    tz = ZoneInfo(tz_name)
    start = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


@dataclass(frozen=True)
class Streak:
    current: int  # consecutive days ending today (or yesterday, if today is not checked in yet)
    longest: int
    total: int  # cumulative days
    last_day: dt.date | None


def compute_streak(days: Iterable[dt.date], today: dt.date) -> Streak:
    """Continuous and cumulative streaks from the set of checked-in days. A streak stays "current"
    through today while yesterday is checked in (the member still has today to keep it)."""
    uniq = sorted(set(days))
    if not uniq:
        return Streak(0, 0, 0, None)
    longest = run = 1
    for prev, cur in itertools.pairwise(uniq):
        run = run + 1 if (cur - prev).days == 1 else 1
        longest = max(longest, run)
    last = uniq[-1]
    current = 0
    if last >= today - dt.timedelta(days=1) and last <= today:
        current = 1
        day_set = set(uniq)
        d = last - dt.timedelta(days=1)
        while d in day_set:
            current += 1
            d -= dt.timedelta(days=1)
    return Streak(current, longest, len(uniq), last)
