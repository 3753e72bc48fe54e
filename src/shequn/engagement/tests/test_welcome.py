"""Welcome on join: joins arrive from the platform (Telegram webhook against the Bot API fake, Matrix
sync against a real Synapse), the welcome is rendered with its variables, batched when many join at
once, kept inside the platform's window, and observed at the platform."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from shequn.activity.models import ActivityEvent
from shequn.communities.models import ChatGroup, Community
from shequn.connectors.models import OutboxAction
from shequn.connectors.services import delivery, do_deliver_due, do_matrix_sync
from shequn.connectors.tests import telegram_payloads as P
from shequn.connectors.tests.fake_server import FakeServer
from shequn.connectors.tests.matrix_client import User
from shequn.core.errors import Invalid
from shequn.core.services import do_create_api_key, do_create_operator
from shequn.engagement.models import WelcomeJoin, WelcomeMessage
from shequn.engagement.services import do_flush_due_welcomes, do_save_welcome
from shequn.engagement.services.welcome import on_joins
from shequn.members.models import Member

from .conftest import tg_join, tg_post

TEMPLATE = "欢迎 {name} 加入{community}! 邀请人: {inviter}。群规: {rules_link} 会员中心: {portal_link}"


def _deliver(rounds: int = 6) -> None:
    t0 = timezone.now()
    for s in range(rounds):
        delivery.deliver_due(now=t0 + dt.timedelta(seconds=3 * s))


def test_telegram_joins_are_welcomed_and_batched(tenant: Any, system: Any, tg: dict[str, Any],
                                                 tg_api: FakeServer) -> None:
    do_save_welcome(system, tg["community"].pk, platform="telegram", body=TEMPLATE, batch_seconds=30)
    now = timezone.now()
    tg_post(tg, tg_join(30001, 401, "小红", now))
    # two more a moment later: inside the batching interval, they wait and share one message
    tg_post(tg, tg_join(30002, 402, "小兰", now))
    tg_post(tg, tg_join(30003, 403, "小绿", now))
    statuses = dict(WelcomeJoin.objects.values_list("member__display_name", "status"))
    assert statuses == {"小红": "queued", "小兰": "pending", "小绿": "pending"}
    _deliver()
    sent = [c["text"] for c in tg_api.calls("sendMessage")]
    assert len(sent) == 1 and sent[0].startswith("欢迎 小红 加入护肤群!")
    community_id = tg["community"].pk
    assert f"群规: https://qun.example.cn/portal/acme/c/{community_id}/#rules" in sent[0]
    assert "会员中心: https://qun.example.cn/portal/acme/" in sent[0]
    assert tg_api.calls("sendMessage")[0]["chat_id"] == str(P.CHAT["id"])

    # the interval ends: the sweep welcomes both in one message; a second sweep sends nothing more
    assert do_flush_due_welcomes(now=timezone.now() + dt.timedelta(seconds=31)) == 1
    assert do_flush_due_welcomes(now=timezone.now() + dt.timedelta(seconds=32)) == 0
    _deliver()
    sent = [c["text"] for c in tg_api.calls("sendMessage")]
    assert len(sent) == 2 and sent[1].startswith("欢迎 小兰、小绿 加入护肤群!")
    assert OutboxAction.objects.filter(source="engagement.welcome", status="done").count() == 2
    # a replayed join update is stored once and welcomed once
    tg_post(tg, tg_join(30001, 401, "小红", now))
    assert WelcomeJoin.objects.count() == 3


def test_old_joins_are_not_welcomed(tenant: Any, system: Any, tg: dict[str, Any], tg_api: FakeServer) -> None:
    do_save_welcome(system, tg["community"].pk, body="欢迎 {name}")  # every platform
    tg_post(tg, tg_join(30011, 411, "老王", timezone.now() - dt.timedelta(hours=3)))
    assert list(WelcomeJoin.objects.values_list("status", flat=True)) == ["late"]
    _deliver()
    assert not tg_api.calls("sendMessage")


def test_no_welcome_configured_or_paused(tenant: Any, system: Any, tg: dict[str, Any], tg_api: FakeServer) -> None:
    tg_post(tg, tg_join(30021, 421, "小李", timezone.now()))
    do_save_welcome(system, tg["community"].pk, body="欢迎 {name}", active=False)
    tg_post(tg, tg_join(30022, 422, "小赵", timezone.now()))
    assert not WelcomeJoin.objects.exists()
    _deliver()
    assert not tg_api.calls("sendMessage")


def _join_event(tenant: Any, group: ChatGroup, name: str, when: dt.datetime, n: int) -> ActivityEvent:
    m = Member.objects.create(tenant=tenant, display_name=name, first_seen_at=when)
    return ActivityEvent.objects.create(tenant=tenant, member=m, community=group.community, group=group,
                                        platform=group.platform, platform_event_id=f"wj{n}", kind="join",
                                        occurred_at=when, received_at=when)


def test_wecom_window_wins_over_batching(tenant: Any, system: Any) -> None:
    """WeCom accepts a welcome only within 20 s of the join: a join that cannot wait for the batching
    interval is welcomed just before its window closes, and one past the window is recorded late."""
    community = Community.objects.create(tenant=tenant, name="企微群")
    group = ChatGroup.objects.create(tenant=tenant, community=community, platform="wecom", external_id="wr1",
                                     name="企微 1 群")
    do_save_welcome(system, community.pk, platform="wecom", body="欢迎 {name}", batch_seconds=60)
    t0 = timezone.now()
    on_joins(tenant.pk, [_join_event(tenant, group, "甲", t0, 1)], now=t0)
    on_joins(tenant.pk, [_join_event(tenant, group, "乙", t0 + dt.timedelta(seconds=2), 2)],
             now=t0 + dt.timedelta(seconds=3))
    # 乙 waits (the group welcomed 甲 3 s ago) but not past 20 s - 5 s margin after its join
    assert WelcomeJoin.objects.get(member__display_name="乙").status == "pending"
    do_flush_due_welcomes(now=t0 + dt.timedelta(seconds=10))
    assert WelcomeJoin.objects.get(member__display_name="乙").status == "pending"
    do_flush_due_welcomes(now=t0 + dt.timedelta(seconds=17))  # 乙 joined at +2: its window closes at +22
    assert WelcomeJoin.objects.get(member__display_name="乙").status == "queued"
    texts = list(OutboxAction.objects.filter(source="engagement.welcome").order_by("pk")
                 .values_list("payload__text", flat=True))
    assert texts == ["欢迎 甲", "欢迎 乙"]
    # a join the sweep reaches only after the window: late, nothing sent
    on_joins(tenant.pk, [_join_event(tenant, group, "丙", t0 + dt.timedelta(seconds=20), 3)],
             now=t0 + dt.timedelta(seconds=21))
    do_flush_due_welcomes(now=t0 + dt.timedelta(seconds=45))
    assert WelcomeJoin.objects.get(member__display_name="丙").status == "late"
    assert OutboxAction.objects.filter(source="engagement.welcome").count() == 2


@pytest.mark.parametrize("body", ["欢迎 {nmae}", "   ", "欢迎 {0}"])
def test_bad_template_is_refused_the_same_in_service_api_and_console(tenant: Any, system: Any, body: str) -> None:
    community = Community.objects.create(tenant=tenant, name="车友会")
    with pytest.raises(Invalid) as exc:
        do_save_welcome(system, community.pk, body=body)
    assert exc.value.details["field"] == "body"
    _key, secret = do_create_api_key(system, name="bot", scopes=["engagement.write", "engagement.read"])
    api = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    r = api.post("/api/v1/engagement/welcomes", {"community_id": community.pk, "body": body},
                 content_type="application/json")
    assert r.status_code in (400, 422) and "body" in r.content.decode(), r.content
    do_create_operator(tenant=tenant, username="op", password="pw-123456", role="operator")
    console = Client()
    assert console.login(username="op", password="pw-123456")
    r = console.post(reverse("admin:engagement_welcomemessage_add"),
                     {"community": community.pk, "platform": "", "body": body, "batch_seconds": 30, "active": "on"})
    assert r.status_code == 200 and r.context["adminform"].form.errors.get("body")
    assert not WelcomeMessage.objects.exists()
    # and a good one saves through the same service, from both
    r = api.post("/api/v1/engagement/welcomes", {"community_id": community.pk, "body": "欢迎 {name}"},
                 content_type="application/json")
    assert r.status_code == 200 and r.json()["platform"] == ""
    r = console.post(reverse("admin:engagement_welcomemessage_add"),
                     {"community": community.pk, "platform": "telegram", "body": "Hi {name}", "batch_seconds": 5,
                      "active": "on"})
    assert r.status_code == 302, r.context["adminform"].form.errors if r.context else r
    assert dict(WelcomeMessage.objects.values_list("platform", "body")) == {"": "欢迎 {name}", "telegram": "Hi {name}"}
    listed = api.get(f"/api/v1/engagement/welcomes?community_id={community.pk}").json()
    assert [w["platform"] for w in listed] == ["", "telegram"]


# --- against a real Synapse ---------------------------------------------------------------------------


@pytest.mark.synapse
def test_matrix_join_is_welcomed_in_the_room(matrix_world: dict[str, Any], synapse: Any, system: Any) -> None:
    world = matrix_world
    alice, room = world["alice"], world["room"]
    do_save_welcome(system, world["community"].pk, platform="matrix", body="欢迎 {name} 加入{community}")
    carol = User(synapse.base_url, synapse.register(f"carol{room[1:7].lower()}x"))
    alice.call("POST", f"/rooms/{room}/invite", {"user_id": carol.user_id})
    carol.join(room)
    do_matrix_sync(world["conn"].pk)
    join = WelcomeJoin.objects.get()
    assert join.status == "queued"
    stats = do_deliver_due()
    assert stats.done == 1, list(OutboxAction.objects.values("kind", "status", "last_error"))
    action = OutboxAction.objects.get(source="engagement.welcome")
    seen = alice.event(room, action.result["event_id"])
    name = Member.objects.get(pk=join.member_id).display_name
    assert seen["sender"] == world["bot"]["user_id"] and seen["content"]["body"] == f"欢迎 {name} 加入车友会"
