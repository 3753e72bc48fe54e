"""The Matrix bot's inbound side: one sync round fetches events since the stored ``next_batch``,
fills timeline gaps with ``/messages`` (a sync returns only the last N events of a busy room and
flags the timeline ``limited``), joins rooms the bot is invited to, and hands everything to
:func:`shequn.connectors.services.do_ingest_platform_events` — in the same transaction that stores
the new ``next_batch``. A restart therefore resumes exactly where the last committed round ended, and
anything seen twice is dropped by the ingest's event-id idempotency."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from nio import Api, ErrorResponse, MessageDirection, RoomGetStateResponse, RoomMessagesResponse

from .adapters import ConnInfo, DeliveryError
from .adapters.matrix import check, matrix_client
from .events_matrix import levels_from_state

TIMELINE_LIMIT = 100
MAX_GAP_PAGES = 20
SYNC_FILTER = {"room": {"timeline": {"limit": TIMELINE_LIMIT}, "state": {"lazy_load_members": True}},
               "presence": {"not_types": ["*"]}, "account_data": {"not_types": ["*"]}}


@dataclass
class SeenRoom:
    room_id: str
    name: str = ""
    member_count: int | None = None
    joined: bool = True
    #: the room's ``m.room.power_levels`` content at the start of this batch's timeline, when the
    #: sync's state section carried it (initial sync, a newly joined room, or a change in a gap)
    power_levels: dict[str, Any] | None = None


@dataclass
class SyncBatch:
    next_batch: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (room_id, raw event)
    rooms: list[SeenRoom] = field(default_factory=list)
    invites: list[str] = field(default_factory=list)
    gap_pages: int = 0


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _events(section: Any) -> list[dict[str, Any]]:
    evs = _d(section).get("events")
    return [e for e in evs if isinstance(e, dict)] if isinstance(evs, list) else []


def batch_from_dict(data: dict[str, Any]) -> SyncBatch:
    """Extract raw events, rooms and invites from a ``/sync`` response body (plain JSON: nio's
    jsonschema validation of the whole response costs more than the rest of the path)."""
    rooms = _d(data.get("rooms"))
    batch = SyncBatch(next_batch=str(data.get("next_batch") or ""))
    for room_id, raw_info in _d(rooms.get("join")).items():
        info = _d(raw_info)
        state = _events(info.get("state"))
        timeline = _events(info.get("timeline"))
        name = ""
        for ev in [*state, *timeline]:
            if ev.get("type") == "m.room.name":
                name = str(_d(ev.get("content")).get("name") or "")[:200]
        levels = levels_from_state(state)
        count = _d(info.get("summary")).get("m.joined_member_count")
        batch.rooms.append(SeenRoom(room_id, name, count if isinstance(count, int) else None, power_levels=levels))
        batch.events.extend((room_id, ev) for ev in timeline)
    for room_id, info in _d(rooms.get("leave")).items():
        batch.rooms.append(SeenRoom(room_id, joined=False))
        batch.events.extend((room_id, ev) for ev in _events(_d(info).get("timeline")))
    batch.invites = list(_d(rooms.get("invite")))
    return batch


async def fetch(conn: ConnInfo, since: str | None, *, timeout_ms: int = 0, auto_join: bool = True,
                known_levels: Collection[str] = ()) -> SyncBatch:
    """One ``/sync`` round. Joined rooms whose power levels are neither in ``known_levels`` (cached by
    the caller) nor in this batch's state are asked for them once (``m.room.power_levels``), so the
    ingest can tell room admins from members."""
    async with matrix_client(conn, timeout=max(30.0, timeout_ms / 1000 + 15)) as client:
        method, path = Api.sync(client.access_token, since=since, timeout=timeout_ms,
                                filter=SYNC_FILTER)
        resp = await client.send(method, path, timeout=max(30.0, timeout_ms / 1000 + 15))
        data = await resp.json(content_type=None)
        if resp.status != 200 or not isinstance(data, dict) or "next_batch" not in data:
            check(ErrorResponse.from_dict(data if isinstance(data, dict) else {}))
            raise DeliveryError(DeliveryError.RETRY, f"sync: HTTP {resp.status}")
        batch = batch_from_dict(data)
        if since:
            for room_id, info in _d(_d(data.get("rooms")).get("join")).items():
                timeline = _d(_d(info).get("timeline"))
                if timeline.get("limited") and timeline.get("prev_batch"):
                    gap, pages = await _fill_gap(client, room_id, str(timeline["prev_batch"]), since)
                    batch.gap_pages += pages
                    # the gap precedes this room's timeline: insert before its first event
                    first = next((i for i, (r, _e) in enumerate(batch.events) if r == room_id), len(batch.events))
                    batch.events[first:first] = [(room_id, ev) for ev in gap]
        for seen in batch.rooms:
            if seen.joined and seen.power_levels is None and seen.room_id not in known_levels:
                resp = await client.room_get_state(seen.room_id)
                if isinstance(resp, RoomGetStateResponse):
                    seen.power_levels = levels_from_state(resp.events)
        if auto_join:
            for room_id in batch.invites:
                await client.join(room_id)
        return batch


async def _fill_gap(client: Any, room_id: str, start: str, until: str) -> tuple[list[dict[str, Any]], int]:
    """Page backwards from the timeline's ``prev_batch`` to the previous sync token."""
    events: list[dict[str, Any]] = []
    token: str | None = start
    pages = 0
    while token and pages < MAX_GAP_PAGES:
        resp = await client.room_messages(room_id, start=token, end=until, direction=MessageDirection.back,
                                          limit=TIMELINE_LIMIT)
        pages += 1
        if not isinstance(resp, RoomMessagesResponse) or not resp.chunk:
            break
        events[0:0] = [e.source for e in reversed(resp.chunk)]
        if resp.end == token or not resp.end:
            break
        token = resp.end
    return events, pages


def fetch_sync(conn: ConnInfo, since: str | None, *, timeout_ms: int = 0, auto_join: bool = True,
               known_levels: Collection[str] = ()) -> SyncBatch:
    return asyncio.run(fetch(conn, since, timeout_ms=timeout_ms, auto_join=auto_join, known_levels=known_levels))


__all__ = ["DeliveryError", "SeenRoom", "SyncBatch", "batch_from_dict", "fetch_sync"]
