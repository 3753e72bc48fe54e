"""Telegram through aiogram 3. The Bot API base URL comes from the connection's ``api_base``
config (default https://api.telegram.org), which the tests point at a local recorded-payload server.

deleteMessage works only for messages younger than 48 h (older ones become a human task, checked
before the call and when Telegram refuses); restrictChatMember only in supergroups; a kick is
banChatMember + unbanChatMember(only_if_banned); until_date < 30 s or > 366 days is permanent.

Also the bot's inbound calls for hosts that cannot receive webhooks: :func:`get_updates` (long
polling; getUpdates and webhooks are mutually exclusive) and :func:`set_webhook`."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import ChatPermissions

from shequn.connectors.adapters import ActionItem, ConnInfo, DeliveryError, may_send, not_sent, per_room, text_of
from shequn.connectors.models import ActionKind

from .inbound import ALLOWED_UPDATES, bot_rights

DEFAULT_API = "https://api.telegram.org"


def make_bot(conn: ConnInfo, *, timeout: float = 30) -> Bot:
    base = str(conn.config.get("api_base") or DEFAULT_API).rstrip("/")
    session = AiohttpSession(api=TelegramAPIServer.from_base(base), timeout=timeout)
    return Bot(conn.secrets["bot_token"], session=session)


async def get_updates(info: ConnInfo, offset: int | None, timeout: int, drop_webhook: bool) -> list[dict[str, Any]]:
    """One getUpdates call (removing the webhook first when ``drop_webhook``), as plain JSON dicts."""
    bot = make_bot(info, timeout=timeout + 15)
    try:
        if drop_webhook:
            await bot.delete_webhook(drop_pending_updates=False)
        updates = await bot.get_updates(offset=offset, timeout=timeout, allowed_updates=ALLOWED_UPDATES)
        return [u.model_dump(mode="json", exclude_none=True, by_alias=True) for u in updates]
    finally:
        await bot.session.close()


async def set_webhook(info: ConnInfo, url: str) -> None:
    """Switch the bot to webhook mode at ``url`` with the connection's secret token."""
    bot = make_bot(info)
    try:
        await bot.set_webhook(url, secret_token=info.secrets["webhook_secret"], allowed_updates=ALLOWED_UPDATES)
    finally:
        await bot.session.close()


async def create_invite_link(info: ConnInfo, chat_id: str, name: str, *, join_request: bool = False) -> str:
    """createChatInviteLink named ``name`` (≤ 32 characters; the portal names it after an invite code
    so the ``chat_member`` update of whoever joins through it carries that name back). With
    ``join_request`` (communities with an approval or paid threshold) the link only *asks* to join
    (``creates_join_request``): Telegram sends the bot a ``chat_join_request`` and waits for its answer."""
    bot = make_bot(info, timeout=10)
    try:
        link = await bot.create_chat_invite_link(chat_id, name=name[:32], creates_join_request=join_request or None)
        return str(link.invite_link)
    finally:
        await bot.session.close()


async def get_me(info: ConnInfo) -> dict[str, Any]:
    """``getMe`` with the connection's token: the bot's own user (id, username). A refused token
    raises aiogram's ``TelegramUnauthorizedError``; an unreachable API ``TelegramNetworkError``."""
    bot = make_bot(info, timeout=10)
    try:
        me = await bot.get_me()
        return me.model_dump(mode="json", exclude_none=True)
    finally:
        await bot.session.close()


