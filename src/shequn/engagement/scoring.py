"""The engagement score formula (pure). The SQL in :mod:`shequn.engagement.services` computes the same
thing set-based; the tests hold the two to each other.

* Each event earns its kind's weight (per tenant, defaults below) on its local calendar day.
* Steadiness beats bursts: for each calendar month ``m`` of the last 12 (``m = 0`` is the current
  month) with ``D`` days (``D`` = days elapsed for the current month) and daily points ``x_1..x_D``
  (0 on silent days): ``mean = Σx / D``, ``sd = sqrt(Σx² / D − mean²)`` (population), and
  ``monthly = mean / (1 + sd)``.
* ``score = Σ_m 0.9^m × monthly_m``.
* ``level`` = how many of the 10 thresholds the score reaches (0 = inactive, 1–10).
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_WEIGHTS: dict[str, int] = {
    "message": 6, "join": 3, "topic": 8, "reply": 6, "reaction": 1, "like": 1, "check_in": 2,
    "purchase": 10, "invite": 5, "live_view": 1, "content_view": 0, "edit": 0, "delete": 0, "leave": 0,
    "other": 0,
}
DEFAULT_LEVEL_THRESHOLDS: list[float] = [0.1, 0.3, 0.6, 1.0, 2.0, 3.5, 6.0, 10.0, 16.0, 25.0]
WINDOW_MONTHS = 12
DECAY = 0.9
SPEAKING_KINDS = ("message", "reply")


def month_index(day: dt.date, today: dt.date) -> int:
    return (today.year * 12 + today.month) - (day.year * 12 + day.month)


def days_in_month(months_ago: int, today: dt.date) -> int:
    if months_ago == 0:
        return today.day
    y, m = divmod(today.year * 12 + today.month - 1 - months_ago, 12)
    return calendar.monthrange(y, m + 1)[1]


def window_start(today: dt.date) -> dt.date:
    y, m = divmod(today.year * 12 + today.month - 1 - (WINDOW_MONTHS - 1), 12)
    return dt.date(y, m + 1, 1)


@dataclass(frozen=True)
class MonthPart:
    months_ago: int
    days: int
    active_days: int
    total: float
    mean: float
    sd: float
    monthly: float
    contribution: float


def monthly_score(total: float, total_sq: float, days: int) -> tuple[float, float, float]:
    mean = total / days
    var = max(total_sq / days - mean * mean, 0.0)
    sd = math.sqrt(var)
    return mean, sd, mean / (1 + sd)


def score_from_daily(daily: Mapping[dt.date, float], today: dt.date) -> tuple[float, list[MonthPart]]:
    """The score and its per-month breakdown from ``{local day: points}``."""
    sums: dict[int, list[float]] = {}
    for day, pts in daily.items():
        m = month_index(day, today)
        if m < 0 or m >= WINDOW_MONTHS or day > today or not pts:
            continue
        acc = sums.setdefault(m, [0.0, 0.0, 0])
        acc[0] += pts
        acc[1] += pts * pts
        acc[2] += 1
    parts: list[MonthPart] = []
    score = 0.0
    for m in sorted(sums):
        total, total_sq, active = sums[m]
        days = days_in_month(m, today)
        mean, sd, monthly = monthly_score(total, total_sq, days)
        contribution = DECAY**m * monthly
        score += contribution
        parts.append(MonthPart(m, days, int(active), total, mean, sd, monthly, contribution))
    return score, parts


def level_for(score: float, thresholds: list[float] | None = None) -> int:
    th = thresholds or DEFAULT_LEVEL_THRESHOLDS
    return sum(1 for t in th if score >= t)
