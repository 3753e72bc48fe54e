"""Matrix inbound, pure: raw client-server JSON (a ``/sync`` body, an application-service
transaction, timeline events) → rooms seen and activity-stream events, with the staff marks from the
rooms' power levels. No database: used by the sync, the appservice transaction endpoint and the
benchmark alike (the database side is :mod:`shequn.connectors.services.matrix`)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _events(section: Any) -> list[dict[str, Any]]:
    evs = _d(section).get("events")
    return [e for e in evs if isinstance(e, dict)] if isinstance(evs, list) else []


@dataclass
class SeenRoom:
    room_id: str
    name: str = ""
    member_count: int | None = None
    joined: bool = True
    #: the room's ``m.room.power_levels`` content at the start of this batch's timeline, when the
    #: sync's state section carried it (initial sync, a newly joined room, or a change in a gap)
    power_levels: dict[str, Any] | None = None
    #: ``m.room.encryption`` seen in the state or the timeline (end-to-end encrypted: unreadable)
    encrypted: bool = False


@dataclass
class SyncBatch:
    next_batch: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (room_id, raw event)
    rooms: list[SeenRoom] = field(default_factory=list)
    invites: list[str] = field(default_factory=list)
    gap_pages: int = 0


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
        encrypted = False
        for ev in [*state, *timeline]:
            if ev.get("type") == "m.room.name":
                name = str(_d(ev.get("content")).get("name") or "")[:200]
            elif ev.get("type") in ("m.room.encryption", "m.room.encrypted"):
                encrypted = True
        levels = levels_from_state(state)
        count = _d(info.get("summary")).get("m.joined_member_count")
        batch.rooms.append(SeenRoom(room_id, name, count if isinstance(count, int) else None, power_levels=levels,
                                    encrypted=encrypted))
        batch.events.extend((room_id, ev) for ev in timeline)
    for room_id, info in _d(rooms.get("leave")).items():
        batch.rooms.append(SeenRoom(room_id, joined=False))
        batch.events.extend((room_id, ev) for ev in _events(_d(info).get("timeline")))
    batch.invites = list(_d(rooms.get("invite")))
    return batch


def limited_timelines(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(room id, ``prev_batch``) of every joined room whose timeline in this ``/sync`` body was
    ``limited`` (the gap before it must be paged with ``/messages``)."""
    out = []
    for room_id, info in _d(_d(data.get("rooms")).get("join")).items():
        timeline = _d(_d(info).get("timeline"))
        if timeline.get("limited") and timeline.get("prev_batch"):
            out.append((room_id, str(timeline["prev_batch"])))
    return out


