"""Background work of the activity stream.

``dispatch_events`` is enqueued by :func:`~shequn.activity.services.do_ingest` and lives next to it;
it is re-exported here so task rows queued under ``shequn.activity.tasks.dispatch_events`` still run.
Failed consumer batches are retried by ``shequn.core.tasks.retry_stream_deliveries``."""

from __future__ import annotations

from crontask import cron
from django.db import connection
from django.tasks import task

from shequn.core import streams

from .partitions import do_create_partitions
from .services import dispatch_events

__all__ = ["create_partitions", "dispatch_events", "retry_failed_dispatches"]


@cron("7 2 * * *")
@task()
def create_partitions() -> int:
    """Nightly: the event table's partitions of this month and the next three exist (PostgreSQL;
    idempotent, so a missed night costs nothing — events of a month without a partition wait in the
    default partition and move when it is created). Returns how many were created."""
    if connection.vendor != "postgresql":
        return 0
    return len(do_create_partitions(3))


@task(queue_name="engines")
def retry_failed_dispatches() -> int:
    """Superseded by ``core.tasks.retry_stream_deliveries`` (no longer scheduled); kept so rows queued
    under this path still run."""
    return streams.retry_due(stream="activity")