async def chat_rights(info: ConnInfo, chat_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The bot's rights in each chat (``getChatMember`` for the bot itself), ``{chat: rights}`` as
    :func:`.inbound.bot_rights` reads them; a chat Telegram refuses to answer for (the bot was
    removed, the chat is gone) gets ``{"status": "unknown", "error": …}``."""
    bot = make_bot(info, timeout=10)
    out: dict[str, dict[str, Any]] = {}
    try:
        bot_id = int(info.config.get("bot_id") or 0) or (await bot.get_me()).id
        for chat in chat_ids:
            try:
                member = await bot.get_chat_member(int(chat) if chat.lstrip("-").isdigit() else chat, bot_id)
                out[chat] = bot_rights(member.model_dump(mode="json", exclude_none=True))
            except (TelegramBadRequest, TelegramForbiddenError, TelegramNotFound) as exc:
                out[chat] = {"status": "unknown", "error": exc.message[:200]}
        return out
    finally:
        await bot.session.close()


def message_id(item: ActionItem) -> int:
    raw = item.message.rsplit(":", 1)[-1]
    try:
        return int(raw)
    except ValueError as exc:
        raise DeliveryError(DeliveryError.PERMANENT, f"bad message id {item.message!r}") from exc


def _until(seconds: Any) -> dt.datetime | None:
    if not seconds:
        return None
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=int(seconds))


class TelegramAdapter:
    platform = "telegram"

    async def deliver_batch(self, conn: ConnInfo, items: list[ActionItem]) -> list[dict[str, Any] | DeliveryError]:
        bot = make_bot(conn)
        try:
            return await per_room(items, lambda item: self._one(bot, item))
        finally:
            await bot.session.close()

    async def _one(self, bot: Bot, item: ActionItem) -> dict[str, Any] | DeliveryError:
        if not await may_send(item):
            return not_sent()
        try:
            return await self.deliver(bot, item)
        except DeliveryError as exc:
            return exc
        except TelegramRetryAfter as exc:
            return DeliveryError(DeliveryError.RATE_LIMITED, exc.message, retry_after=exc.retry_after)
        except (TelegramServerError, TelegramNetworkError) as exc:
            return DeliveryError(DeliveryError.RETRY, f"{type(exc).__name__}: {exc.message}"[:500])
        except TelegramBadRequest as exc:
            if item.kind == ActionKind.DELETE and "can't be deleted" in exc.message:
                return DeliveryError(DeliveryError.DELEGATE,
                                     f"Telegram 拒绝删除 (可能超过 48 小时): {exc.message}"[:500])
            return DeliveryError(DeliveryError.PERMANENT, f"400 {exc.message}"[:500])
        except (TelegramForbiddenError, TelegramUnauthorizedError, TelegramNotFound) as exc:
            return DeliveryError(DeliveryError.PERMANENT, f"{type(exc).__name__}: {exc.message}"[:500])
        except TelegramAPIError as exc:
            return DeliveryError(DeliveryError.RETRY, f"{type(exc).__name__}: {exc.message}"[:500])

    async def deliver(self, bot: Bot, item: ActionItem) -> dict[str, Any]:
        chat = item.room
        if not chat and item.payload.get("dm") and item.kind == ActionKind.SEND and item.target.isdigit():
            chat = item.target  # a private chat's id is the user's id (the user must have started the bot)
        if not chat:
            raise DeliveryError(DeliveryError.PERMANENT, "no chat")
        p = item.payload
        kind = item.kind
        if kind in (ActionKind.SEND, ActionKind.WARN, ActionKind.ANNOUNCE):
            text = text_of(p)
            link = p.get("link") if isinstance(p.get("link"), dict) else None
            if link:
                text = f"{link.get('title', '')}\n{link.get('description', '')}\n{link.get('url', '')}".strip()
            reply_to = message_id(item) if item.message and kind == ActionKind.WARN else None
            if p.get("image_url"):
                msg = await bot.send_photo(chat, p["image_url"], caption=text or None)
            else:
                parse_mode = "HTML" if p.get("format") in ("html", "markdown") else None
                name = str(p.get("member_name") or "")
                if kind == ActionKind.WARN and name and item.target.isdigit() and not link:
                    # name the member with a mention (a link to the user that notifies them)
                    body = text if parse_mode else html.escape(text)
                    text = f'<a href="tg://user?id={item.target}">{html.escape(name)}</a>: {body}'
                    parse_mode = "HTML"
                msg = await bot.send_message(chat, text, parse_mode=parse_mode,
                                             reply_to_message_id=reply_to)
            result: dict[str, Any] = {"message_id": msg.message_id}
            if kind == ActionKind.ANNOUNCE and p.get("pin", True):
                await bot.pin_chat_message(chat, msg.message_id, disable_notification=True)
                result["pinned"] = True
            return result
        if kind == ActionKind.DELETE:
            await bot.delete_message(chat, message_id(item))
            return {"deleted": item.message}
        if kind == ActionKind.REVOKE_INVITE:  # a link that let people in without asking stops working
            url = str(p.get("invite_link") or "")
            if not url:
                raise DeliveryError(DeliveryError.PERMANENT, "no invite link")
            await bot.revoke_chat_invite_link(chat, url)
            return {"revoked": url}
        user = int(item.target) if item.target.lstrip("-").isdigit() else None
        if user is None:
            raise DeliveryError(DeliveryError.PERMANENT, "no target user")
        if kind == ActionKind.MUTE:
            # a timed mute: Telegram lifts it by itself at until_date (recorded as the mute's end)
            until = _until(p.get("seconds", 3600))
            await bot.restrict_chat_member(chat, user, ChatPermissions(can_send_messages=False),
                                           until_date=until)
            return {"muted": user, "until": until.isoformat() if until else None}
        if kind == ActionKind.UNMUTE:
            await bot.restrict_chat_member(chat, user, ChatPermissions(
                can_send_messages=True, can_send_audios=True, can_send_documents=True, can_send_photos=True,
                can_send_videos=True, can_send_video_notes=True, can_send_voice_notes=True, can_send_polls=True,
                can_send_other_messages=True, can_add_web_page_previews=True))
            return {"unmuted": user}
        if kind == ActionKind.KICK:
            await bot.ban_chat_member(chat, user, until_date=_until(60))
            await bot.unban_chat_member(chat, user, only_if_banned=True)
            return {"kicked": user}
        if kind == ActionKind.BAN:
            await bot.ban_chat_member(chat, user, until_date=_until(p.get("seconds")),
                                      revoke_messages=bool(p.get("revoke_messages", False)))
            return {"banned": user}
        if kind == ActionKind.UNBAN:
            await bot.unban_chat_member(chat, user, only_if_banned=True)
            return {"unbanned": user}
        if kind == ActionKind.APPROVE_JOIN:
            await bot.approve_chat_join_request(chat, user)
            return {"approved": user}
        if kind == ActionKind.DECLINE_JOIN:
            await bot.decline_chat_join_request(chat, user)
            return {"declined": user}
        raise DeliveryError(DeliveryError.DELEGATE, f"unsupported action {kind}")
