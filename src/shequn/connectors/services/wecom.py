"""WeCom, the database side of a stored (decrypted) callback. ``change_external_chat`` asks the server
API for the group (``groupchat/get``), records the room and its owner/admins, and ingests the
membership diff against the open memberships shequn holds; other callbacks are stored as ``other``.
Parsing and the diff itself are :mod:`shequn.connectors.platforms.wecom.inbound`."""

from __future__ import annotations

from typing import Any

from .. import selectors
from ..models import Connection
from ..platforms.wecom import inbound as wc
from ..platforms.wecom.outbound import WecomApi
from .connections import conn_info
from .ingest import do_ingest_platform_events
from .rooms import do_discover_room


def do_process_wecom_callback(conn: Connection, msg: dict[str, Any]) -> None:
    """Turn one stored (decrypted) callback into activity events. Called by the inbound task."""
    if wc.event_type(msg) != wc.CHAT_CHANGE:
        do_ingest_platform_events(conn, [wc.callback_event(msg)])
        return
    chat_id = str(msg.get("ChatId") or "")
    if not chat_id:
        return
    if str(msg.get("ChangeType") or "") == "dismiss":
        room = do_discover_room(conn, chat_id, joined=False)
        current = selectors.open_external_ids(conn.tenant_id, room.group_id, "wecom")
        do_ingest_platform_events(conn, wc.dismiss_events(msg, current))
        return
    chat = WecomApi(conn_info(conn)).group_chat(chat_id)
    room = do_discover_room(conn, chat_id, name=str(chat.get("name") or ""),
                            member_count=len(wc.chat_members(chat)))
    staff = wc.staff_of(chat)  # the group's owner (群主) and admins: cached for events of this group
    if room.staff_state != staff:
        room.staff_state = staff
        room.save(update_fields=["staff_state"])
    if room.group_id is None:
        return  # not tracked: nothing to diff against
    current = selectors.open_external_ids(conn.tenant_id, room.group_id, "wecom")
    do_ingest_platform_events(conn, wc.member_diff(msg, chat, current))
