"""Telegram: webhook secret check, parsing of recorded updates, idempotency, long polling, and the
adapter against a local server answering the Bot API with recorded payloads."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from shequn.activity.models import ActivityEvent
from shequn.communities.models import ChatGroup, Community, Membership
from shequn.connectors.models import HumanTask, InboundEvent, OutboxAction, Room
from shequn.connectors.platforms.telegram.inbound import parse_update
from shequn.connectors.services import delivery, do_create_connection, do_poll_telegram, do_request_action

from . import telegram_payloads as P
from .fake_server import FakeServer

SECRET = "hook-Secret_123"


@pytest.fixture
def api() -> Iterator[FakeServer]:
    def default(name: str, fields: dict[str, str]) -> tuple[int, Any]:
        if name in ("sendMessage", "sendPhoto"):
            return 200, P.SENT
        if name == "getUpdates":
            return 200, {"ok": True, "result": []}
        if name == "getMe":
            return 200, {"ok": True, "result": P.BOT}
        return 200, P.TRUE

    with FakeServer(default) as server:
        yield server


@pytest.fixture
def conn(tenant: Any, system: Any, api: FakeServer) -> Any:
    community = Community.objects.create(tenant=tenant, name="护肤群")
    return do_create_connection(system, platform="telegram", name="bot", default_community_id=community.pk,
                                config={"api_base": api.url},
                                secret_values={"bot_token": "123456:TESTTOKENabcdef", "webhook_secret": SECRET})


def post(client: Client, conn: Any, update: Any, secret: str | None = SECRET, raw: bytes | None = None) -> Any:
    headers = {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": secret} if secret is not None else {}
    return client.post(f"/hooks/telegram/{conn.hook_key}/", data=raw if raw is not None else json.dumps(update),
                       content_type="application/json", **headers)


def test_parse_recorded_updates() -> None:
    (msg,), rooms = parse_update(P.MESSAGE)
    assert msg["kind"] == "message" and msg["event_id"] == "-1001234567890:51" and msg["sender"] == "111"
    assert msg["payload"]["mentions"] == ["@ahqiang"] and rooms[0]["name"] == "护肤交流群"
    (rep,), _ = parse_update(P.REPLY)
    assert rep["kind"] == "reply" and rep["payload"]["reply_to"] == "-1001234567890:51"
    (ed,), _ = parse_update(P.EDITED)
    assert ed["kind"] == "edit" and ed["payload"]["edits"] == "-1001234567890:51"
    assert ed["payload"]["text"] == "大家好呀"
    (j,), _ = parse_update(P.CHAT_MEMBER_JOIN)
    assert j["kind"] == "join" and j["sender"] == "333" and j["payload"]["invite_link"] == "小美的邀请"
    (k,), _ = parse_update(P.CHAT_MEMBER_KICKED)
    assert k["kind"] == "leave" and k["payload"]["reason"] == "ban"
    (r,), _ = parse_update(P.REACTION)
    assert r["kind"] == "reaction" and r["payload"]["keys"] == ["👍"]
    (u,), _ = parse_update(P.UNKNOWN)
    assert u["kind"] == "telegram.poll" and u["event_id"] == "update:10008"
    (p,), _ = parse_update(P.PRIVATE)
    assert p["sender"] is None and p["group"] is None


def test_webhook_ingests_once(client: Client, conn: Any) -> None:
    for update in (P.MESSAGE, P.REPLY, P.EDITED, P.NEW_MEMBERS, P.CHAT_MEMBER_JOIN, P.REACTION):
        assert post(client, conn, update).status_code == 200
    again = post(client, conn, P.MESSAGE)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert InboundEvent.objects.filter(connection=conn).count() == 6
    assert InboundEvent.objects.filter(status="done").count() == 6
    group = ChatGroup.objects.get(platform="telegram", external_id="-1001234567890")
    kinds = sorted(ActivityEvent.objects.filter(group=group).values_list("kind", flat=True))
    assert kinds == ["edit", "join", "join", "message", "reaction", "reply"]
    assert Membership.objects.filter(group=group, left_at__isnull=True).count() == 2  # 阿强 + 新人
    assert ActivityEvent.objects.filter(platform_event_id="-1001234567890:51").count() == 1
    conn.refresh_from_db()
    assert conn.events_received == 6 and conn.last_event_at is not None


def test_webhook_rejects_bad_secret_without_storing_or_logging_payload(client: Client, conn: Any,
                                                                      caplog: Any) -> None:
    with caplog.at_level(logging.WARNING):
        assert post(client, conn, P.MESSAGE, secret="wrong").status_code == 403
        assert post(client, conn, P.MESSAGE, secret=None).status_code == 403
    assert not InboundEvent.objects.exists() and not ActivityEvent.objects.exists()
    assert "大家好" not in caplog.text and "rejected" in caplog.text


def test_webhook_malformed_and_unknown(client: Client, conn: Any) -> None:
    assert post(client, conn, None, raw=b"{not json").status_code == 400
    assert post(client, conn, {"no": "update_id"}).status_code == 400
    assert post(client, conn, P.UNKNOWN).status_code == 200
    ev = ActivityEvent.objects.get(platform_event_id="update:10008")
    assert ev.kind == "other" and ev.payload["raw_kind"] == "telegram.poll"
    assert client.post("/hooks/telegram/nope/", data="{}", content_type="application/json").status_code == 404


def test_long_polling_advances_offset(conn: Any, api: FakeServer) -> None:
    api.script["getUpdates"] = [(200, P.GET_UPDATES), (200, P.GET_UPDATES)]
    assert do_poll_telegram(conn.pk, drop_webhook=True) == 2
    conn.refresh_from_db()
    assert conn.state["offset"] == 10003
    assert do_poll_telegram(conn.pk) == 2  # the server replays: stored once anyway
    assert api.calls("getUpdates")[1]["offset"] == "10003"
    assert api.calls("deleteWebhook")
    assert ActivityEvent.objects.filter(platform="telegram").count() == 2


def _group(conn: Any) -> ChatGroup:
    client = Client()
    post(client, conn, P.MESSAGE)
    return ChatGroup.objects.get(platform="telegram", external_id=str(P.CHAT["id"]))


def test_actions_call_the_bot_api(tenant: Any, conn: Any, api: FakeServer) -> None:
    g = _group(conn)
    ActivityEvent.objects.filter(platform_event_id="-1001234567890:51").update(occurred_at=timezone.now())
    do_request_action(tenant.pk, kind="announce", group_id=g.pk, idempotency_key="a1", payload={"text": "群规"})
    do_request_action(tenant.pk, kind="delete", group_id=g.pk, idempotency_key="a2",
                      message_external_id="-1001234567890:51")
    do_request_action(tenant.pk, kind="mute", group_id=g.pk, idempotency_key="a3", target_external_id="222",
                      payload={"seconds": 600})
    do_request_action(tenant.pk, kind="ban", group_id=g.pk, idempotency_key="a4", target_external_id="222")
    t0 = timezone.now()
    for s in range(0, 40, 4):  # 1/s per chat, 19/min per group: a few rounds
        delivery.deliver_due(now=t0 + dt.timedelta(seconds=s))
    assert list(OutboxAction.objects.values_list("status", flat=True).distinct()) == ["done"]
    assert api.calls("sendMessage")[0]["text"] == "群规" and api.calls("pinChatMessage")[0]["message_id"] == "77"
    assert api.calls("deleteMessage")[0] == {"chat_id": "-1001234567890", "message_id": "51"}
    restrict = api.calls("restrictChatMember")[0]
    assert restrict["user_id"] == "222" and json.loads(restrict["permissions"])["can_send_messages"] is False
    assert api.calls("banChatMember")[0]["user_id"] == "222"


def test_429_retry_after_from_bot_api(tenant: Any, conn: Any, api: FakeServer) -> None:
    g = _group(conn)
    api.script["sendMessage"] = [(429, P.RETRY_AFTER)]
    a = do_request_action(tenant.pk, kind="send", group_id=g.pk, idempotency_key="s1", payload={"text": "hi"})
    t0 = timezone.now()
    delivery.deliver_due(now=t0)
    a.refresh_from_db()
    assert a.status == "pending" and a.next_attempt_at >= t0 + dt.timedelta(seconds=17) and "429" in a.last_error
    delivery.deliver_due(now=t0 + dt.timedelta(seconds=18))
    a.refresh_from_db()
    assert a.status == "done" and len(api.calls("sendMessage")) == 2


def test_permanent_and_server_errors(tenant: Any, conn: Any, api: FakeServer) -> None:
    g = _group(conn)
    api.script["sendMessage"] = [(400, P.CHAT_NOT_FOUND), (502, P.SERVER_ERROR)]
    a = do_request_action(tenant.pk, kind="send", group_id=g.pk, idempotency_key="s1", payload={"text": "x"})
    b = do_request_action(tenant.pk, kind="send", group_id=g.pk, idempotency_key="s2", payload={"text": "y"})
    t0 = timezone.now()
    delivery.deliver_due(now=t0)
    delivery.deliver_due(now=t0 + dt.timedelta(seconds=5))
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.status == "failed" and "chat not found" in a.last_error
    assert b.status == "pending" and b.attempts == 1 and "Bad Gateway" in b.last_error


def test_delete_older_than_48h_becomes_human_task(tenant: Any, conn: Any, api: FakeServer) -> None:
    g = _group(conn)
    ActivityEvent.objects.filter(platform_event_id="-1001234567890:51").update(
        occurred_at=timezone.now() - dt.timedelta(hours=49))
    a = do_request_action(tenant.pk, kind="delete", group_id=g.pk, idempotency_key="d1",
                          message_external_id="-1001234567890:51")
    delivery.deliver_due()
    a.refresh_from_db()
    assert a.status == "delegated" and HumanTask.objects.filter(action=a, status="open").exists()
    assert not api.calls("deleteMessage")
    # Telegram refusing a delete (age unknown to us) also becomes a human task
    api.script["deleteMessage"] = [(400, P.CANT_DELETE)]
    b = do_request_action(tenant.pk, kind="delete", group_id=g.pk, idempotency_key="d2",
                          message_external_id="-1001234567890:9")
    delivery.deliver_due(now=timezone.now() + dt.timedelta(seconds=5))
    b.refresh_from_db()
    assert b.status == "delegated"


def test_room_discovered_and_auto_mapped(conn: Any) -> None:
    g = _group(conn)
    room = Room.objects.get(connection=conn, external_id=str(P.CHAT["id"]))
    assert room.group_id == g.pk and room.name == "护肤交流群"


def _promote(update_id: int, user: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    return {"update_id": update_id, "chat_member": {
        "chat": P.CHAT, "from": P.ALICE, "date": 1763871000 + update_id,
        "old_chat_member": {"status": old, "user": user}, "new_chat_member": {"status": new, "user": user}}}


def _message(update_id: int, user: dict[str, Any], text: str, **extra: Any) -> dict[str, Any]:
    return {"update_id": update_id, "message": {"message_id": update_id, "from": user, "chat": P.CHAT,
                                                "date": 1763872000 + update_id, "text": text, **extra}}


def test_admins_from_chat_member_updates_mark_their_messages(client: Client, conn: Any) -> None:
    """Telegram says who is an administrator only in chat_member updates: the connector caches it on
    the room and marks that admin's later messages ``sender_is_admin``; others stay unmarked."""
    assert post(client, conn, _promote(20001, P.BOB, "member", "administrator")).status_code == 200
    room = Room.objects.get(connection=conn, external_id=str(P.CHAT["id"]))
    assert room.staff_state["admins"] == [str(P.BOB["id"])]
    post(client, conn, _message(20002, P.BOB, "群规更新了"))
    post(client, conn, _message(20003, P.ALICE, "收到"))
    by_text = {e.payload["text"]: e.payload for e in ActivityEvent.objects.filter(kind="message")}
    assert by_text["群规更新了"]["sender_is_admin"] is True
    assert "sender_is_admin" not in by_text["收到"]  # the platform told us nothing about alice
    # an anonymous administrator posts as the group itself
    post(client, conn, _message(20004, {"id": 1087968824, "is_bot": True, "first_name": "Group"}, "公告",
                                sender_chat=P.CHAT))
    assert ActivityEvent.objects.get(payload__text="公告").payload["sender_is_admin"] is True
    # demoted: no longer marked
    post(client, conn, _promote(20005, P.BOB, "administrator", "member"))
    post(client, conn, _message(20006, P.BOB, "我不是管理员了"))
    assert Room.objects.get(pk=room.pk).staff_state["admins"] == []
    assert "sender_is_admin" not in ActivityEvent.objects.get(payload__text="我不是管理员了").payload
