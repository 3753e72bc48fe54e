"""Telegram, the database side: a stored update (webhook or getUpdates) → rooms recorded, the room's
admins cache updated, activity events ingested. Parsing is :mod:`shequn.connectors.platforms.telegram.inbound`.

Staff marks: Telegram does not say on a message whether its sender is an administrator, but a
``chat_member`` update does (status ``creator`` / ``administrator``, delivered when the bot asks for
``chat_member`` updates as an admin). Those are cached on the room (``Room.staff_state["admins"]``)
and later messages of a cached admin are marked ``sender_is_admin``; for anyone else the mark is left
unset (the platform told us nothing)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import Invalid, NotFound

from ..models import Connection, Room
from ..platforms.telegram import inbound as tg
from .connections import conn_info, do_note_connection_error
from .ingest import do_ingest_platform_events
from .rooms import do_discover_room

log = logging.getLogger(__name__)


def do_process_telegram_update(conn: Connection, update: dict[str, Any]) -> None:
    """Ingest one stored update (called by the inbound task, inside a transaction)."""
    events, rooms = tg.parse_update(update)
    for r in rooms:
        do_discover_room(conn, r["id"], name=r["name"], joined=r["joined"])
    change = tg.admin_change(update)
    if change is not None:
        room = Room.objects.select_for_update().filter(connection=conn, external_id=change[0]).first()
        if room is not None:
            admins = {str(a) for a in (room.staff_state or {}).get("admins", [])}
            updated = tg.admins_after(admins, change)
            if updated != admins:
                room.staff_state = {**(room.staff_state or {}), "admins": sorted(updated)}
                room.save(update_fields=["staff_state"])
    mine = tg.my_rights_change(update)
    if mine is not None:  # the bot was promoted, demoted or its rights edited: the health page follows
        room = Room.objects.select_for_update().filter(connection=conn, external_id=mine[0]).first()
        if room is not None:
            do_store_bot_rights(room, mine[1])
    chats = tg.message_chats(events)
    if chats:
        admins_of = {ext: {str(a) for a in (state or {}).get("admins", [])} for ext, state in
                     Room.objects.filter(connection=conn, external_id__in=chats).values_list("external_id",
                                                                                              "staff_state")}
        tg.mark_admins(events, admins_of)
    do_ingest_platform_events(conn, events)


def do_set_telegram_webhook(connection_id: int, base_url: str) -> None:
    """Switch the bot to webhook mode at ``<base_url>/hooks/telegram/<hook_key>/`` with its secret token."""
    from ..platforms.telegram.outbound import set_webhook  # noqa: PLC0415, RUF100  (aiogram takes seconds to import)

    conn = Connection.objects.get(pk=connection_id, platform="telegram")
    asyncio.run(set_webhook(conn_info(conn), f"{base_url}/hooks/telegram/{conn.hook_key}/"))




def telegram_invite_link(tenant_id: int, chat_external_id: str, name: str, *, join_request: bool = False) -> str:
    """A new invite link for a Telegram group through the bot that sees it (createChatInviteLink,
    named ``name``). A synchronous call (a few hundred ms), made once per (invite code, group) by the
    portal, which keeps the answer. :class:`NotFound` when no active Telegram connection sees the
    group; :class:`Invalid` when Telegram refuses (the bot is not an admin with "invite users").
    ``join_request``: the link asks to join (approval / paid communities, see ``create_invite_link``)."""
    from aiogram.exceptions import TelegramAPIError  # noqa: PLC0415, RUF100  (aiogram takes seconds to import)

    from ..platforms.telegram.outbound import create_invite_link  # noqa: PLC0415, RUF100  (idem)

    room = (Room.objects.select_related("connection")
            .filter(tenant_id=tenant_id, external_id=str(chat_external_id), connection__platform="telegram",
                    connection__is_active=True).order_by("pk").first())
    if room is None:
        raise NotFound(_("没有能管理这个 Telegram 群的机器人"), details={"field": "group"})
    try:
        return asyncio.run(create_invite_link(conn_info(room.connection), str(chat_external_id), name,
                                              join_request=join_request))
    except (TelegramAPIError, OSError, TimeoutError) as exc:
        log.warning("createChatInviteLink failed for connection %s: %s", room.connection_id, type(exc).__name__)
        raise Invalid(_("Telegram 未能创建邀请链接 (机器人需是群管理员并可邀请成员)"), code="telegram_invite",
                      details={"field": "group"}) from exc


def do_store_bot_rights(room: Room, rights: dict[str, Any]) -> None:
    """Cache the bot's rights in a chat on the room (``staff_state["bot"]``), read by
    :func:`shequn.connectors.selectors.power_problems` for the connection's health page."""
    state = dict(room.staff_state or {})
    state["bot"] = {**rights, "checked_at": timezone.now().isoformat()}
    room.staff_state = state
    room.save(update_fields=["staff_state"])


def do_check_telegram_rights(connection_id: int) -> dict[str, list[str]]:
    """Ask Telegram for the bot's rights (``getChatMember`` for the bot) in each chat it has joined
    and cache them on the rooms; returns ``{chat: missing rights}``. Called when a chat is mapped,
    when the real-time loop starts polling a bot, and every 10 minutes (webhook bots included);
    ``my_chat_member`` updates keep the cache current in between."""
    from ..platforms.telegram.outbound import chat_rights  # noqa: PLC0415, RUF100  (aiogram takes seconds to import)

    conn = Connection.objects.get(pk=connection_id, platform="telegram")
    chats = list(Room.objects.filter(connection=conn, bot_joined=True).values_list("external_id", flat=True))
    if not chats:
        return {}
    found = asyncio.run(chat_rights(conn_info(conn), chats))
    out: dict[str, list[str]] = {}
    for room in Room.objects.filter(connection=conn, external_id__in=list(found)):
        do_store_bot_rights(room, found[room.external_id])
        out[room.external_id] = tg.missing_rights(found[room.external_id])
    return out


def do_check_rights_quietly(connection_id: int) -> None:
    """:func:`do_check_telegram_rights` where a failure must not fail the caller (mapping a chat,
    a loop starting): the error goes on the connection's health instead."""
    try:
        do_check_telegram_rights(connection_id)
    except Exception as exc:
        log.warning("telegram rights check of connection %s failed: %s", connection_id, type(exc).__name__)
        do_note_connection_error(connection_id, f"getChatMember: {type(exc).__name__}")
