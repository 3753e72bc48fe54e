"""Matrix events (raw client-server JSON) → activity-stream events. Pure functions: used by the sync
loop, the appservice transaction endpoint and the benchmark alike."""

from __future__ import annotations

from typing import Any


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


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
