"""Scheduled work of the core app."""

from __future__ import annotations

from crontask import cron
from django.tasks import task

from . import streams


@cron("*/2 * * * *")
@task(queue_name="engines")
def retry_stream_deliveries() -> int:
    """Re-run the stream subscribers whose failed delivery is due (backoff; dead letter after
    ``streams.MAX_ATTEMPTS``). One schedule for every stream (activity, order events)."""
    return streams.retry_due(limit=200)
