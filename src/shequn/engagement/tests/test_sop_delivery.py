"""SOP that delivers: join-relative (day-N) and segment-targeted items reach the member — in the
member's group, addressed by name, or by a direct message where the platform allows it and the member
agreed — observed at the platform (the Telegram Bot API fake, a real Synapse), not only as outbox rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from shequn.communities.models import ChatGroup, Membership
from shequn.connectors.models import OutboxAction
from shequn.connectors.services import delivery, do_deliver_due, do_matrix_sync
from shequn.connectors.tests import telegram_payloads as P
from shequn.connectors.tests.fake_server import FakeServer
from shequn.connectors.tests.matrix_client import User
from shequn.engagement.models import ContentDelivery, ContentItem, ContentSchedule
from shequn.engagement.services import do_run_content_schedules
from shequn.members import audiences
from shequn.members.models import Member, MemberTag, Tag

from .conftest import tg_join, tg_post


def _deliver(rounds: int = 8) -> None:
    t0 = timezone.now()
    for s in range(rounds):
        delivery.deliver_due(now=t0 + dt.timedelta(seconds=4 * s))


def _schedule(tenant: Any, community: Any, body: str, **kw: Any) -> ContentSchedule:
    item = ContentItem.objects.create(tenant=tenant, title="SOP", body=body)
    s = ContentSchedule.objects.create(tenant=tenant, content=item, community=community, respect_quiet_hours=False,
                                       **kw)
    ContentSchedule.objects.filter(pk=s.pk).update(created_at=timezone.now() - dt.timedelta(days=1))
    s.refresh_from_db()
    return s


def test_day0_sequence_reaches_the_telegram_group_and_a_consenting_member_by_dm(
        tenant: Any, tg: dict[str, Any], tg_api: FakeServer) -> None:
    _schedule(tenant, tg["community"], "新人第 1 天: 先看群规, 有问题随时问", kind="sequence", day_offset=0)
    now = timezone.now()
    tg_post(tg, tg_join(31001, 501, "小红", now))
    tg_post(tg, tg_join(31002, 502, "小兰", now))
    Member.objects.filter(display_name="小兰").update(consent_marketing=True)  # 小兰 agreed to messages
    counts = do_run_content_schedules(tenant.pk, now=now + dt.timedelta(minutes=1))
    assert counts["queued"] == 2
    _deliver()
    assert set(OutboxAction.objects.filter(source="engagement.sop").values_list("status", flat=True)) == {"done"}
    calls = {c["chat_id"]: c["text"] for c in tg_api.calls("sendMessage")}
    # 小红: in the group, addressed by name; 小兰: a private chat (chat id = her user id)
    assert calls[str(P.CHAT["id"])] == "@小红\n新人第 1 天: 先看群规, 有问题随时问"
    assert calls["502"] == "新人第 1 天: 先看群规, 有问题随时问"
    assert ContentDelivery.objects.get(member__display_name="小兰").direct is True
    # reruns send nothing more
    assert do_run_content_schedules(tenant.pk, now=now + dt.timedelta(minutes=6))["queued"] == 0


def test_segment_item_names_the_segment_in_one_group_post(tenant: Any, tg: dict[str, Any],
                                                          tg_api: FakeServer) -> None:
    now = timezone.now()
    for i, name in enumerate(["阿强", "阿珍", "阿明"]):
        tg_post(tg, tg_join(32001 + i, 601 + i, name, now - dt.timedelta(minutes=5)))
    tag = Tag.objects.create(tenant=tenant, name="宝妈")
    for name in ("阿强", "阿珍"):
        MemberTag.objects.create(tenant=tenant, member=Member.objects.get(display_name=name), tag=tag)
    s = _schedule(tenant, tg["community"], "宝妈专场今晚 8 点开始", kind="fixed",
                  run_at=now - dt.timedelta(minutes=1), segment_tag=tag)
    do_run_content_schedules(tenant.pk, now=now)
    _deliver()
    texts = [c["text"] for c in tg_api.calls("sendMessage")]
    assert texts == ["@阿强 @阿珍\n宝妈专场今晚 8 点开始"]
    d = ContentDelivery.objects.get(schedule=s)
    assert d.group_id == tg["group"].pk and d.status == "queued"


def test_audience_item_reaches_only_the_saved_segment(tenant: Any, tg: dict[str, Any], tg_api: FakeServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A schedule whose audience is a saved segment: the members registry resolves it (analytics fills
    it in the wiring; here a stand-in segment of one member)."""
    now = timezone.now()
    for i, name in enumerate(["小林", "小吴"]):
        tg_post(tg, tg_join(34001 + i, 801 + i, name, now - dt.timedelta(minutes=5)))
    lin = Member.objects.get(display_name="小林")
    monkeypatch.setitem(audiences._resolver, "segments",
                        (lambda tid, aid: {lin.pk} if aid == 77 else set(), lambda tid: [(77, "复购会员")]))
    s = _schedule(tenant, tg["community"], "老客专属福利", kind="fixed", run_at=now - dt.timedelta(minutes=1),
                  audience_id=77)
    do_run_content_schedules(tenant.pk, now=now)
    _deliver()
    assert [c["text"] for c in tg_api.calls("sendMessage")] == ["@小林\n老客专属福利"]
    assert ContentDelivery.objects.get(schedule=s).status == "queued"


def test_member_without_group_or_dm_is_recorded_no_route(tenant: Any, tg: dict[str, Any]) -> None:
    now = timezone.now()
    tg_post(tg, tg_join(33001, 701, "小周", now))
    Membership.objects.filter(member__display_name="小周").update(group=None)
    _schedule(tenant, tg["community"], "你好", kind="sequence", day_offset=0)
    counts = do_run_content_schedules(tenant.pk, now=now + dt.timedelta(minutes=1))
    assert counts == {"queued": 0, "skipped_cooldown": 0, "no_route": 1}
    assert not OutboxAction.objects.filter(source="engagement.sop").exists()


@pytest.mark.synapse
@pytest.mark.django_db(transaction=False)
def test_day0_sequence_reaches_the_matrix_room(matrix_world: dict[str, Any], synapse: Any, tenant: Any) -> None:
    world = matrix_world
    alice, room = world["alice"], world["room"]
    _schedule(tenant, world["community"], "欢迎来到车友会, 第 1 天任务: 发一张爱车照片", kind="sequence",
              day_offset=0)
    carol = User(synapse.base_url, synapse.register(f"carol{room[1:7].lower()}s"))
    alice.call("POST", f"/rooms/{room}/invite", {"user_id": carol.user_id})
    carol.join(room)
    do_matrix_sync(world["conn"].pk)
    counts = do_run_content_schedules(tenant.pk, now=timezone.now() + dt.timedelta(minutes=1))
    assert counts["queued"] == 3  # alice and bob joined minutes ago too: each gets day 0, in the room
    assert do_deliver_due().done == 3, list(OutboxAction.objects.values("kind", "status", "last_error"))
    group = ChatGroup.objects.get(external_id=room)
    bodies = {}
    for action in OutboxAction.objects.filter(source="engagement.sop"):
        assert action.group_id == group.pk
        seen = alice.event(room, action.result["event_id"])
        assert seen["sender"] == world["bot"]["user_id"]
        bodies[Member.objects.get(pk=action.target_member_id).display_name] = seen["content"]["body"]
    carol_name = Member.objects.get(identities__external_id=carol.user_id).display_name
    assert bodies[carol_name] == f"@{carol_name}\n欢迎来到车友会, 第 1 天任务: 发一张爱车照片"
    assert len(bodies) == 3
