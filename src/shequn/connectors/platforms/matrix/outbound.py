"""Matrix through matrix-nio: outbound actions (send, redact, mute via power levels, kick, ban,
announce = m.notice + pin) and the bot's sync client.

Sends and redactions carry a transaction id derived from the outbox row, so a retried delivery is
de-duplicated by the homeserver (exactly-once effect for the same access token).

The sync client (:func:`fetch_sync`): one round fetches events since the stored ``next_batch``,
fills timeline gaps with ``/messages`` (a sync returns only the last N events of a busy room and
flags the timeline ``limited``), joins rooms the bot is invited to, and returns everything as a
:class:`~shequn.connectors.platforms.matrix.inbound.SyncBatch`.
:func:`shequn.connectors.services.matrix.do_matrix_sync` ingests it in the same transaction that
stores the new ``next_batch``: a restart resumes exactly where the last committed round ended, and
anything seen twice is dropped by the ingest's event-id idempotency."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
from collections.abc import AsyncIterator, Collection
from typing import Any

from nio import (
    Api,
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    MessageDirection,
    RoomCreateResponse,
    RoomGetStateResponse,
    RoomMessagesResponse,
    RoomPreset,
)

from shequn.connectors.adapters import ActionItem, ConnInfo, DeliveryError, may_send, not_sent, text_of
from shequn.connectors.models import ActionKind

from .inbound import SyncBatch, batch_from_dict, levels_from_state, limited_timelines

TIMELINE_LIMIT = 100
MAX_GAP_PAGES = 20
SYNC_FILTER = {"room": {"timeline": {"limit": TIMELINE_LIMIT}, "state": {"lazy_load_members": True}},
               "presence": {"not_types": ["*"]}, "account_data": {"not_types": ["*"]}}

PERMANENT_CODES = {"M_FORBIDDEN", "M_NOT_FOUND", "M_BAD_JSON", "M_NOT_JSON", "M_UNKNOWN_TOKEN",
                   "M_MISSING_TOKEN", "M_INVALID_PARAM", "M_UNKNOWN", "M_TOO_LARGE"}


@contextlib.asynccontextmanager
async def matrix_client(conn: ConnInfo, *, timeout: float = 30) -> AsyncIterator[AsyncClient]:
    cfg = AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0, request_timeout=timeout)
    client = AsyncClient(conn.config["homeserver"], conn.config.get("user_id", ""),
                         device_id=conn.config.get("device_id") or None, config=cfg)
    client.access_token = conn.secrets.get("access_token", "")
    if conn.config.get("user_id"):
        client.user_id = conn.config["user_id"]
    try:
        yield client
    finally:
        await client.close()


def check(resp: Any) -> Any:
    """Raise :class:`DeliveryError` for an nio error response; return the response otherwise."""
    if isinstance(resp, ErrorResponse):
        code = resp.status_code or ""
        if code == "M_LIMIT_EXCEEDED":
            raise DeliveryError(DeliveryError.RATE_LIMITED, f"{code} {resp.message}",
                                retry_after=(resp.retry_after_ms or 5000) / 1000, scope="connection")
        if code in PERMANENT_CODES:
            raise DeliveryError(DeliveryError.PERMANENT, f"{code} {resp.message}"[:500])
        raise DeliveryError(DeliveryError.RETRY, f"{code or 'error'} {resp.message}"[:500])
    return resp


def message_content(item: ActionItem) -> dict[str, Any]:
    p = item.payload
    text = text_of(p)
    msgtype = "m.notice" if item.kind in (ActionKind.ANNOUNCE, ActionKind.WARN) else "m.text"
    if p.get("image_url"):
        return {"msgtype": "m.image", "body": text or "image", "url": p["image_url"]}
    link = p.get("link") if isinstance(p.get("link"), dict) else None
    if link:
        text = f"{link.get('title', '')}\n{link.get('description', '')}\n{link.get('url', '')}".strip()
    content: dict[str, Any] = {"msgtype": msgtype, "body": text}
    if p.get("format") == "markdown" or p.get("html"):
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = p.get("html") or text
    name = str(p.get("member_name") or "")
    if item.kind == ActionKind.WARN and item.target and name and not link:
        # name the member with a mention pill (clients highlight it and notify the member)
        html_text = content.get("formatted_body") or html.escape(text).replace("\n", "<br>")
        content["body"] = f"{name}: {text}"
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = (f'<a href="https://matrix.to/#/{html.escape(item.target)}">'
                                     f"{html.escape(name)}</a>: {html_text}")
    mentions = [item.target] if item.target else []
    if mentions:
        content["m.mentions"] = {"user_ids": mentions}
    if item.message and item.kind == ActionKind.WARN:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": item.message}}
    return content


class MatrixAdapter:
    platform = "matrix"

    async def deliver_batch(self, conn: ConnInfo, items: list[ActionItem]) -> list[dict[str, Any] | DeliveryError]:
        out: list[dict[str, Any] | DeliveryError] = []
        try:
            async with matrix_client(conn) as client:
                for item in items:
                    if not await may_send(item):
                        out.append(not_sent())
                        continue
                    try:
                        out.append(await self.deliver(client, item))
                    except DeliveryError as exc:
                        out.append(exc)
                    except (OSError, TimeoutError) as exc:
                        out.append(DeliveryError(DeliveryError.RETRY, f"{type(exc).__name__}: {exc}"[:500]))
        except (OSError, TimeoutError) as exc:  # pragma: no cover - session setup
            out += [DeliveryError(DeliveryError.RETRY, str(exc)[:500])] * (len(items) - len(out))
        return out

    async def deliver(self, client: AsyncClient, item: ActionItem) -> dict[str, Any]:
        room = item.room
        if not room and item.payload.get("dm") and item.kind == ActionKind.SEND and item.target.startswith("@"):
            room = await direct_room(client, item.target)
        if not room:
            raise DeliveryError(DeliveryError.PERMANENT, "no room")
        kind = item.kind
        txn = f"shequn-{item.id}"
        reason = str(item.payload.get("reason") or item.reason or "") or None
        if kind in (ActionKind.SEND, ActionKind.WARN, ActionKind.ANNOUNCE):
            resp = check(await client.room_send(room, "m.room.message", message_content(item), tx_id=txn))
            result: dict[str, Any] = {"event_id": resp.event_id}
            if kind == ActionKind.ANNOUNCE and item.payload.get("pin", True):
                pins = await client.room_get_state_event(room, "m.room.pinned_events")
                pinned = list(getattr(pins, "content", {}).get("pinned", [])) if not isinstance(
                    pins, ErrorResponse) else []
                check(await client.room_put_state(room, "m.room.pinned_events",
                                                  # (a retry after a crash pins the same event once)
                                                  {"pinned": [resp.event_id,
                                                              *(p for p in pinned if p != resp.event_id)][:50]}))
                result["pinned"] = True
            return result
        if kind == ActionKind.DELETE:
            if not item.message:
                raise DeliveryError(DeliveryError.PERMANENT, "no message id to redact")
            resp = check(await client.room_redact(room, item.message, reason=reason, tx_id=txn))
            return {"redaction_event_id": resp.event_id}
        if kind == ActionKind.JOIN_RULE:
            # gate the room of an approval/paid community: only a *public* room changes (to knock, so a
            # newcomer asks and the entry threshold answers); invite-only or knock rooms stay as they are
            resp = await client.room_get_state_event(room, "m.room.join_rules")
            current = None if isinstance(resp, ErrorResponse) else dict(resp.content).get("join_rule")
            want = str(item.payload.get("join_rule") or "knock")
            if current != "public" or want == current:
                return {"join_rule": current, "changed": False}
            check(await client.room_put_state(room, "m.room.join_rules", {"join_rule": want}))
            return {"join_rule": want, "changed": True, "was": current}
        if not item.target:
            raise DeliveryError(DeliveryError.PERMANENT, "no target user")
        if kind == ActionKind.KICK:
            check(await client.room_kick(room, item.target, reason=reason))
            return {"kicked": item.target}
        if kind == ActionKind.BAN:
            check(await client.room_ban(room, item.target, reason=reason))
            return {"banned": item.target}
        if kind == ActionKind.UNBAN:
            check(await client.room_unban(room, item.target))
            return {"unbanned": item.target}
        if kind == ActionKind.APPROVE_JOIN:  # a knock is accepted by inviting the knocker
            check(await client.room_invite(room, item.target))
            return {"approved": item.target}
        if kind == ActionKind.DECLINE_JOIN:  # … and rejected by kicking them (their membership leaves "knock")
            check(await client.room_kick(room, item.target, reason=reason))
            return {"declined": item.target}
        if kind in (ActionKind.MUTE, ActionKind.UNMUTE):
            resp = check(await client.room_get_state_event(room, "m.room.power_levels"))
            levels = dict(resp.content)
            users = dict(levels.get("users") or {})
            if kind == ActionKind.MUTE:
                users[item.target] = min(-1, int(levels.get("events_default", 0)) - 1)
            else:
                users.pop(item.target, None)
            levels["users"] = users
            check(await client.room_put_state(room, "m.room.power_levels", levels))
            return {"muted" if kind == ActionKind.MUTE else "unmuted": item.target}
        raise DeliveryError(DeliveryError.DELEGATE, f"unsupported action {kind}")


async def direct_room(client: AsyncClient, user_id: str) -> str:
    """The bot's direct-message room with ``user_id``: the first one its ``m.direct`` account data
    lists for the user, else a new one (``is_direct``, trusted private chat, the user invited), which
    is recorded in ``m.direct`` so the next message reuses it — the same bookkeeping Element does, so
    the member's client shows it as a direct chat. The member sees messages once they accept."""
    method, path = Api.direct_room_list(client.access_token, client.user_id)
    resp = await client.send(method, path)
    data = await resp.json(content_type=None) if resp.status == 200 else {}
    direct: dict[str, list[str]] = dict(data) if isinstance(data, dict) and "errcode" not in data else {}
    known = [r for r in direct.get(user_id) or [] if isinstance(r, str)]
    if known:
        return known[0]
    created = await client.room_create(is_direct=True, invite=[user_id], preset=RoomPreset.trusted_private_chat)
    if not isinstance(created, RoomCreateResponse):
        check(created)
        raise DeliveryError(DeliveryError.RETRY, "createRoom failed")
    direct[user_id] = [created.room_id, *known]
    put = Api._build_path(["user", client.user_id, "account_data", "m.direct"],
                          {"access_token": client.access_token})
    await client.send("PUT", put, json.dumps(direct), headers={"Content-Type": "application/json"})
    return str(created.room_id)


# --- connecting ---------------------------------------------------------------------------------

async def _whoami(conn: ConnInfo) -> dict[str, Any]:
    async with matrix_client(conn, timeout=10) as client:
        method, path = Api.whoami(client.access_token)
        resp = await client.send(method, path, timeout=10)
        data = await resp.json(content_type=None)
        if resp.status != 200 or not isinstance(data, dict) or "user_id" not in data:
            check(ErrorResponse.from_dict(data if isinstance(data, dict) else {}))
            raise DeliveryError(DeliveryError.PERMANENT, f"whoami: HTTP {resp.status}")
        return data


def whoami(conn: ConnInfo) -> dict[str, Any]:
    """``/account/whoami`` with the connection's token: ``{"user_id", "device_id"?}``. Raises
    :class:`DeliveryError` (a refused token) or ``OSError`` / ``TimeoutError`` (unreachable)."""
    return asyncio.run(_whoami(conn))


# --- the sync client --------------------------------------------------------------------------------

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
            for room_id, prev_batch in limited_timelines(data):
                gap, pages = await _fill_gap(client, room_id, prev_batch, since)
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
