"""Matrix through matrix-nio: outbound actions (send, redact, mute via power levels, kick, ban,
announce = m.notice + pin) and the bot's sync loop (see :mod:`shequn.connectors.matrix_sync`).

Sends and redactions carry a transaction id derived from the outbox row, so a retried delivery is
de-duplicated by the homeserver (exactly-once effect for the same access token)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from nio import AsyncClient, AsyncClientConfig, ErrorResponse

from ..models import ActionKind
from . import ActionItem, ConnInfo, DeliveryError, text_of

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
                                                  {"pinned": [resp.event_id, *pinned][:50]}))
                result["pinned"] = True
            return result
        if kind == ActionKind.DELETE:
            if not item.message:
                raise DeliveryError(DeliveryError.PERMANENT, "no message id to redact")
            resp = check(await client.room_redact(room, item.message, reason=reason, tx_id=txn))
            return {"redaction_event_id": resp.event_id}
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
