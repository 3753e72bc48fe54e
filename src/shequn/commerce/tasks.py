"""Scheduled work of commerce: order-event delivery retries, expiries, group-buy failures and refund
retries.

Tasks a service enqueues inside its transaction live next to that service:
``services.transitions.deliver_order_event`` (order-event delivery) and
``services.flash.consume_flash_gate`` (the flash gate consumer). They are re-exported here so that
task rows queued under the old paths ``shequn.commerce.tasks.<name>`` still import."""

from __future__ import annotations

from crontask import cron
from django.tasks import task

from . import events, services
from .services.flash import consume_flash_gate
from .services.transitions import deliver_order_event

__all__ = [
    "consume_flash_gate",
    "deliver_order_event",
    "expire_tiers",
    "expire_unpaid_orders",
    "fail_expired_teams",
    "retry_order_event_deliveries",
    "retry_pending_refunds",
    "sweep_flash_gates",
]


@task(queue_name="engines")
def retry_order_event_deliveries() -> int:
    """Superseded by ``core.tasks.retry_stream_deliveries`` (no longer scheduled: one retry schedule
    for every stream, with backoff and a dead letter); kept so rows queued under this path still run."""
    return events.retry_failed()


@cron("* * * * *")
@task
def expire_unpaid_orders() -> int:
    """Unpaid orders past their deadline are cancelled and their stock released."""
    return services.do_expire_orders()


@cron("* * * * *")
@task
def fail_expired_teams() -> int:
    """Group-buy teams that did not fill in time fail; paid members are refunded exactly once."""
    return services.do_fail_expired_teams()


@cron("* * * * *")
@task
def sweep_flash_gates() -> int:
    """Drain every Redis-gated sale's stream that is open or ended within the day: the safety net
    behind the wake flag (a web process that died between accepting and enqueueing the consumer)."""
    return services.do_sweep_flash_gates()


@cron("*/5 * * * *")
@task
def retry_pending_refunds() -> int:
    return services.do_retry_pending_refunds()


@cron("7 * * * *")
@task
def expire_tiers() -> int:
    return services.do_expire_tiers()
