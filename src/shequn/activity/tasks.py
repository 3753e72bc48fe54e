"""Background work of the activity stream.

``dispatch_events`` is enqueued by :func:`~shequn.activity.services.do_ingest` and lives next to it;
it is re-exported here so task rows queued under ``shequn.activity.tasks.dispatch_events`` still run.
Failed consumer batches are retried by ``shequn.core.tasks.retry_stream_deliveries``."""

from __future__ import annotations

from django.tasks import task

from shequn.core import streams

from .services import dispatch_events

__all__ = ["dispatch_events", "retry_failed_dispatches"]


@task(queue_name="engines")
def retry_failed_dispatches() -> int:
    """Superseded by ``core.tasks.retry_stream_deliveries`` (no longer scheduled); kept so rows queued
    under this path still run."""
    return streams.retry_due(stream="activity")
