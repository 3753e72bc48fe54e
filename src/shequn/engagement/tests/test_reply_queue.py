"""Reply-to-everyone: member messages answered by staff/role holders leave the queue; member-to-member
replies do not count; stats per community and responder; one-click reply goes through the outbox."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from shequn.activity.services import do_ingest
from shequn.communities.models import RoleAssignment
from shequn.connectors.models import OutboxAction
from shequn.core.errors import Conflict, NotFound
from shequn.core.permissions import Principal
from shequn.engagement.models import ChatStaff, ReplyTrack
from shequn.engagement.selectors import reply_queue, reply_stats, role_performance
from shequn.engagement.services import do_reply_from_queue


def ev(eid, member, kind, when, **payload):
    return {"platform": "telegram", "event_id": eid, "kind": kind, "occurred_at": when.isoformat(),
            "sender": f"u{member.pk}", "group": "-100", "payload": payload}


@pytest.fixture
def people(make_member, community, tenant):
    alice, bob, carol, staff, cs = (make_member(n) for n in ("alice", "bob", "carol", "客服小王", "群管"))
    ChatStaff.objects.create(tenant=tenant, member=staff)
    RoleAssignment.objects.create(tenant=tenant, community=community, member=cs, role="cs",
                                  since=timezone.now() - dt.timedelta(days=10))
    return alice, bob, carol, staff, cs


def test_queue_staff_vs_member_replies(tenant, community, people):
    alice, bob, carol, staff, cs = people
    t0 = timezone.now() - dt.timedelta(hours=3)
    res = do_ingest(tenant.pk, [
        ev("m1", alice, "message", t0, text="有人吗? 怎么开发票"),
        ev("m2", bob, "message", t0 + dt.timedelta(minutes=1), text="今天天气不错"),
        ev("m3", carol, "message", t0 + dt.timedelta(minutes=2), text="求推荐"),
        # bob (a plain member) replies to carol: does not answer her
        ev("r1", bob, "reply", t0 + dt.timedelta(minutes=3), reply_to_event_id="m3", text="我也想知道"),
        # staff answers alice by quoting her message id
        ev("r2", staff, "reply", t0 + dt.timedelta(minutes=10), reply_to_event_id="m1", text="您好, 可以开"),
        # the cs role holder mentions bob
        ev("r3", cs, "message", t0 + dt.timedelta(minutes=20), mentions=[bob.pk], text="@bob 是的"),
    ])
    assert not res.errors
    queue = list(reply_queue(tenant.pk, community_id=community.pk))
    # bob's message and his reply were answered by the cs mention; carol only got a member's reply
    assert [t.member_id for t in queue] == [carol.pk]
    assert queue[0].excerpt == "求推荐"
    stats = reply_stats(tenant.pk, since=t0 - dt.timedelta(hours=1))
    c = stats["communities"][0]
    assert c["messages"] == 4 and c["answered"] == 3 and c["response_rate"] == 0.75
    assert c["median_first_response_seconds"] == pytest.approx(1020.0)  # 10, 17 and 19 minutes
    by = {r["member_id"]: r for r in stats["responders"]}
    assert by[staff.pk]["answered"] == 1 and by[cs.pk]["answered"] == 2
    perf = role_performance(tenant.pk, community.pk, since=t0 - dt.timedelta(hours=1))
    assert perf[0]["member_id"] == cs.pk and perf[0]["answered"] == 2


def test_recent_messages_wait_for_the_sla_and_one_click_reply(tenant, community, people, other_tenant):
    alice, *_ = people
    now = timezone.now()
    do_ingest(tenant.pk, [ev("x1", alice, "message", now - dt.timedelta(minutes=5), text="在吗"),
                          ev("x2", alice, "message", now - dt.timedelta(minutes=50), text="在吗??")])
    queue = list(reply_queue(tenant.pk))
    assert [t.excerpt for t in queue] == ["在吗??"]  # the 5-minute-old one is still within the SLA
    p = Principal(tenant_id=tenant.pk, kind="staff", actor_id="1", label="运营小李",
                  permissions=frozenset({"engagement.write"}))
    with pytest.raises(NotFound):
        do_reply_from_queue(Principal.system(other_tenant.pk), queue[0].pk, text="hi")
    track = do_reply_from_queue(p, queue[0].pk, text="在的, 请说")
    action = OutboxAction.objects.get(pk=track.reply_action_id)
    assert action.kind == "send" and action.payload["reply_to_message_id"] == "x2"
    assert list(reply_queue(tenant.pk)) == []
    with pytest.raises(Conflict):
        do_reply_from_queue(p, queue[0].pk, text="again")
    assert ReplyTrack.objects.get(pk=track.pk).answered_by_label == "运营小李"
