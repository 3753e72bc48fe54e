"""Entry thresholds on Telegram: a ``chat_join_request`` update goes through the community's
threshold (free → approved, paid → approved only with a paid tier, approval → the console's queue)
and the answer reaches the Bot API (approveChatJoinRequest / declineChatJoinRequest) through the
outbox; the portal's invite links of gated communities ask to join (creates_join_request)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.test import Client

from shequn.commerce.services import do_create_order
from shequn.commerce.tests.conftest import pay
from shequn.communities.models import ChatGroup, Community, JoinRequest
from shequn.communities.services import do_decide_join
from shequn.connectors.models import OutboxAction
from shequn.connectors.services import do_create_connection, do_deliver_due, do_discover_room
from shequn.connectors.tests import telegram_payloads as P
from shequn.connectors.tests.fake_server import FakeServer
from shequn.members.models import Identity, Member
from shequn.portal.services import do_get_telegram_invite
from shequn.portal.tests.world import World, build_world
from shequn.referrals.services import do_get_or_create_link

SECRET = "hook-Secret_123"
TOKEN = "123456:TESTTOKENabcdef"
INVITE = "https://t.me/+AskToJoin123"


@pytest.fixture
def api():
    def default(name: str, fields: dict[str, str]) -> tuple[int, Any]:
        if name == "createChatInviteLink":
            return 200, {"ok": True, "result": {"invite_link": INVITE, "creator": P.BOT, "name": fields.get("name"),
                                                "creates_join_request": fields.get("creates_join_request") == "true",
                                                "is_primary": False, "is_revoked": False}}
        return 200, P.TRUE

    with FakeServer(default) as server:
        yield server


def _world(tenant: Any, api: FakeServer, threshold: str) -> tuple[World, Any, ChatGroup]:
    world = build_world(tenant, threshold=threshold)
    world.group.delete()
    conn = do_create_connection(world.system, platform="telegram", name="bot", default_community_id=world.community.pk,
                                config={"api_base": api.url},
                                secret_values={"bot_token": TOKEN, "webhook_secret": SECRET}, verify=False)
    do_discover_room(conn, str(P.CHAT["id"]), name=P.CHAT["title"])
    return world, conn, ChatGroup.objects.get(tenant=tenant, platform="telegram", external_id=str(P.CHAT["id"]))


def _ask(client: Client, conn: Any, user_id: int, *, update_id: int, code: str = "") -> None:
    user = {"id": user_id, "is_bot": False, "first_name": f"申请人{user_id}"}
    req: dict[str, Any] = {"chat": P.CHAT, "from": user, "user_chat_id": user_id, "date": int(time.time()) + update_id,
                           "bio": "想学私域运营"}
    if code:
        req["invite_link"] = {"invite_link": INVITE, "creator": P.BOT, "creates_join_request": True,
                              "is_primary": False, "is_revoked": False, "name": code}
    r = client.post(f"/hooks/telegram/{conn.hook_key}/", data=json.dumps({"update_id": update_id,
                                                                           "chat_join_request": req}),
                    content_type="application/json", HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=SECRET)
    assert r.status_code == 200


def _answered(api: FakeServer) -> list[tuple[str, str]]:
    do_deliver_due()
    return [(name, f["user_id"]) for name, _p, f in api.requests
            if name in ("approveChatJoinRequest", "declineChatJoinRequest")]


def test_approval_community_queues_the_request_and_staff_decide_on_telegram(client, tenant, api):
    world, conn, group = _world(tenant, api, Community.EntryThreshold.APPROVAL)
    _ask(client, conn, 5001, update_id=1)
    _ask(client, conn, 5002, update_id=2)
    _ask(client, conn, 5001, update_id=1)  # Telegram retries the same update: one request
    reqs = list(JoinRequest.objects.filter(tenant=tenant).order_by("pk"))
    assert [(r.status, r.via, r.group_id) for r in reqs] == [("pending", "telegram", group.pk)] * 2
    assert reqs[0].message == "想学私域运营"
    assert _answered(api) == []  # nothing goes to Telegram before staff decide

    do_decide_join(world.system, reqs[0].pk, approve=True, note="欢迎")
    do_decide_join(world.system, reqs[1].pk, approve=False, note="资料不全")
    assert _answered(api) == [("approveChatJoinRequest", "5001"), ("declineChatJoinRequest", "5002")]
    assert all(c["chat_id"] == str(P.CHAT["id"]) for c in api.calls("approveChatJoinRequest"))
    assert set(OutboxAction.objects.filter(tenant=tenant).values_list("kind", "status")) == {
        ("approve_join", "done"), ("decline_join", "done")}


def test_free_community_approves_at_once(client, tenant, api):
    _w, conn, _g = _world(tenant, api, Community.EntryThreshold.FREE)
    _ask(client, conn, 6001, update_id=3)
    req = JoinRequest.objects.get(tenant=tenant)
    assert req.status == "approved" and req.decided_by
    assert _answered(api) == [("approveChatJoinRequest", "6001")]


def test_paid_community_admits_only_a_member_holding_a_tier(client, tenant, api):
    world, conn, _group = _world(tenant, api, Community.EntryThreshold.PAID)
    _ask(client, conn, 7001, update_id=4)
    assert JoinRequest.objects.get(tenant=tenant).status == "rejected"
    assert _answered(api) == [("declineChatJoinRequest", "7001")]

    # the same Telegram user buys the entry tier, then asks again: let in
    member = Identity.objects.get(tenant=tenant, platform="telegram", external_id="7001").member
    order = do_create_order(world.system, member_id=member.pk, lines=[{"sku_id": world.entry.skus.get().pk,
                                                                       "quantity": 1}])
    pay(world.system, order.pk)
    _ask(client, conn, 7001, update_id=5)
    assert JoinRequest.objects.filter(tenant=tenant, status="approved").count() == 1
    assert _answered(api)[-1] == ("approveChatJoinRequest", "7001")


def test_gated_communities_get_invite_links_that_ask_to_join(client, tenant, api):
    world, conn, group = _world(tenant, api, Community.EntryThreshold.APPROVAL)
    alice = Member.objects.create(tenant=tenant, display_name="阿丽", first_seen_at=world.community.created_at)
    link = do_get_or_create_link(world.system, member_id=alice.pk, community_id=world.community.pk)
    assert do_get_telegram_invite(link, group) == INVITE
    assert api.calls("createChatInviteLink")[0]["creates_join_request"] == "true"
    # someone asks through it: the request carries the code (its referrer is attributed once let in)
    _ask(client, conn, 8001, update_id=6, code=link.code)
    assert JoinRequest.objects.get(tenant=tenant).invite_code == link.code


def test_a_partner_group_keeps_its_community_when_the_bot_discovers_it(tenant, api):
    world, conn, _group = _world(tenant, api, Community.EntryThreshold.FREE)
    other = Community.objects.create(tenant=tenant, name="合伙人社群")
    registered = ChatGroup.objects.create(tenant=tenant, community=other, platform="telegram",
                                          external_id="-100555", name="合伙人的群")
    room = do_discover_room(conn, "-100555", name="合伙人的群")
    registered.refresh_from_db()
    assert room.group_id == registered.pk and registered.community_id == other.pk != world.community.pk
