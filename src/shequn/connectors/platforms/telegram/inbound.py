"""Telegram inbound, pure: Bot API updates (webhook or getUpdates) → activity events, rooms seen and
staff facts; the webhook's secret-token check. No database: the database side (rooms, the admins
cache, the hand-off to the activity stream) is :mod:`shequn.connectors.services.telegram`.

Event ids: a message is ``<chat_id>:<message_id>`` (what an engine passes back as
``message_external_id`` to delete it); an edit ``<chat>:<msg>:edit:<edit_date>``; a join/leave
``<chat>:member:<user>:<date>:<status>``; anything else ``update:<update_id>``. Unknown update types
are stored raw (kind ``other``) and never crash processing."""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from django.utils.dateparse import parse_datetime

GROUP_TYPES = ("group", "supergroup")
MEMBER_IN = ("member", "administrator", "creator", "restricted")
ALLOWED_UPDATES = ["message", "edited_message", "chat_member", "my_chat_member", "message_reaction",
                   "chat_join_request"]


#: Telegram's "GroupAnonymousBot": the sender shown for an administrator posting anonymously
ANONYMOUS_ADMIN = 1087968824
ADMIN_STATUSES = ("creator", "administrator")
MESSAGE_KINDS = ("message", "reply", "edit")


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _ts(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.timestamp()
    return None


def _name(user: dict[str, Any]) -> str:
    name = " ".join(str(user.get(k) or "") for k in ("first_name", "last_name")).strip()
    return (name or str(user.get("username") or ""))[:120]


def _mentions(msg: dict[str, Any]) -> list[str]:
    text = str(msg.get("text") or msg.get("caption") or "")
    out = []
    for ent in msg.get("entities") or msg.get("caption_entities") or []:
        if not isinstance(ent, dict):
            continue
        if ent.get("type") == "mention":
            off, length = int(ent.get("offset", 0)), int(ent.get("length", 0))
            out.append(text[off:off + length])  # "@username" (UTF-16 offsets: exact for BMP text)
        elif ent.get("type") == "text_mention" and isinstance(ent.get("user"), dict):
            out.append(str(ent["user"].get("id")))
    return out[:50]


def parse_update(update: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(activity events, rooms seen) for one update."""
    events: list[dict[str, Any]] = []
    rooms: list[dict[str, Any]] = []
    uid = update.get("update_id")

    def room_of(chat: dict[str, Any], *, joined: bool = True) -> str:
        cid = str(chat.get("id"))
        rooms.append({"id": cid, "name": str(chat.get("title") or "")[:200], "joined": joined})
        return cid

    def other(kind: str, chat: str | None = None, sender: Any = None, at: Any = None) -> None:
        events.append({"platform": "telegram", "event_id": f"update:{uid}", "kind": f"telegram.{kind}",
                       "occurred_at": _ts(at) or dt.datetime.now(dt.UTC).timestamp(),
                       "sender": str(sender) if sender is not None else None, "group": chat,
                       "payload": {"update_type": kind}})

    msg = _d(update.get("message"))
    edited = _d(update.get("edited_message"))
    if msg or edited:
        m = msg or edited
        chat = _d(m.get("chat"))
        user = _d(m.get("from"))
        if chat.get("type") not in GROUP_TYPES:
            other("private_message" if msg else "private_edit", None, None, m.get("date"))
            return events, rooms
        cid = room_of(chat)
        base: dict[str, Any] = {"platform": "telegram", "sender": str(user.get("id")), "sender_name": _name(user),
                                "group": cid}
        mid = m.get("message_id")
        if msg.get("new_chat_members"):
            for u in msg["new_chat_members"]:
                if isinstance(u, dict) and not u.get("is_bot"):
                    events.append({**base, "event_id": f"{cid}:member:{u.get('id')}:{msg.get('date')}:member",
                                   "kind": "join", "occurred_at": _ts(msg.get("date")), "sender": str(u.get("id")),
                                   "sender_name": _name(u), "payload": {"inviter": user.get("id"), "via": "service"}})
            return events, rooms
        if isinstance(msg.get("left_chat_member"), dict):
            u = msg["left_chat_member"]
            if not u.get("is_bot"):
                events.append({**base, "event_id": f"{cid}:member:{u.get('id')}:{msg.get('date')}:left",
                               "kind": "leave", "occurred_at": _ts(msg.get("date")), "sender": str(u.get("id")),
                               "sender_name": _name(u),
                               "payload": {"reason": "left" if u.get("id") == user.get("id") else "kick"}})
            return events, rooms
        payload: dict[str, Any] = {"text": str(m.get("text") or m.get("caption") or "")[:4000], "message_id": mid,
                                   "mentions": _mentions(m)}
        if _d(m.get("sender_chat")).get("id") == chat.get("id") or user.get("id") == ANONYMOUS_ADMIN:
            payload["sender_is_admin"] = True  # an anonymous administrator posting as the group
        for media in ("photo", "video", "document", "sticker", "voice", "animation"):
            if m.get(media):
                payload["media"] = media
        if edited:
            payload["edits"] = f"{cid}:{mid}"
            events.append({**base, "event_id": f"{cid}:{mid}:edit:{edited.get('edit_date')}", "kind": "edit",
                           "occurred_at": _ts(edited.get("edit_date") or edited.get("date")), "payload": payload})
            return events, rooms
        reply = _d(msg.get("reply_to_message"))
        kind = "message"
        if reply and not reply.get("forum_topic_created"):
            kind = "reply"
            payload["reply_to"] = f"{cid}:{reply.get('message_id')}"
        events.append({**base, "event_id": f"{cid}:{mid}", "kind": kind, "occurred_at": _ts(msg.get("date")),
                       "payload": payload})
        return events, rooms

    cm = _d(update.get("chat_member"))
    if cm:
        chat = _d(cm.get("chat"))
        cid = room_of(chat)
        old, new = _d(cm.get("old_chat_member")), _d(cm.get("new_chat_member"))
        user = _d(new.get("user"))
        actor = _d(cm.get("from"))
        was_in = old.get("status") in MEMBER_IN or old.get("is_member") is True
        is_in = new.get("status") in MEMBER_IN and new.get("is_member", True) is not False
        base = {"platform": "telegram", "sender": str(user.get("id")), "sender_name": _name(user), "group": cid,
                "occurred_at": _ts(cm.get("date"))}
        eid = f"{cid}:member:{user.get('id')}:{cm.get('date')}:{new.get('status')}"
        if is_in and not was_in:
            link = _d(cm.get("invite_link"))
            joined: dict[str, Any] = {"inviter": actor.get("id"), "invite_link": link.get("name") or None}
            if link.get("name"):  # links the portal creates are named after an invite code: attributed
                joined["invite_code"] = str(link["name"])[:32]
            events.append({**base, "event_id": eid, "kind": "join", "payload": joined})
        elif was_in and not is_in:
            how = {"kicked": "ban", "left": "left" if actor.get("id") == user.get("id") else "kick"}.get(
                str(new.get("status")), "left")
            events.append({**base, "event_id": eid, "kind": "leave", "payload": {"reason": how,
                                                                                 "actor": actor.get("id")}})
        else:
            events.append({**base, "event_id": eid, "kind": "telegram.member_status",
                           "payload": {"old": old.get("status"), "new": new.get("status")}})
        if is_in:
            events[-1]["payload"]["sender_is_admin"] = new.get("status") in ADMIN_STATUSES
        return events, rooms

    mcm = _d(update.get("my_chat_member"))
    if mcm:
        chat = _d(mcm.get("chat"))
        if chat.get("type") in GROUP_TYPES:
            status = _d(mcm.get("new_chat_member")).get("status")
            room_of(chat, joined=status in MEMBER_IN)
        other("my_chat_member", str(chat.get("id")) if chat else None, _d(mcm.get("from")).get("id"), mcm.get("date"))
        return events, rooms

    jr = _d(update.get("chat_join_request"))
    if jr:  # someone asks to join through a link that creates join requests: the entry threshold decides
        chat = _d(jr.get("chat"))
        cid = room_of(chat)
        user = _d(jr.get("from"))
        link = _d(jr.get("invite_link"))
        asked: dict[str, Any] = {"message": str(jr.get("bio") or "")[:200]}
        if link.get("name"):
            asked["invite_code"] = str(link["name"])[:32]
        events.append({"platform": "telegram", "event_id": f"{cid}:joinreq:{user.get('id')}:{jr.get('date')}",
                       "kind": "join_request", "occurred_at": _ts(jr.get("date")), "sender": str(user.get("id")),
                       "sender_name": _name(user), "group": cid, "payload": asked})
        return events, rooms

    react = _d(update.get("message_reaction"))
    if react:
        chat = _d(react.get("chat"))
        cid = room_of(chat)
        user = _d(react.get("user"))
        keys = [r.get("emoji") or r.get("custom_emoji_id") for r in react.get("new_reaction") or []
                if isinstance(r, dict)]
        events.append({"platform": "telegram", "event_id": f"{cid}:{react.get('message_id')}:react:{user.get('id')}:"
                       f"{react.get('date')}", "kind": "reaction", "occurred_at": _ts(react.get("date")),
                       "sender": str(user.get("id")) if user else None, "sender_name": _name(user), "group": cid,
                       "payload": {"target": f"{cid}:{react.get('message_id')}", "keys": keys}})
        return events, rooms

    kinds = [k for k in update if k != "update_id"]
    other(kinds[0] if kinds else "unknown")
    return events, rooms


def admin_change(update: dict[str, Any]) -> tuple[str, str, bool] | None:
    """(chat id, user id, is admin now) when the update is a ``chat_member`` change, else None."""
    cm = _d(update.get("chat_member"))
    if not cm:
        return None
    new = _d(cm.get("new_chat_member"))
    user_id = _d(new.get("user")).get("id")
    if user_id is None:
        return None
    return str(_d(cm.get("chat")).get("id")), str(user_id), new.get("status") in ADMIN_STATUSES


def gettext_noop(message: str) -> str:
    """Marks a msgid for extraction (Django's own would import the app registry: this module is pure)."""
    return message


#: the administrator rights the bot needs, and what each is for (getChatMember / my_chat_member)
BOT_RIGHTS: dict[str, str] = {
    "can_delete_messages": gettext_noop("删除消息"),   # delete an ad
    "can_restrict_members": gettext_noop("封禁成员"),  # mute (restrictChatMember), kick and ban (banChatMember)
    "can_invite_users": gettext_noop("邀请成员"),      # invite links for joins
}


def bot_rights(member: Mapping[str, Any]) -> dict[str, Any]:
    """The bot's standing in a chat from a ChatMember object (getChatMember, or the
    ``new_chat_member`` of a ``my_chat_member`` update): its status and each right of
    :data:`BOT_RIGHTS`. The creator has every right; a plain member or a restricted bot none."""
    status = str(member.get("status") or "")
    out: dict[str, Any] = {"status": status}
    for right in BOT_RIGHTS:
        out[right] = status == "creator" or (status == "administrator" and member.get(right) is True)
    return out


def missing_rights(rights: Mapping[str, Any]) -> list[str]:
    """The rights of :data:`BOT_RIGHTS` the bot lacks (all of them when it is not an administrator)."""
    return [r for r in BOT_RIGHTS if rights.get(r) is not True]


def my_rights_change(update: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(chat id, the bot's rights now) when the update is a ``my_chat_member`` change in a group —
    Telegram sends one whenever the bot is promoted, demoted or its rights are edited."""
    mcm = _d(update.get("my_chat_member"))
    chat = _d(mcm.get("chat"))
    if not mcm or chat.get("type") not in GROUP_TYPES:
        return None
    return str(chat.get("id")), bot_rights(_d(mcm.get("new_chat_member")))


def secret_matches(expected: str, given: str) -> bool:
    """The webhook's ``X-Telegram-Bot-Api-Secret-Token`` against the connection's secret (constant time)."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def is_update(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("update_id"), int)


def update_key(update: dict[str, Any]) -> tuple[str, str]:
    """(dedupe key, event type) under which a raw update is stored once."""
    kinds = [k for k in update if k != "update_id"]
    return f"update:{update['update_id']}", kinds[0] if kinds else ""


def admins_after(admins: Iterable[str], change: tuple[str, str, bool]) -> set[str]:
    """A room's cached admin ids after an :func:`admin_change` of that room."""
    _chat_id, user_id, is_admin = change
    current = {str(a) for a in admins}
    return current | {user_id} if is_admin else current - {user_id}


def message_chats(events: Iterable[dict[str, Any]]) -> set[str]:
    """The chats of the message-like events (those that may be marked ``sender_is_admin``)."""
    return {str(e["group"]) for e in events if e.get("group") and e.get("kind") in MESSAGE_KINDS}


def mark_admins(events: Iterable[dict[str, Any]], admins_of: Mapping[str, Collection[str]]) -> None:
    """Mark messages of a chat's cached admins ``sender_is_admin`` (in place). Telegram does not say
    on a message whether its sender is an administrator; anyone else is left unmarked."""
    for e in events:
        if e.get("kind") in MESSAGE_KINDS and e.get("sender") in admins_of.get(str(e.get("group")), ()):
            e["payload"]["sender_is_admin"] = True
