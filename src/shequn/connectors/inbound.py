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
        from .services import do_ingest_platform_events, do_parse_matrix_events

        raw = [(str(ev.get("room_id") or ""), ev) for ev in row.body.get("events", []) if isinstance(ev, dict)]
        do_ingest_platform_events(row.connection, do_parse_matrix_events(row.connection, raw))
