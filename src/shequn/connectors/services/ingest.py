"""The hand-off of parsed platform events to the activity stream (one path for every platform and
every inbound route: webhook task, polling, Matrix sync), with the connection's health counters."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from shequn.activity.services import IngestResult, do_ingest

from ..models import Connection, Room

log = logging.getLogger("shequn.connectors.services")

#: how long, and how many, events of a room that is not mapped yet are kept for when it is
HELD_WINDOW = dt.timedelta(hours=24)
HELD_MAX = 500


def do_ingest_platform_events(conn: Connection, events: Sequence[Mapping[str, Any]], *,
                              mapped_only: bool = True) -> IngestResult:
    """Hand parsed platform events to the activity stream and update the connection's health.

    Events of rooms not mapped to a community are dropped when ``mapped_only`` (the default):
    shequn tracks the communities an operator chose, not every room a bot happens to sit in."""
    if mapped_only:
        rooms = {e.get("group") for e in events if e.get("group")}
        mapped = set(Room.objects.filter(connection=conn, external_id__in=rooms, group__isnull=False)
                     .values_list("external_id", flat=True)) if rooms else set()
        unmapped = [dict(e) for e in events if e.get("group") and e.get("group") not in mapped]
        if unmapped:  # kept a while: mapping the room soon after ingests them
            try:
                with transaction.atomic():
                    hold_events(conn, unmapped)
            except Exception:  # holding is a convenience: never lose the mapped rooms' events over it
                log.warning("connection %s: could not hold events of unmapped rooms", conn.pk, exc_info=True)
        events = [e for e in events if not e.get("group") or e.get("group") in mapped]
    result = do_ingest(conn.tenant_id, events) if events else IngestResult()
    for err in result.errors[:5]:
        log.warning("connection %s: event %d rejected (%s: %s)", conn.pk, err.index, err.field, err.message)
    now = timezone.now()
    latest = None
    for e in events:
        occ = e.get("occurred_at")
        if isinstance(occ, int | float):
            ts = dt.datetime.fromtimestamp(occ, tz=dt.UTC)
            latest = ts if latest is None or ts > latest else latest
    updates: dict[str, Any] = {"last_received_at": now, "events_received": F("events_received") + result.stored}
    if latest is not None:
        updates["last_event_at"] = latest
    Connection.objects.filter(pk=conn.pk).update(**updates)
    return result


def hold_events(conn: Connection, events: list[dict[str, Any]]) -> None:
    """Keep parsed events of rooms that are not mapped yet (at most :data:`HELD_MAX` a room, for
    :data:`HELD_WINDOW`): mapping the room soon after ingests them (:func:`release_held_events`)."""
    by_room: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_room.setdefault(str(e.get("group")), []).append(e)
    cutoff = (timezone.now() - HELD_WINDOW).timestamp()
    for room in Room.objects.select_for_update().filter(connection=conn, external_id__in=list(by_room),
                                                        group__isnull=True, encrypted=False):
        kept = [e for e in [*(room.held_events or []), *by_room[room.external_id]]
                if float(e.get("occurred_at") or 0) >= cutoff]
        room.held_events = kept[-HELD_MAX:]
        room.save(update_fields=["held_events"])


def release_held_events(room: Room) -> int:
    """Ingest the events held for a room that has just been mapped (those still inside the window)."""
    held = list(room.held_events or [])
    if not held:
        return 0
    cutoff = (timezone.now() - HELD_WINDOW).timestamp()
    fresh = [e for e in held if float(e.get("occurred_at") or 0) >= cutoff]
    Room.objects.filter(pk=room.pk).update(held_events=[])
    room.held_events = []
    return do_ingest_platform_events(room.connection, fresh).stored if fresh else 0
