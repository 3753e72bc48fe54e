"""Raw callbacks (:class:`InboundEvent`): a verified callback — a webhook, a Telegram getUpdates
round, a Matrix application-service transaction — is stored once (unique on the platform's id) and
processed by a task enqueued in the same transaction, so the platform gets its answer at once
(WeCom: within 5 s). A processing error marks the row failed (retried by ``tasks.retry_inbound``)
without losing it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.db import transaction
from django.tasks import task
from django.utils import timezone

from ..models import Connection, InboundEvent
from ..platforms.telegram import inbound as tg
from .connections import conn_info, do_note_connection_error
from .matrix import do_process_matrix_transaction
from .telegram import do_process_telegram_update
from .wecom import do_process_wecom_callback

log = logging.getLogger("shequn.connectors.services")


def do_store_inbound(conn: Connection, dedupe_key: str, event_type: str,
                     body: dict[str, Any]) -> tuple[InboundEvent, bool]:
    """Store a verified raw callback once and enqueue its processing in the same transaction.
    Returns (row, created); a platform retry of the same callback returns created=False."""
    with transaction.atomic():
        row, created = InboundEvent.objects.get_or_create(
            connection=conn, dedupe_key=dedupe_key[:191],
            defaults={"tenant_id": conn.tenant_id, "platform": conn.platform, "event_type": event_type[:80],
                      "body": body},
        )
        if created:
            process_inbound.enqueue(row.pk)
    return row, created


@task(queue_name="connectors")
def process_inbound(inbound_id: int) -> str:
    """Process one stored platform callback (enqueued in the transaction that stored it)."""
    return do_process_inbound(inbound_id)


def _process(row: InboundEvent) -> None:
    if row.platform == "telegram":
        do_process_telegram_update(row.connection, row.body)
    elif row.platform == "wecom":
        do_process_wecom_callback(row.connection, row.body)
    elif row.platform == "matrix":
        do_process_matrix_transaction(row.connection, row.body)


def do_process_inbound(inbound_id: int) -> str:
    """Process one stored callback (idempotent: a done row is skipped)."""
    with transaction.atomic():
        row = InboundEvent.objects.select_for_update().select_related("connection").filter(pk=inbound_id).first()
        if row is None or row.status == InboundEvent.Status.DONE:
            return "skipped"
        row.attempts += 1
        try:
            with transaction.atomic():
                _process(row)
        except Exception as exc:
            log.exception("inbound %s (%s) failed", row.pk, row.platform)
            row.status = InboundEvent.Status.FAILED
            row.error = f"{type(exc).__name__}: {exc}"[:500]
            row.save(update_fields=["status", "error", "attempts"])
            do_note_connection_error(row.connection_id, row.error)
            return "failed"
        row.status = InboundEvent.Status.DONE
        row.processed_at = timezone.now()
        row.error = ""
        row.save(update_fields=["status", "processed_at", "error", "attempts"])
    return "done"


def do_poll_telegram(connection_id: int, *, timeout: int = 0, drop_webhook: bool = False) -> int:
    """One getUpdates round (long polling, for hosts that cannot receive webhooks): store each update
    once and advance the offset in the same transaction. Returns the number of updates."""
    from ..platforms.telegram.outbound import get_updates  # noqa: PLC0415, RUF100  (aiogram takes seconds to import)

    conn = Connection.objects.get(pk=connection_id, platform="telegram")
    offset = (conn.state or {}).get("offset")
    updates = asyncio.run(get_updates(conn_info(conn), offset, timeout, drop_webhook))
    with transaction.atomic():
        conn = Connection.objects.select_for_update().get(pk=connection_id)
        for u in updates:
            key, kind = tg.update_key(u)
            do_store_inbound(conn, key, kind, u)
        if updates:
            conn.state = {**(conn.state or {}), "offset": max(u["update_id"] for u in updates) + 1}
            conn.save(update_fields=["state"])
    return len(updates)
