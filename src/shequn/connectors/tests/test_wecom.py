"""WeCom: URL verification, msg_signature + AES decryption (payloads encrypted exactly as WeCom does,
with wechatpy's crypto), the change_external_chat membership diff against a local fake
groupchat/get, idempotency of retried callbacks, the group robot, QR configs, owner tasks."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import xmltodict
from django.test import Client
from django.utils import timezone
from wechatpy.crypto import _get_signature
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto
from wechatpy.utils import to_text

from shequn.activity.models import ActivityEvent
from shequn.communities.models import ChatGroup, Community, Membership
from shequn.connectors.adapters import ActionItem
from shequn.connectors.models import HumanTask, InboundEvent, OutboxAction, Room
from shequn.connectors.platforms.wecom.outbound import robot_body
from shequn.connectors.services import (
    delivery,
    do_create_connection,
    do_create_qr_config,
    do_ingest_platform_events,
    do_map_room,
    do_request_action,
)
from shequn.core.errors import Invalid
from shequn.moderation.models import Violation
from shequn.moderation.services import do_save_policy

from .fake_server import FakeServer

CORP = "ww1234567890abcdef"
TOKEN = "cbtoken123"
AES_KEY = base64.b64encode(os.urandom(32)).decode().rstrip("=")
CHAT = "wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA"


def member(userid: str, join_time: int, **kw: Any) -> dict[str, Any]:
    return {"userid": userid, "type": 2, "join_time": join_time, "join_scene": 3, "name": f"客户{userid[-2:]}", **kw}


class WecomState:
    def __init__(self) -> None:
        self.members = [member("wmOwner01", 1763800000, type=1), member("wmAAA01", 1763800100)]
        self.admins: list[dict[str, str]] = []

    def answer(self, name: str, fields: dict[str, str]) -> tuple[int, Any]:
        if name == "gettoken":
            return 200, {"errcode": 0, "errmsg": "ok", "access_token": "ACCESS", "expires_in": 7200}
        if name == "get":  # externalcontact/groupchat/get
            return 200, {"errcode": 0, "errmsg": "ok", "group_chat": {
                "chat_id": CHAT, "name": "宝妈交流群", "owner": "wmOwner01", "create_time": 1763800000,
                "member_list": self.members, "admin_list": self.admins}}
        if name == "add_join_way":
            return 200, {"errcode": 0, "errmsg": "ok", "config_id": "9ad7fa5cdaa6511298498f979c472aaa"}
        if name == "get_join_way":
            return 200, {"errcode": 0, "errmsg": "ok", "join_way": {
                "config_id": "9ad7fa5cdaa6511298498f979c472aaa", "scene": 2,
                "qr_code": "https://wework.qpic.cn/wwpic/xxx/0", "state": fields.get("state", "")}}
        if name == "add_contact_way":
            return 200, {"errcode": 0, "errmsg": "ok", "config_id": "42b34949e138eb6e027c123cba77faaa",
                         "qr_code": "https://p.qpic.cn/wwhead/yyy/0"}
        if name == "send":
            return 200, {"errcode": 0, "errmsg": "ok"}
        if name == "get_follow_user_list":
            return 200, {"errcode": 0, "errmsg": "ok", "follow_user": ["zhangsan", "lisi"]}
        return 404, {"errcode": 404, "errmsg": "unknown"}


@pytest.fixture
def wecom_api() -> Iterator[tuple[FakeServer, WecomState]]:
    state = WecomState()
    with FakeServer(state.answer) as server:
        yield server, state


@pytest.fixture
def conn(tenant: Any, system: Any, wecom_api: Any) -> Any:
    server, _ = wecom_api
    community = Community.objects.create(tenant=tenant, name="宝妈社群")
    return do_create_connection(system, platform="wecom", name="企微", default_community_id=community.pk,
                                config={"corp_id": CORP, "api_base": server.url + "/cgi-bin/"},
                                # a fresh secret: the token cache key includes it, and Redis outlives the test database
                                secret_values={"corp_secret": uuid.uuid4().hex, "callback_token": TOKEN,
                                               "encoding_aes_key": AES_KEY})


def callback(client: Client, conn: Any, inner_xml: str, *, bad_signature: bool = False, raw: bytes | None = None,
             nonce: str = "n0nce") -> Any:
    crypto = WeChatCrypto(TOKEN, AES_KEY, CORP)
    ts = "1763870400"
    enc = crypto.encrypt_message(inner_xml, nonce, ts)
    outer = xmltodict.parse(to_text(enc))["xml"]
    sig = outer["MsgSignature"] if not bad_signature else "0" * 40
    body = raw if raw is not None else (
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{outer['Encrypt']}]]></Encrypt>"
        "<AgentID><![CDATA[]]></AgentID></xml>").encode()
    q = urllib.parse.urlencode({"msg_signature": sig, "timestamp": ts, "nonce": nonce})
    return client.post(f"/hooks/wecom/{conn.hook_key}/?{q}", data=body, content_type="text/xml")


def change_xml(change: str, detail: str = "", created: int = 1763870400, quit_scene: int | None = None) -> str:
    extra = f"<UpdateDetail><![CDATA[{detail}]]></UpdateDetail>" if detail else ""
    if quit_scene is not None:
        extra += f"<QuitScene>{quit_scene}</QuitScene>"
    return (f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[{CHAT}]]></ChatId>"
            f"<ChangeType><![CDATA[{change}]]></ChangeType>{extra}<JoinScene>1</JoinScene>"
            f"<MemChangeCnt>1</MemChangeCnt></xml>")


def test_url_verification(client: Client, conn: Any) -> None:
    crypto = WeChatCrypto(TOKEN, AES_KEY, CORP)
    echostr = to_text(PrpCrypto(crypto.key).encrypt("1616140317555161061", CORP))
    sig = _get_signature(TOKEN, "1763870400", "abc", echostr)
    q = urllib.parse.urlencode({"msg_signature": sig, "timestamp": "1763870400", "nonce": "abc", "echostr": echostr})
    resp = client.get(f"/hooks/wecom/{conn.hook_key}/?{q}")
    assert resp.status_code == 200 and resp.content == b"1616140317555161061"
    q2 = urllib.parse.urlencode({"msg_signature": "bad", "timestamp": "1763870400", "nonce": "abc",
                                 "echostr": echostr})
    assert client.get(f"/hooks/wecom/{conn.hook_key}/?{q2}").status_code == 403


def test_create_then_add_and_del_member_diff(client: Client, conn: Any, wecom_api: Any) -> None:
    server, state = wecom_api
    resp = callback(client, conn, change_xml("create"))
    assert resp.status_code == 200 and resp.content == b"success"
    room = Room.objects.get(connection=conn, external_id=CHAT)
    group = ChatGroup.objects.get(pk=room.group_id)
    assert room.name == "宝妈交流群" and group.platform == "wecom"
    assert Membership.objects.filter(group=group, left_at__isnull=True).count() == 2
    # someone joins through a QR code carrying a state
    state.members.append(member("wmBBB02", 1763870500, state="ref_alice"))
    callback(client, conn, change_xml("update", "add_member", created=1763870500))
    join = ActivityEvent.objects.get(platform_event_id=f"{CHAT}:join:wmBBB02:1763870500")
    assert join.kind == "join" and join.payload["state"] == "ref_alice" and join.group_id == group.pk
    # someone leaves
    state.members = [m for m in state.members if m["userid"] != "wmAAA01"]
    callback(client, conn, change_xml("update", "del_member", created=1763870600, quit_scene=0))
    leave = ActivityEvent.objects.get(platform_event_id=f"{CHAT}:leave:wmAAA01:1763870600")
    assert leave.kind == "leave"
    assert Membership.objects.filter(group=group, left_at__isnull=True).count() == 2
    assert len(server.calls("gettoken")) == 2  # one checking the secret at connect, then one cached for every call


def test_retried_callback_is_stored_once(client: Client, conn: Any) -> None:
    xml = change_xml("create")
    assert callback(client, conn, xml).status_code == 200
    assert callback(client, conn, xml, nonce="other").status_code == 200  # WeCom retries (new nonce)
    assert InboundEvent.objects.filter(connection=conn).count() == 1
    assert ActivityEvent.objects.filter(kind="join").count() == 2


def test_bad_signature_and_malformed(client: Client, conn: Any, caplog: Any) -> None:
    with caplog.at_level(logging.WARNING):
        assert callback(client, conn, change_xml("create"), bad_signature=True).status_code == 403
    assert not InboundEvent.objects.exists() and CHAT not in caplog.text
    assert callback(client, conn, "", raw=b"<xml><oops").status_code == 400
    assert callback(client, conn, "", raw=b"<xml><ToUserName>x</ToUserName></xml>").status_code == 400
    assert client.post(f"/hooks/wecom/{conn.hook_key}/", data=b"<xml/>", content_type="text/xml").status_code == 403


def test_unknown_event_is_stored_raw(client: Client, conn: Any) -> None:
    xml = (f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
           "<CreateTime>1763870400</CreateTime><MsgType><![CDATA[event]]></MsgType>"
           "<Event><![CDATA[change_external_tag]]></Event><ChangeType><![CDATA[create]]></ChangeType></xml>")
    assert callback(client, conn, xml).status_code == 200
    ev = ActivityEvent.objects.get(platform="wecom")
    assert ev.kind == "other" and ev.payload["raw_kind"] == "wecom.change_external_tag"
    assert InboundEvent.objects.get().status == "done"


def _mapped_group(tenant: Any, system: Any, conn: Any, client: Client) -> ChatGroup:
    callback(client, conn, change_xml("create"))
    room = Room.objects.get(connection=conn, external_id=CHAT)
    do_map_room(system, room.pk, room.group.community_id, robot_key="robot-key-0001-abcd")
    room.refresh_from_db()
    assert "robot-key" not in room.secrets_encrypted and room.secret_hints["robot_key"] == "••••abcd"
    return ChatGroup.objects.get(pk=room.group_id)


def test_robot_send_and_owner_tasks(client: Client, tenant: Any, system: Any, conn: Any, wecom_api: Any) -> None:
    server, _ = wecom_api
    g = _mapped_group(tenant, system, conn, client)
    send = do_request_action(tenant.pk, kind="send", group_id=g.pk, idempotency_key="w1",
                             payload={"text": "今晚8点直播", "format": "markdown"})
    kick = do_request_action(tenant.pk, kind="kick", group_id=g.pk, idempotency_key="w2",
                             target_external_id="wmAAA01", reason="广告")
    delete = do_request_action(tenant.pk, kind="delete", group_id=g.pk, idempotency_key="w3", message_external_id="m")
    delivery.deliver_due()
    send.refresh_from_db()
    assert send.status == "done"
    call = server.calls("send")[0]
    assert call["?key"] == "robot-key-0001-abcd" and call["msgtype"] == "markdown"
    for a in (kick, delete):
        a.refresh_from_db()
        assert a.status == "delegated" and HumanTask.objects.get(action=a).due_at > timezone.now()


def test_robot_throttle_is_rate_limited(client: Client, tenant: Any, system: Any, conn: Any, wecom_api: Any) -> None:
    server, _ = wecom_api
    g = _mapped_group(tenant, system, conn, client)
    server.script["send"] = [(200, {"errcode": 45009, "errmsg": "api freq out of limit"})]
    a = do_request_action(tenant.pk, kind="send", group_id=g.pk, idempotency_key="w1", payload={"text": "hi"})
    t0 = timezone.now()
    delivery.deliver_due(now=t0)
    a.refresh_from_db()
    assert a.status == "pending" and a.next_attempt_at >= t0 + dt.timedelta(minutes=10)


def test_robot_body_limits() -> None:
    def item(payload: dict[str, Any], target: str = "") -> ActionItem:
        return ActionItem(id=1, tenant_id=1, kind="send", platform="wecom", connection_id=1, group_id=1, room="r",
                          target=target, message="", payload=payload, attempts=1, created_at=timezone.now())

    assert robot_body(item({"text": "好" * 682}))["text"]["content"]  # 2046 bytes
    with pytest.raises(Exception, match="2048"):
        robot_body(item({"text": "好" * 683}))  # 2049 bytes
    assert robot_body(item({"text": "hi"}, target="wmX"))["text"]["mentioned_list"] == ["wmX"]
    news = robot_body(item({"articles": [{"title": "秒杀", "url": "https://x.cn", "picurl": "https://x.cn/a.png"}]}))
    assert news["msgtype"] == "news" and news["news"]["articles"][0]["title"] == "秒杀"


def test_qr_configs(tenant: Any, system: Any, conn: Any, wecom_api: Any) -> None:
    server, _ = wecom_api
    qr = do_create_qr_config(system, conn.pk, kind="join_way", state="ref_alice", remark="老带新",
                             chat_ids=[CHAT])
    assert qr.qr_code.startswith("https://wework.qpic.cn") and qr.config_id
    assert server.calls("add_join_way")[0]["state"] == "ref_alice"
    cw = do_create_qr_config(system, conn.pk, kind="contact_way", state="live_1123", users=["zhangsan"])
    assert cw.qr_code.startswith("https://p.qpic.cn")
    with pytest.raises(Invalid):
        do_create_qr_config(system, conn.pk, kind="join_way", state="x" * 31, chat_ids=[CHAT])
    with pytest.raises(Invalid):
        do_create_qr_config(system, conn.pk, kind="join_way", state="s", chat_ids=[f"c{i}" for i in range(6)])


def test_group_owner_and_admins_are_marked_staff(client: Client, conn: Any, wecom_api: Any) -> None:
    """groupchat/get names the owner (群主) and admins: cached on the room, and their join events are
    marked ``sender_is_admin`` (moderation exempts staff)."""
    _server, state = wecom_api
    state.admins = [{"userid": "wmAdmin09"}]
    state.members.append(member("wmAdmin09", 1763800200, type=1))
    callback(client, conn, change_xml("create"))
    room = Room.objects.get(connection=conn, external_id=CHAT)
    assert room.staff_state == {"owner": "wmOwner01", "admins": ["wmAdmin09"]}
    marks = {e.platform_event_id.split(":")[2]: e.payload["sender_is_admin"]
             for e in ActivityEvent.objects.filter(kind="join", platform="wecom")}
    assert marks == {"wmOwner01": True, "wmAdmin09": True, "wmAAA01": False}
    # the owner hands the group over: the cache follows
    state.admins = []
    state.members.append(member("wmCCC03", 1763870700))
    callback(client, conn, change_xml("update", "add_member", created=1763870700))
    assert Room.objects.get(pk=room.pk).staff_state == {"owner": "wmOwner01", "admins": []}
    assert ActivityEvent.objects.get(platform_event_id=f"{CHAT}:join:wmCCC03:1763870700").payload[
        "sender_is_admin"] is False


def test_callback_to_moderation_action_through_the_outbox(client: Client, conn: Any, wecom_api: Any,
                                                         system: Any) -> None:
    """Issue #19 for WeCom, end to end in process: an encrypted ``change_external_chat`` callback
    (wechatpy crypto, as WeCom sends it) → the member's join in the activity stream → that member's ad
    (WeCom reports no message content for customer groups: it arrives as the session archive would
    hand it in) → moderation → the outbox: the warning through the group robot against the local fake,
    naming the member; the deletion, impossible through the API, a human task for the group owner."""
    server, state = wecom_api
    assert callback(client, conn, change_xml("create")).status_code == 200
    room = Room.objects.get(connection=conn, external_id=CHAT)
    do_map_room(system, room.pk, room.group.community_id, robot_key="robot-key-1")
    do_save_policy(system, room.group.community_id, warn_limit=3)
    state.members.append(member("wmSpam01", 1763870500))
    assert callback(client, conn, change_xml("update", "add_member", created=1763870500)).status_code == 200
    join = ActivityEvent.objects.get(platform_event_id=f"{CHAT}:join:wmSpam01:1763870500")
    assert join.member_id is not None
    do_ingest_platform_events(conn, [{"platform": "wecom", "event_id": f"{CHAT}:msg:1", "kind": "message",
                                      "occurred_at": 1763870600, "sender": "wmSpam01", "group": CHAT,
                                      "payload": {"text": "加微信 vx123 领红包", "message_id": "msg-1"}}])
    v = Violation.objects.get(event__platform_event_id=f"{CHAT}:msg:1")
    assert v.member_id == join.member_id and v.ladder_step == "warn"
    for _ in range(3):
        delivery.deliver_due()
    warn = OutboxAction.objects.get(idempotency_key=f"mod:{v.pk}:warn")
    assert warn.status == "done"
    (sent,) = [f for f in server.calls("send") if f.get("?key") == "robot-key-1"]
    assert sent["msgtype"] == "text" and sent["text"]["content"].startswith("@客户01 ")  # the member's name
    assert "1/3" in sent["text"]["content"]
    delete = OutboxAction.objects.get(idempotency_key=f"mod:{v.pk}:delete")
    assert delete.status == "delegated" and HumanTask.objects.filter(action=delete, status="open").exists()
