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

from django.utils.translation import gettext as _

from shequn.core.errors import Invalid, NotFound

from ..models import Connection, Room
from ..platforms.telegram import inbound as tg
from .connections import conn_info
from .ingest import do_ingest_platform_events
from .rooms import do_discover_room


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


log = logging.getLogger(__name__)


def telegram_invite_link(tenant_id: int, chat_external_id: str, name: str) -> str:
    """A new invite link for a Telegram group through the bot that sees it (createChatInviteLink,
    named ``name``). A synchronous call (a few hundred ms), made once per (invite code, group) by the
    portal, which keeps the answer. :class:`NotFound` when no active Telegram connection sees the
    group; :class:`Invalid` when Telegram refuses (the bot is not an admin with "invite users")."""
    from aiogram.exceptions import TelegramAPIError  # noqa: PLC0415, RUF100  (aiogram takes seconds to import)

    from ..platforms.telegram.outbound import create_invite_link  # noqa: PLC0415, RUF100  (idem)

    room = (Room.objects.select_related("connection")
            .filter(tenant_id=tenant_id, external_id=str(chat_external_id), connection__platform="telegram",
                    connection__is_active=True).order_by("pk").first())
    if room is None:
        raise NotFound(_("没有能管理这个 Telegram 群的机器人"), details={"field": "group"})
    try:
        return asyncio.run(create_invite_link(conn_info(room.connection), str(chat_external_id), name))
    except (TelegramAPIError, OSError, TimeoutError) as exc:
        log.warning("createChatInviteLink failed for connection %s: %s", room.connection_id, type(exc).__name__)
        raise Invalid(_("Telegram 未能创建邀请链接 (机器人需是群管理员并可邀请成员)"), code="telegram_invite",
                      details={"field": "group"}) from exc
