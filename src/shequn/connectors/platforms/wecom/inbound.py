"""WeCom (企业微信) inbound, pure (wechatpy's crypto and xmltodict; no database, no cache).

* Callback: URL verification (``echostr``), ``msg_signature`` check and AES decryption with
  wechatpy's :class:`WeChatCrypto`; the decrypted XML is stored raw and processed by a task (WeCom
  gives a callback 5 s and retries 3 times — de-duplicated on MsgId or
  FromUserName+CreateTime+event details, :func:`dedupe_key`).
* ``change_external_chat`` (create / update add_member, del_member / dismiss) → a membership diff
  between ``externalcontact/groupchat/get`` and the open memberships shequn holds → join / leave
  events (:func:`member_diff`; the database side is :mod:`shequn.connectors.services.wecom`).
  Message content is not readable through the API (only the paid session archive).
* The server API and the group robot are in :mod:`shequn.connectors.platforms.wecom.outbound`."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from typing import Any

import xmltodict
from wechatpy.enterprise.crypto import WeChatCrypto

CHAT_CHANGE = "change_external_chat"


class Malformed(ValueError):
    """The body is not a WeCom callback (answered 400 with the message)."""


class Rejected(Exception):
    """The signature or the decryption failed (answered 403; the message is the reason to log)."""


def crypto(secret_values: dict[str, str], corp_id: str) -> WeChatCrypto:
    return WeChatCrypto(secret_values["callback_token"], secret_values["encoding_aes_key"], corp_id)


def parse_xml(xml: str) -> dict[str, Any]:
    data = xmltodict.parse(xml)
    if not isinstance(data, dict) or not isinstance(data.get("xml"), dict):
        raise ValueError("not a WeCom message")
    return dict(data["xml"])


def verify_url(c: WeChatCrypto, signature: str, timestamp: str, nonce: str, echostr: str) -> str:
    """URL verification: the decrypted ``echostr`` to answer, or :class:`Rejected`."""
    try:
        return str(c.check_signature(signature, timestamp, nonce, echostr))
    except Exception as exc:  # wechatpy raises several types for a bad signature / ciphertext
        raise Rejected(f"URL verification failed ({type(exc).__name__})") from exc


def decrypt_callback(c: WeChatCrypto, body: bytes, signature: str, timestamp: str, nonce: str) -> dict[str, Any]:
    """The decrypted callback of an encrypted POST body (:class:`Malformed` or :class:`Rejected`)."""
    try:
        outer = parse_xml(body.decode("utf-8"))
    except Exception as exc:  # xmltodict raises ExpatError and friends
        raise Malformed("malformed XML") from exc
    if "Encrypt" not in outer:
        raise Malformed("malformed XML: no Encrypt")
    try:
        plain = c.decrypt_message(outer, signature, timestamp, nonce)
    except Exception as exc:
        raise Rejected(f"signature/decryption failed ({type(exc).__name__})") from exc
    try:
        return parse_xml(plain)
    except Exception as exc:
        raise Malformed("malformed XML") from exc


def event_type(msg: dict[str, Any]) -> str:
    return str(msg.get("Event") or msg.get("MsgType") or "")


def dedupe_key(msg: dict[str, Any]) -> str:
    if msg.get("MsgId"):
        return f"msg:{msg['MsgId']}"
    parts = [str(msg.get(k) or "") for k in ("FromUserName", "CreateTime", "Event", "ChangeType", "ChatId",
                                              "UpdateDetail", "ExternalUserID", "UserID")]
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]
    return f"evt:{msg.get('CreateTime')}:{digest}"


# --- callbacks → events ---------------------------------------------------------------------------

def callback_event(msg: dict[str, Any]) -> dict[str, Any]:
    """The activity event of a callback other than a customer-group change (stored as ``other``)."""
    event = event_type(msg)
    return {"platform": "wecom", "event_id": f"callback:{dedupe_key(msg)}", "kind": f"wecom.{event or 'unknown'}",
            "occurred_at": _int(msg.get("CreateTime")), "sender": None,
            "payload": {"event": event, "change_type": msg.get("ChangeType")}}


def chat_members(chat: dict[str, Any]) -> list[dict[str, Any]]:
    """The members of a ``groupchat/get`` answer."""
    return [m for m in chat.get("member_list") or [] if isinstance(m, dict) and m.get("userid")]


def staff_of(chat: dict[str, Any]) -> dict[str, Any]:
    """The group's owner (群主) and admins, as WeCom reports them (cached on the room)."""
    return {"owner": str(chat.get("owner") or ""),
            "admins": sorted(str(a.get("userid")) for a in chat.get("admin_list") or []
                             if isinstance(a, dict) and a.get("userid"))}


def dismiss_events(msg: dict[str, Any], current: Collection[str]) -> list[dict[str, Any]]:
    """A dismissed group: everyone still in it (``current``, external user ids) leaves."""
    chat_id = str(msg.get("ChatId") or "")
    created = _int(msg.get("CreateTime"))
    return [_leave(chat_id, ext, created, "dismiss") for ext in current]


def member_diff(msg: dict[str, Any], chat: dict[str, Any], current: Collection[str]) -> list[dict[str, Any]]:
    """Join / leave events from the group's member list (``groupchat/get``) against the external user
    ids shequn holds as members (``current``); joins of the owner and admins carry
    ``sender_is_admin``."""
    chat_id = str(msg.get("ChatId") or "")
    created = _int(msg.get("CreateTime"))
    staff = staff_of(chat)
    admins = {staff["owner"], *staff["admins"]} - {""}
    now_in = {str(m["userid"]): m for m in chat_members(chat)}
    events = []
    for userid, m in now_in.items():
        if userid not in current:
            events.append({
                "platform": "wecom", "event_id": f"{chat_id}:join:{userid}:{m.get('join_time')}", "kind": "join",
                "occurred_at": _int(m.get("join_time")) or created, "sender": userid,
                "sender_name": str(m.get("group_nickname") or m.get("name") or "")[:120], "group": chat_id,
                "payload": {"join_scene": m.get("join_scene"), "member_type": m.get("type"),
                            "invitor": (m.get("invitor") or {}).get("userid"), "state": m.get("state"),
                            "join_source": "qr" if m.get("join_scene") == 3 else "invite_link",
                            "sender_is_admin": userid in admins},
            })
    quit_scene = _int(msg.get("QuitScene"))
    for userid in set(current) - set(now_in):
        events.append(_leave(chat_id, userid, created, "kick" if quit_scene == 1 else "left"))
    return events


def _leave(chat_id: str, userid: str, created: int | None, reason: str) -> dict[str, Any]:
    return {"platform": "wecom", "event_id": f"{chat_id}:leave:{userid}:{created}", "kind": "leave",
            "occurred_at": created, "sender": userid, "group": chat_id, "payload": {"reason": reason}}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
