"""Matrix, the database side: the bot's sync round (rooms recorded, events ingested and the new
``next_batch`` stored in ONE transaction: restart-safe, no duplicates), stored application-service
transactions, and the rooms' power-levels cache behind the staff marks. Parsing is
:mod:`shequn.connectors.platforms.matrix.inbound`; the sync client is
:mod:`shequn.connectors.platforms.matrix.outbound`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction

from shequn.core.models import Platform

from ..models import Connection, Room
from ..platforms.matrix.inbound import to_activities, transaction_events
from .connections import conn_info, do_note_connection_error
from .ingest import do_ingest_platform_events
from .rooms import do_discover_room


def do_matrix_sync(connection_id: int, *, timeout_ms: int = 0) -> dict[str, int]:
    """One Matrix sync round for a connection: fetch since the stored token, then in ONE transaction
    record rooms, ingest events and store the new token (restart-safe, no duplicates)."""
    from ..platforms.matrix.outbound import fetch_sync  # noqa: PLC0415, RUF100  (matrix-nio takes seconds to import)

    conn = Connection.objects.get(pk=connection_id, platform=Platform.MATRIX)
    info = conn_info(conn)
    since = (conn.state or {}).get("next_batch")
    known = set(Room.objects.filter(connection=conn).exclude(staff_state={}).values_list("external_id", flat=True))
    try:
        batch = fetch_sync(info, since, timeout_ms=timeout_ms, auto_join=bool(conn.config.get("auto_join", True)),
                           known_levels=known)
    except Exception as exc:
        do_note_connection_error(conn.pk, f"sync: {type(exc).__name__}: {exc}")
        raise
    with transaction.atomic():
        conn = Connection.objects.select_for_update().get(pk=connection_id)
        if (conn.state or {}).get("next_batch") != since:
            return {"stored": 0, "duplicates": 0, "skipped_concurrent": 1}  # another syncer got there first
        for seen in batch.rooms:
            do_discover_room(conn, seen.room_id, name=seen.name, member_count=seen.member_count, joined=seen.joined,
                             encrypted=seen.encrypted)
        fresh = {seen.room_id: seen.power_levels for seen in batch.rooms if seen.power_levels is not None}
        parsed = do_parse_matrix_events(conn, batch.events, fresh)
        result = do_ingest_platform_events(conn, parsed)
        conn.state = {**(conn.state or {}), "next_batch": batch.next_batch}
        conn.save(update_fields=["state"])
    return {"stored": result.stored, "duplicates": result.duplicates, "events": len(batch.events),
            "rooms": len(batch.rooms), "gap_pages": batch.gap_pages}


def do_parse_matrix_events(conn: Connection, events: list[tuple[str, dict[str, Any]]],
                           fresh_levels: Mapping[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Raw Matrix events → activity events marked ``sender_is_admin`` from the rooms' power levels
    (cached on :class:`Room`, overridden by ``fresh_levels`` from the sync's state and by power-level
    changes in the batch); the cache is updated when the levels changed."""
    rooms = {room_id for room_id, _ev in events} | set(fresh_levels or {})
    cached = dict(Room.objects.filter(connection=conn, external_id__in=rooms)
                  .values_list("external_id", "staff_state"))
    levels = {room_id: lv for room_id, lv in cached.items() if lv}
    levels.update(fresh_levels or {})
    parsed = to_activities(events, bot_user=str(conn.config.get("user_id") or ""), levels=levels)
    for room_id, lv in levels.items():
        if room_id in cached and cached[room_id] != lv:
            Room.objects.filter(connection=conn, external_id=room_id).update(staff_state=lv)
    return parsed


def do_process_matrix_transaction(conn: Connection, body: dict[str, Any]) -> None:
    """Ingest one stored application-service transaction (called by the inbound task)."""
    do_ingest_platform_events(conn, do_parse_matrix_events(conn, transaction_events(body)))
