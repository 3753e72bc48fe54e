"""Background work of commerce: order-event delivery, expiries, group-buy failures, the flash gate
consumer and refund retries."""

from __future__ import annotations

from crontask import cron
from django.tasks import task

from . import events, services


@task(queue_name="engines")
def deliver_order_event(event_id: int) -> dict[str, str]:
    """Call every order listener for one event (each in its own transaction)."""
    return events.deliver(event_id)


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


@cron("*/5 * * * *")
@task
def retry_pending_refunds() -> int:
    return services.do_retry_pending_refunds()


@cron("7 * * * *")
@task
def expire_tiers() -> int:
    return services.do_expire_tiers()


@task
def consume_flash_gate(flash_sale_id: int) -> int:
    """Write orders for attempts the Redis gate accepted."""
    return services.do_consume_flash_gate(flash_sale_id)
