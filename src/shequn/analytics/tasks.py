"""Scheduled work of the analytics app: recompute the day buckets the activity consumer and the order
listener marked dirty, and evaluate the health rules."""

from __future__ import annotations

from crontask import cron
from django.tasks import task

from . import services


@cron("* * * * *")
@task(queue_name="engines")
def refresh_rollups() -> int:
    """Recompute every dirty (tenant, day) bucket (and the days of recent link clicks); returns how
    many were written."""
    services.do_mark_recent_clicks()
    return services.do_refresh()
