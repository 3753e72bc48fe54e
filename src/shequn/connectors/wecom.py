"""WeCom (企业微信), wrapped around wechatpy (pinned in pyproject; nothing else in shequn imports it).

* Callback: URL verification (``echostr``), ``msg_signature`` check and AES decryption with
  wechatpy's :class:`WeChatCrypto`; the decrypted XML is stored raw and processed by a task (WeCom
  gives a callback 5 s and retries 3 times — de-duplicated on MsgId or
  FromUserName+CreateTime+event details).
* ``change_external_chat`` (create / update add_member, del_member / dismiss) → a membership diff
  between ``externalcontact/groupchat/get`` and the open memberships shequn holds → join / leave
  events. Message content is not readable through the API (only the paid session archive).
* Join-way (加入群聊) and contact-way (联系我) QR configs; ``state`` ≤ 30 chars comes back on joins.
* The group robot webhook (text ≤ 2048 bytes, markdown ≤ 4096, news ≤ 8 articles) is the outbound
  adapter (:mod:`shequn.connectors.adapters.wecom`). Kick/recall/mute do not exist for customer
  groups: those actions become owner tasks (capabilities)."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import xmltodict
from django.core.cache import cache
from django.utils.translation import gettext as _
from wechatpy.enterprise import WeChatClient
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException, WeChatClientException
from wechatpy.session import SessionStorage

from shequn.core.errors import Invalid

from .models import Connection

DEFAULT_API = "https://qyapi.weixin.qq.com/cgi-bin/"
STATE_MAX = 30

__all__ = ["InvalidSignatureException", "WeChatClientException", "WecomApi", "crypto", "process_callback"]


def crypto(secret_values: dict[str, str], corp_id: str) -> WeChatCrypto:
    return WeChatCrypto(secret_values["callback_token"], secret_values["encoding_aes_key"], corp_id)


def parse_xml(xml: str) -> dict[str, Any]:
    data = xmltodict.parse(xml)
    if not isinstance(data, dict) or not isinstance(data.get("xml"), dict):
        raise ValueError("not a WeCom message")
    return dict(data["xml"])


def dedupe_key(msg: dict[str, Any]) -> str:
    if msg.get("MsgId"):
        return f"msg:{msg['MsgId']}"
    parts = [str(msg.get(k) or "") for k in ("FromUserName", "CreateTime", "Event", "ChangeType", "ChatId",
                                              "UpdateDetail", "ExternalUserID", "UserID")]
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]
    return f"evt:{msg.get('CreateTime')}:{digest}"


class _CacheSession(SessionStorage):  # type: ignore[misc]
    """wechatpy's token storage on Django's cache (Redis when configured), shared by processes,
    one namespace per connection."""

    def __init__(self, connection_id: int) -> None:
        self.prefix = f"wecom:{connection_id}:"

    def get(self, key: str, default: Any = None) -> Any:
        return cache.get(self.prefix + key, default)

    def set(self, key: str, value: Any, ttl: int | None = None) -> None:
        cache.set(self.prefix + key, value, timeout=max(60, (ttl or 7200) - 300))

    def delete(self, key: str) -> None:
        cache.delete(self.prefix + key)


class WecomApi:
    """The WeCom server API for one connection (access token cached by wechatpy)."""

    def __init__(self, conn: Connection, secret_values: dict[str, str]) -> None:
        base = str(conn.config.get("api_base") or DEFAULT_API)
        base = base if base.endswith("/") else base + "/"
        client = WeChatClient(conn.config["corp_id"], secret_values["corp_secret"], timeout=10,
                              session=_CacheSession(conn.pk))
        client.API_BASE_URL = base

        def fetch_access_token() -> Any:
            return client._fetch_access_token(url=f"{base}gettoken",
                                              params={"corpid": client.corp_id, "corpsecret": client.secret})

        client.fetch_access_token = fetch_access_token
        self.client = client

    def post(self, endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(endpoint, data=data)
        return result

    def group_chat(self, chat_id: str) -> dict[str, Any]:
        data = self.post("externalcontact/groupchat/get", {"chat_id": chat_id, "need_name": 1})
        return dict(data.get("group_chat") or {})

    def add_join_way(self, *, chat_ids: list[str], state: str, remark: str = "", auto_create_room: bool = False,
                     room_base_name: str = "", room_base_id: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"scene": 2, "remark": remark, "auto_create_room": int(auto_create_room),
                                "chat_id_list": chat_ids, "state": state}
        if auto_create_room:
            body.update(room_base_name=room_base_name, room_base_id=room_base_id or 1)
        config_id = self.post("externalcontact/groupchat/add_join_way", body)["config_id"]
        way = self.post("externalcontact/groupchat/get_join_way", {"config_id": config_id}).get("join_way") or {}
        return {"config_id": config_id, "qr_code": way.get("qr_code", "")}

    def add_contact_way(self, *, users: list[str], state: str, remark: str = "", single: bool = True) -> dict[str, Any]:
        body = {"type": 1 if single else 2, "scene": 2, "state": state, "remark": remark, "user": users}
        data = self.post("externalcontact/add_contact_way", body)
        return {"config_id": data["config_id"], "qr_code": data.get("qr_code", "")}


def check_qr_input(*, state: str, chat_ids: list[str] | None = None, users: list[str] | None = None) -> None:
    if len(state) > STATE_MAX:
        raise Invalid(_("state 最长 %(n)d 个字符") % {"n": STATE_MAX}, details={"field": "state"})
    if chat_ids is not None and not 1 <= len(chat_ids) <= 5:
        raise Invalid(_("加入群聊二维码需要 1 到 5 个群"), details={"field": "chat_ids"})
    if users is not None and not users:
        raise Invalid(_("联系我二维码需要至少一个成员"), details={"field": "users"})


# --- processing ------------------------------------------------------------------------------------

def process_callback(conn: Connection, msg: dict[str, Any]) -> None:
    """Turn one stored (decrypted) callback into activity events. Called by the inbound task."""
    from .services import connection_secrets, do_discover_room, do_ingest_platform_events

    event = str(msg.get("Event") or msg.get("MsgType") or "")
    created = _int(msg.get("CreateTime"))
    if event != "change_external_chat":
        do_ingest_platform_events(conn, [{
            "platform": "wecom", "event_id": f"callback:{dedupe_key(msg)}", "kind": f"wecom.{event or 'unknown'}",
            "occurred_at": created, "sender": None, "payload": {"event": event, "change_type": msg.get("ChangeType")},
        }])
        return
    chat_id = str(msg.get("ChatId") or "")
    change = str(msg.get("ChangeType") or "")
    if not chat_id:
        return
    if change == "dismiss":
        room = do_discover_room(conn, chat_id, joined=False)
        events = [_leave(chat_id, ext, created, "dismiss") for ext in _open_members(conn, room)]
        do_ingest_platform_events(conn, events)
        return
    api = WecomApi(conn, connection_secrets(conn))
    chat = api.group_chat(chat_id)
    members = [m for m in chat.get("member_list") or [] if isinstance(m, dict) and m.get("userid")]
    room = do_discover_room(conn, chat_id, name=str(chat.get("name") or ""), member_count=len(members))
    # the group's owner (群主) and admins, as WeCom reports them: cached for events of this group
    staff = {"owner": str(chat.get("owner") or ""),
             "admins": sorted(str(a.get("userid")) for a in chat.get("admin_list") or []
                              if isinstance(a, dict) and a.get("userid"))}
    if room.staff_state != staff:
        room.staff_state = staff
        room.save(update_fields=["staff_state"])
    admins = {staff["owner"], *staff["admins"]} - {""}
    if room.group_id is None:
        return  # not tracked: nothing to diff against
    current = _open_members(conn, room)
    now_in = {str(m["userid"]): m for m in members}
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
    for userid in current - set(now_in):
        events.append(_leave(chat_id, userid, created, "kick" if quit_scene == 1 else "left"))
    do_ingest_platform_events(conn, events)


def _leave(chat_id: str, userid: str, created: int | None, reason: str) -> dict[str, Any]:
    return {"platform": "wecom", "event_id": f"{chat_id}:leave:{userid}:{created}", "kind": "leave",
            "occurred_at": created, "sender": userid, "group": chat_id, "payload": {"reason": reason}}


def _open_members(conn: Connection, room: Any) -> set[str]:
    from shequn.communities.models import Membership
    from shequn.members.models import Identity

    if room.group_id is None:
        return set()
    member_ids = Membership.objects.filter(tenant_id=conn.tenant_id, group_id=room.group_id,
                                           left_at__isnull=True).values_list("member_id", flat=True)
    return set(Identity.objects.filter(tenant_id=conn.tenant_id, platform="wecom", member_id__in=member_ids)
               .values_list("external_id", flat=True))


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def timestamp_now() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp())
