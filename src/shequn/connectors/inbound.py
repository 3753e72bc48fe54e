"""Processing of stored raw callbacks (:class:`InboundEvent`), per platform."""

from __future__ import annotations

from .models import InboundEvent


def process(row: InboundEvent) -> None:
    if row.platform == "telegram":
        from .telegram import process_update

        process_update(row.connection, row.body)
    elif row.platform == "wecom":
        from .wecom import process_callback

        process_callback(row.connection, row.body)
    elif row.platform == "matrix":
        from .events_matrix import to_activity
        from .services import do_ingest_platform_events

        bot = str(row.connection.config.get("user_id") or "")
        events = [a for ev in row.body.get("events", [])
                  if (a := to_activity(str(ev.get("room_id") or ""), ev, bot_user=bot)) is not None]
        do_ingest_platform_events(row.connection, events)
