"""Telegram from the members' pages, against the local Telegram Bot API fake of the connectors'
tests: an invite link made through the bot per invite code (createChatInviteLink, name = the code)
shown on the landing, a join through it attributed to the code (the chat_member update's
invite_link), links that let people straight in revoked when the community becomes gated, and
sign-in through Telegram's own page without Telegram's widget script."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from django.test import Client
from django.urls import reverse

from shequn.activity.models import ActivityEvent
from shequn.communities.models import ChatGroup, Community
from shequn.communities.services import do_update_community
from shequn.connectors.models import OutboxAction
from shequn.connectors.services import do_create_connection, do_deliver_due, do_discover_room
from shequn.connectors.tests import telegram_payloads as P
from shequn.connectors.tests.fake_server import FakeServer
from shequn.members.models import Member
from shequn.portal import services
from shequn.portal.models import JoinWay, TelegramInvite
from shequn.referrals.models import LinkEvent, ReferralBinding
from shequn.referrals.services import do_get_or_create_link
from shequn.testing.scenarios import paid_community

from .test_signin import _telegram

SECRET = "hook-Secret_123"
TOKEN = "123456:TESTTOKENabcdef"
INVITE = "https://t.me/+AbCdEf123456"


@pytest.fixture
def api():
    def default(name: str, fields: dict[str, str]) -> tuple[int, Any]:
        if name == "createChatInviteLink":
            return 200, {"ok": True, "result": {"invite_link": INVITE, "creator": P.BOT, "name": fields.get("name"),
                                                "creates_join_request": False, "is_primary": False,
                                                "is_revoked": False}}
        if name == "revokeChatInviteLink":  # answers with the revoked link (Bot API)
            return 200, {"ok": True, "result": {"invite_link": fields.get("invite_link"), "creator": P.BOT,
                                                "creates_join_request": False, "is_primary": False,
                                                "is_revoked": True}}
        return 200, P.TRUE

    with FakeServer(default) as server:
        yield server


@pytest.fixture
def tg(tenant, api):
    world = paid_community(tenant, threshold=Community.EntryThreshold.FREE)
    world.group.delete()  # the world's Matrix group: only the Telegram one here
    conn = do_create_connection(world.system, platform="telegram", name="bot", default_community_id=world.community.pk,
                                config={"api_base": api.url},
                                secret_values={"bot_token": TOKEN, "webhook_secret": SECRET}, verify=False)
    do_discover_room(conn, str(P.CHAT["id"]), name=P.CHAT["title"])
    group = ChatGroup.objects.get(tenant=tenant, platform="telegram", external_id=str(P.CHAT["id"]))
    assert group.community_id == world.community.pk
    return world, conn, group


def test_landing_shows_a_bot_made_invite_link_per_code_and_the_join_is_attributed(client, tg, api):
    world, conn, group = tg
    alice = Member.objects.create(tenant=world.tenant, display_name="阿丽", first_seen_at=world.community.created_at)
    link = do_get_or_create_link(world.system, member_id=alice.pk, community_id=world.community.pk)

    html = client.get(f"/r/{link.code}").content.decode()
    assert INVITE in html
    calls = api.calls("createChatInviteLink")
    assert len(calls) == 1 and calls[0]["name"] == link.code and calls[0]["chat_id"] == str(P.CHAT["id"])
    assert TelegramInvite.objects.get(link=link, group=group).url == INVITE
    assert INVITE in Client().get(f"/r/{link.code}").content.decode()
    assert len(api.calls("createChatInviteLink")) == 1  # made once per (code, group), then kept

    # someone joins through it: Telegram's chat_member update names the link → the code's referrer
    newcomer = {"id": 4242, "is_bot": False, "first_name": "新人"}
    update = {"update_id": 30001, "chat_member": {
        "chat": P.CHAT, "from": newcomer, "date": int(time.time()),
        "old_chat_member": {"status": "left", "user": newcomer},
        "new_chat_member": {"status": "member", "user": newcomer},
        "invite_link": {"invite_link": INVITE, "creator": P.BOT, "creates_join_request": False, "is_primary": False,
                        "is_revoked": False, "name": link.code}}}
    r = client.post(f"/hooks/telegram/{conn.hook_key}/", data=json.dumps(update), content_type="application/json",
                    HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=SECRET)
    assert r.status_code == 200
    join = ActivityEvent.objects.get(kind="join", group=group)
    assert join.payload["invite_code"] == link.code
    event = LinkEvent.objects.get(link=link, kind="join")
    assert event.member_id == join.member_id
    assert ReferralBinding.objects.get(member_id=join.member_id).referrer_id == alice.pk


def test_without_a_bot_that_can_invite_the_operators_join_way_stays(client, tg, api):
    world, _conn, group = tg
    api.script["createChatInviteLink"] = [(400, {"ok": False, "error_code": 400,
                                                 "description": "Bad Request: not enough rights"})]
    JoinWay.objects.create(tenant=world.tenant, group=group, url="https://t.me/+operatorMade")
    alice = Member.objects.create(tenant=world.tenant, display_name="阿丽", first_seen_at=world.community.created_at)
    link = do_get_or_create_link(world.system, member_id=alice.pk, community_id=world.community.pk)
    r = client.get(f"/r/{link.code}")
    html = r.content.decode()
    assert r.status_code == 200 and "https://t.me/+operatorMade" in html and INVITE not in html
    assert not TelegramInvite.objects.exists()
    assert TOKEN not in html


def test_telegram_sign_in_through_telegrams_page_without_its_widget_script(client, tg, settings):
    world, _conn, _group = tg
    settings.SHEQUN = {**settings.SHEQUN, "PUBLIC_BASE_URL": "https://m.example.com"}
    login = reverse("portal:login", args=[world.tenant.slug])
    html = client.get(login + "?next=/portal/acme/earnings/").content.decode()
    assert "telegram.org/js" not in html and "portal/tglogin.js" in html
    start = html.split('data-testid="telegram-login"')[0].rsplit('href="', 1)[1].split('"', 1)[0]
    q = parse_qs(urlparse(start.replace("&amp;", "&")).query)
    assert start.startswith("https://oauth.telegram.org/auth?")
    assert q["bot_id"] == ["123456"] and q["origin"] == ["https://m.example.com"]
    assert q["return_to"][0].startswith("https://m.example.com/portal/acme/login/?next=")
    assert TOKEN.split(":")[1] not in html
    # what tglogin.js forwards: the signed fields as query parameters, verified with the bot token
    signed = _telegram({"id": "777", "first_name": "Ann", "auth_date": str(int(time.time()))}, TOKEN)
    r = client.get(reverse("portal:telegram_callback", args=[world.tenant.slug]),
                   {**signed, "next": "/portal/acme/earnings/"})
    assert r.status_code == 302 and r["Location"] == "/portal/acme/earnings/"
    forged = {**signed, "id": "778"}
    assert client.get(reverse("portal:telegram_callback", args=[world.tenant.slug]), forged).status_code == 400


def test_gating_the_community_revokes_links_that_let_people_straight_in(client, tg, api):
    """A link made while the community was free lets anyone in without asking, and it keeps
    circulating in chats. When the threshold becomes approval, the bot revokes it (outbox →
    revokeChatInviteLink) and the next visit gets a link that asks (creates_join_request)."""
    world, _conn, group = tg
    alice = Member.objects.create(tenant=world.tenant, display_name="阿丽", first_seen_at=world.community.created_at)
    link = do_get_or_create_link(world.system, member_id=alice.pk, community_id=world.community.pk)
    assert INVITE in client.get(f"/r/{link.code}").content.decode()
    assert api.calls("createChatInviteLink")[0].get("creates_join_request") in (None, "false", "False")
    assert TelegramInvite.objects.get(link=link, group=group).asks_to_join is False

    do_update_community(world.system, Community.objects.get(pk=world.community.pk),
                        entry_threshold=Community.EntryThreshold.APPROVAL)
    revoke = OutboxAction.objects.get(tenant=world.tenant, kind="revoke_invite")
    assert (revoke.group_id, revoke.payload["invite_link"]) == (group.pk, INVITE)
    assert not TelegramInvite.objects.filter(link=link, group=group).exists()
    assert do_deliver_due().done == 1
    (call,) = api.calls("revokeChatInviteLink")
    assert (call["chat_id"], call["invite_link"]) == (str(P.CHAT["id"]), INVITE)

    # the page shows a gated community's ways in only to members let in; the link they get asks
    services.do_get_telegram_invite(link, ChatGroup.objects.select_related("community").get(pk=group.pk))
    asking = api.calls("createChatInviteLink")[-1]
    assert len(api.calls("createChatInviteLink")) == 2 and asking["creates_join_request"] in ("true", "True")
    assert TelegramInvite.objects.get(link=link, group=group).asks_to_join is True


def test_a_direct_link_found_in_a_gated_community_is_replaced_on_the_next_visit(client, tg, api):
    """The same rule without the change event (a link recorded before links remembered whether they
    ask): the visit sees a direct link in a gated community, revokes it and shows an asking one."""
    world, _conn, group = tg
    alice = Member.objects.create(tenant=world.tenant, display_name="阿丽", first_seen_at=world.community.created_at)
    link = do_get_or_create_link(world.system, member_id=alice.pk, community_id=world.community.pk)
    client.get(f"/r/{link.code}")
    Community.objects.filter(pk=world.community.pk).update(entry_threshold=Community.EntryThreshold.APPROVAL)
    services.do_get_telegram_invite(link, ChatGroup.objects.select_related("community").get(pk=group.pk))
    assert api.calls("createChatInviteLink")[-1]["creates_join_request"] in ("true", "True")
    row = TelegramInvite.objects.get(link=link, group=group)
    assert row.asks_to_join is True
    assert OutboxAction.objects.get(tenant=world.tenant, kind="revoke_invite").payload["invite_link"] == INVITE
