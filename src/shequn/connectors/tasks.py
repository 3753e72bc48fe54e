"""Scheduled work of the connectors: outbox delivery, Matrix sync, retries of failed callbacks.
``process_inbound`` (enqueued by :func:`shequn.connectors.services.do_store_inbound` in the transaction
that stores a callback) lives next to that service and is re-exported here, so task rows queued under
the old path ``shequn.connectors.tasks.process_inbound`` still import."""

from __future__ import annotations

import logging

from crontask import cron
from django.tasks import task

from . import selectors, services
from .services.inbound import process_inbound

__all__ = ["check_telegram_rights", "deliver_outbox", "process_inbound", "retry_inbound", "sync_matrix"]

log = logging.getLogger(__name__)


@cron("* * * * *")
@task(queue_name="connectors")
def deliver_outbox() -> dict[str, int]:
    """Deliver due outbox actions. For sub-minute latency run ``shequn connectors deliver --loop``."""
    total: dict[str, int] = {"released": services.do_release_abandoned()}
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
    for conn_id in selectors.active_connection_ids("matrix"):
        try:
            out[str(conn_id)] = services.do_matrix_sync(conn_id).get("stored", 0)
        except Exception:
            log.exception("matrix sync of connection %s failed", conn_id)
    return out


@cron("*/5 * * * *")
@task(queue_name="connectors")
def retry_inbound() -> int:
    """Re-run callbacks whose processing failed (at most 5 attempts each)."""
    n = 0
    for pk in selectors.failed_inbound_ids(max_attempts=5, limit=200):
        if services.do_process_inbound(pk) == "done":
            n += 1
    return n


@cron("*/10 * * * *")
@task(queue_name="connectors")
def check_telegram_rights() -> dict[str, int]:
    """Refresh every active Telegram bot's admin rights in its chats (getChatMember) for the health
    page; ``my_chat_member`` updates keep them current in between."""
    out: dict[str, int] = {}
    for conn_id in selectors.active_connection_ids("telegram"):
        try:
            out[str(conn_id)] = sum(1 for missing in services.do_check_telegram_rights(conn_id).values() if missing)
        except Exception as exc:
            services.do_note_connection_error(conn_id, f"getChatMember: {type(exc).__name__}")
            log.warning("telegram rights check of connection %s failed", conn_id, exc_info=True)
    return out
