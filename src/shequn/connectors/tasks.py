"""Background work of the connectors: outbox delivery, inbound processing, Matrix sync."""

from __future__ import annotations

import logging

from crontask import cron
from django.tasks import task

from . import services
from .models import Connection

log = logging.getLogger(__name__)


@task(queue_name="connectors")
def process_inbound(inbound_id: int) -> str:
    """Process one stored platform callback (enqueued in the transaction that stored it)."""
    return services.do_process_inbound(inbound_id)


@cron("* * * * *")
@task(queue_name="connectors")
def deliver_outbox() -> dict[str, int]:
    """Deliver due outbox actions. For sub-minute latency run ``shequn connectors deliver --loop``."""
    total: dict[str, int] = {}
    for _ in range(20):
        stats = services.do_deliver_due(200)
        for k, v in stats.as_dict().items():
            total[k] = total.get(k, 0) + v
        if stats.claimed == 0:
            break
    return total


@cron("* * * * *")
@task(queue_name="connectors")
def sync_matrix() -> dict[str, int]:
    """One sync round per active Matrix connection (a long-running ``shequn connectors matrix-sync``
    gives lower latency)."""
    out: dict[str, int] = {}
    for conn_id in Connection.objects.filter(platform="matrix", is_active=True).values_list("pk", flat=True):
        try:
            out[str(conn_id)] = services.do_matrix_sync(conn_id).get("stored", 0)
        except Exception:
            log.exception("matrix sync of connection %s failed", conn_id)
    return out


@cron("*/5 * * * *")
@task(queue_name="connectors")
def retry_inbound() -> int:
    """Re-run callbacks whose processing failed (at most 5 attempts each)."""
    from .models import InboundEvent

    n = 0
    for pk in InboundEvent.objects.filter(status=InboundEvent.Status.FAILED, attempts__lt=5).values_list(
            "pk", flat=True)[:200]:
        if services.do_process_inbound(pk) == "done":
            n += 1
    return n
