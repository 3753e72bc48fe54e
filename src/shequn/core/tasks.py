"""Scheduled work of the core app."""

from __future__ import annotations

from crontask import cron
from django.tasks import task

from . import streams, taskqueue, webhooks


@cron("*/2 * * * *")
@task(queue_name="engines")
def retry_stream_deliveries() -> int:
    """Re-run the stream subscribers whose failed delivery is due (backoff; dead letter after
    ``streams.MAX_ATTEMPTS``). One schedule for every stream (activity, order events)."""
    return streams.retry_due(limit=200)


@cron("* * * * *")
@task(queue_name="default")
def send_due_webhooks() -> int:
    """Send the outgoing webhook deliveries that are due (first attempts and retries with backoff);
    :func:`shequn.core.webhooks.deliver_due`."""
    return webhooks.deliver_due(limit=200)


@cron("* * * * *")
@task()
def requeue_abandoned_tasks() -> int:
    """Run again the tasks a dead worker left RUNNING and those a dropped connection failed
    (:mod:`shequn.core.taskqueue`)."""
    return taskqueue.do_requeue_abandoned()