def hs_token_matches(expected: str, authorization: str, query_token: str) -> bool:
    """An application-service push is authenticated by the homeserver token (``Authorization:
    Bearer <hs_token>``, or the legacy ``access_token`` query parameter); constant-time compare."""
    given = authorization[7:] if authorization.startswith("Bearer ") else query_token
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def transaction_events(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(room id, raw event) of a stored application-service transaction, in order."""
    return [(str(ev.get("room_id") or ""), ev) for ev in body.get("events", []) if isinstance(ev, dict)]


def _mentions(content: dict[str, Any]) -> list[str]:
    m = content.get("m.mentions")
    if isinstance(m, dict) and isinstance(m.get("user_ids"), list):
        return [str(u) for u in m["user_ids"]][:50]
    return []


def to_activity(room_id: str, ev: dict[str, Any], *, bot_user: str = "") -> dict[str, Any] | None:
    """One activity event for ``ev`` or None when it is the bot's own noise. Unknown types keep their
    Matrix type as the kind, which the ingest stores as ``other`` with ``raw_kind``."""
    if not isinstance(ev, dict):
        return None
    etype = str(ev.get("type") or "")
    event_id = ev.get("event_id")
    sender = ev.get("sender")
    if not etype or not isinstance(event_id, str) or not event_id:
        return None
    content = _d(ev.get("content"))
    ts = ev.get("origin_server_ts")
    occurred = (ts / 1000) if isinstance(ts, int | float) else None
    base: dict[str, Any] = {"platform": "matrix", "event_id": event_id, "occurred_at": occurred,
                            "sender": sender, "group": room_id}
    if etype == "m.room.member":
        target = ev.get("state_key")
        if not isinstance(target, str) or (bot_user and target == bot_user):
            return None
        membership = content.get("membership")
        prev = _d(_d(ev.get("unsigned")).get("prev_content")).get("membership")
        name = content.get("displayname") or ""
        base.update(sender=target, sender_name=str(name or "")[:120])
        if membership == "join" and prev != "join":
            return {**base, "kind": "join", "payload": {"actor": sender}}
        if membership == "knock" and prev != "knock":  # asks to join a room whose join rule is knock
            return {**base, "kind": "join_request", "payload": {"message": str(content.get("reason") or "")[:200]}}
        if membership in ("leave", "ban") and prev in ("join", "invite", "knock"):
            how = "ban" if membership == "ban" else ("left" if sender == target else "kick")
            return {**base, "kind": "leave",
                    "payload": {"actor": sender, "reason": how, "note": str(content.get("reason") or "")[:200]}}
        return {**base, "kind": f"m.room.member.{membership}", "payload": {"prev": prev, "actor": sender}}
    if bot_user and sender == bot_user:
        return None
    if etype == "m.room.message":
        rel = _d(content.get("m.relates_to"))
        text = str(content.get("body") or "")
        payload: dict[str, Any] = {"text": text[:4000], "msgtype": content.get("msgtype"),
                                   "mentions": _mentions(content)}
        if rel.get("rel_type") == "m.replace":
            new = _d(content.get("m.new_content"))
            payload.update(edits=rel.get("event_id"), text=str(new.get("body") or text)[:4000])
            return {**base, "kind": "edit", "payload": payload}
        reply = _d(rel.get("m.in_reply_to"))
        if reply and reply.get("event_id"):
            payload["reply_to"] = reply["event_id"]
            return {**base, "kind": "reply", "payload": payload}
        if content.get("url"):
            payload["url"] = content.get("url")
        return {**base, "kind": "message", "payload": payload}
    if etype == "m.reaction":
        rel = _d(content.get("m.relates_to"))
        return {**base, "kind": "reaction", "payload": {"target": rel.get("event_id"), "key": rel.get("key")}}
    if etype == "m.room.redaction":
        return {**base, "kind": "delete",
                "payload": {"redacts": ev.get("redacts") or content.get("redacts"), "reason": content.get("reason")}}
    return {**base, "kind": etype[:60], "payload": {"type": etype}}


def room_name(state_events: list[dict[str, Any]]) -> str:
    for ev in state_events:
        if isinstance(ev, dict) and ev.get("type") == "m.room.name":
            return str((ev.get("content") or {}).get("name") or "")[:200]
    return ""


#: Matrix power level from which a sender counts as a room admin (Element's "Moderator" is 50)
ADMIN_POWER = 50


#: room versions in which the creator's power comes from ``m.room.power_levels`` like anyone's; from
#: version 12 on, the creators (``m.room.create``'s sender + ``additional_creators``) outrank everyone
_LEGACY_ROOM_VERSIONS = frozenset(str(v) for v in range(1, 12))
CREATORS = "_creators"  # key under which the cached power levels keep the room's creators


def creators_of(create_event: dict[str, Any]) -> list[str]:
    """The privileged creators of a room from its ``m.room.create`` event (room version 12+), or []."""
    content = _d(create_event.get("content"))
    if str(content.get("room_version") or "1") in _LEGACY_ROOM_VERSIONS:
        return []
    extra = content.get("additional_creators")
    return [str(u) for u in [create_event.get("sender"), *(extra if isinstance(extra, list) else [])] if u]


def levels_from_state(state: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The power levels to cache from a room's state events (None when they are not among them)."""
    levels: dict[str, Any] | None = None
    creators: list[str] = []
    for ev in state:
        if not isinstance(ev, dict) or ev.get("state_key", "") != "":
            continue
        if ev.get("type") == "m.room.power_levels":
            levels = dict(_d(ev.get("content")))
        elif ev.get("type") == "m.room.create":
            creators = creators_of(ev)
    if levels is not None and creators:
        levels[CREATORS] = creators
    return levels


def power_of(levels: dict[str, Any], user_id: str) -> int:
    """The user's power level under ``m.room.power_levels`` content (``users_default`` otherwise;
    a room-version-12 creator outranks every level)."""
    if user_id in (levels.get(CREATORS) or ()):
        return 2**53
    users = _d(levels.get("users"))
    value = users.get(user_id, levels.get("users_default", 0))
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def to_activities(events: list[tuple[str, dict[str, Any]]], *, bot_user: str = "",
                  levels: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """:func:`to_activity` over a room-ordered batch, marking each event whose room's power levels
    are known with ``payload["sender_is_admin"]`` (power >= :data:`ADMIN_POWER`; moderation exempts
    staff by it). ``levels`` (room id → power-levels content) is updated in place by the
    ``m.room.power_levels`` events of the batch, in timeline order; rooms without known levels are
    left unmarked (the platform told us nothing)."""
    levels = {} if levels is None else levels
    out: list[dict[str, Any]] = []
    for room_id, ev in events:
        if isinstance(ev, dict) and ev.get("state_key", "") == "":
            if ev.get("type") == "m.room.power_levels":
                kept = (levels.get(room_id) or {}).get(CREATORS)
                levels[room_id] = {**_d(ev.get("content")), **({CREATORS: kept} if kept else {})}
            elif ev.get("type") == "m.room.create" and (creators := creators_of(ev)):
                levels[room_id] = {**(levels.get(room_id) or {}), CREATORS: creators}
        act = to_activity(room_id, ev, bot_user=bot_user)
        if act is None:
            continue
        room_levels = levels.get(room_id)
        sender = act.get("sender")
        if room_levels and isinstance(sender, str):
            act["payload"]["sender_is_admin"] = power_of(room_levels, sender) >= ADMIN_POWER
        out.append(act)
    return out


def _level(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def required_levels(levels: dict[str, Any]) -> dict[str, int]:
    """The power level each bot action needs in a room with ``m.room.power_levels`` ``levels``:
    redact (delete), kick, ban, and changing the power levels (mute / unmute)."""
    events = _d(levels.get("events"))
    state_default = _level(levels.get("state_default"), 50)
    return {"delete": _level(levels.get("redact"), 50), "kick": _level(levels.get("kick"), 50),
            "ban": _level(levels.get("ban"), 50),
            "mute": _level(events.get("m.room.power_levels"), state_default)}


def missing_powers(levels: dict[str, Any], bot_user: str) -> dict[str, int]:
    """``{action: level needed}`` for each action the bot lacks the power for (empty: all fine).
    Muting also needs the bot above the members it mutes, which any level above 0 gives."""
    have = power_of(levels, bot_user)
    return {action: need for action, need in required_levels(levels).items() if have < need}
