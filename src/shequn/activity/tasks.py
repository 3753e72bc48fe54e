"""Background work of the activity stream."""

from __future__ import annotations

from crontask import cron
from django.tasks import task

from . import services


@task(queue_name="engines")
def dispatch_events(tenant_id: int, event_ids: list[int]) -> dict[str, str]:
    """Hand a committed batch of new events to the engines."""
    return services.do_dispatch(tenant_id, event_ids)


@cron("*/2 * * * *")
@task(queue_name="engines")
def retry_failed_dispatches() -> int:
    return services.do_retry_failures()
