from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from shequn.activity.services import do_ingest
from shequn.communities.models import ChatGroup, Membership
from shequn.core.errors import Invalid
from shequn.core.permissions import Principal
from shequn.referrals.models import CommissionPlan, LinkEvent, ReferralBinding, ReferralPolicy
from shequn.referrals.selectors import active_binding
from shequn.referrals.services import (
    do_bind,
    do_create_plan,
    do_get_or_create_link,
    do_record_click,
    do_record_join,
    on_order_event,
    select_plan,
    try_bind,
)
from shequn.testing.factories import CommunityFactory, MemberFactory, order_line, paid_event


def test_second_level_plan_is_refused_citing_the_law(tenant):
    p = Principal.system(tenant.pk)
    with pytest.raises(Invalid) as exc:
        do_create_plan(p, name="二级分销", levels=2, rules=[{"rate_bps": 1000}])
    assert exc.value.code == "multi_level_refused"
    assert "禁止传销条例" in exc.value.message
    with pytest.raises(Invalid) as exc:
        do_create_plan(p, name="偷偷二级", rules=[{"rate_bps": 1000}, {"rate_bps": 500, "level": 2}])
    assert exc.value.details["field"] == "rules[1].level"
    assert not CommissionPlan.objects.exists()
    # the database refuses it too
    plan, _w = do_create_plan(p, name="一级", rules=[{"rate_bps": 1000, "product_kind": "goods"}])
    with pytest.raises(IntegrityError), transaction.atomic():
        CommissionPlan.objects.filter(pk=plan.pk).update(levels=2)


def test_plan_validation_names_the_rule(tenant):
    p = Principal.system(tenant.pk)
    with pytest.raises(Invalid) as exc:
        do_create_plan(p, name="x", rules=[{"rate_bps": 1000}, {"rate_bps": 20000}])
    assert exc.value.details["field"] == "rules[1].rate_bps" and "第 2 条" in exc.value.message


def test_goods_plan_has_no_headcount_warning(tenant):
    _plan, warnings = do_create_plan(Principal.system(tenant.pk), name="商品分销",
                                     rules=[{"product_kind": "goods", "rate_bps": 1000}])
    assert not any("禁止传销条例" in w for w in warnings)


def test_plan_selection_prefers_the_most_specific(tenant):
    p = Principal.system(tenant.pk)
    comm = CommunityFactory(tenant=tenant, name="入门社群")
    general, _ = do_create_plan(p, name="通用", rules=[{"rate_bps": 100}])
    camp, _ = do_create_plan(p, name="活动", campaign="双11", rules=[{"rate_bps": 200}])
    both, _ = do_create_plan(p, name="社群活动", campaign="双11", community_id=comm.pk, rules=[{"rate_bps": 300}])
    assert select_plan(tenant.pk, None, "") == general
    assert select_plan(tenant.pk, None, "双11") == camp
    assert select_plan(tenant.pk, comm.pk, "双11") == both


def test_self_binding_and_cycles_are_refused(tenant):
    p = Principal.system(tenant.pk)
    a, b, c = (MemberFactory(tenant=tenant, display_name=n) for n in ("A", "B", "C"))
    with pytest.raises(Invalid) as exc:
        do_bind(p, member_id=a.pk, referrer_id=a.pk)
    assert exc.value.code == "binding_self"
    do_bind(p, member_id=b.pk, referrer_id=a.pk)  # A refers B
    with pytest.raises(Invalid) as exc:
        do_bind(p, member_id=a.pk, referrer_id=b.pk)  # B refers A: A↔B
    assert exc.value.code == "binding_cycle"
    do_bind(p, member_id=c.pk, referrer_id=b.pk)  # B refers C
    with pytest.raises(Invalid) as exc:
        do_bind(p, member_id=a.pk, referrer_id=c.pk)  # C is A's descendant
    assert exc.value.code == "binding_cycle"


@pytest.mark.parametrize("mode", ["permanent", "days", "last_click"])
def test_binding_modes(tenant, mode):
    ReferralPolicy.objects.create(tenant=tenant, binding_mode=mode, binding_days=30)
    a, b, x = (MemberFactory(tenant=tenant, display_name=n) for n in ("A", "B", "X"))
    now = timezone.now()
    try_bind(tenant.pk, x, a.pk, now=now)
    _binding, refused = try_bind(tenant.pk, x, b.pk, now=now + timedelta(days=1))
    expected_first = {"permanent": a, "days": a, "last_click": b}[mode]
    assert active_binding(tenant.pk, x.pk, now + timedelta(days=1)).referrer_id == expected_first.pk
    assert refused == ("" if mode == "last_click" else "already_bound")
    later = now + timedelta(days=40)
    _binding, refused = try_bind(tenant.pk, x, b.pk, now=later)
    if mode == "permanent":
        assert refused == "already_bound" and active_binding(tenant.pk, x.pk, later).referrer_id == a.pk
    else:  # the 30-day binding expired (days) or last click wins
        assert active_binding(tenant.pk, x.pk, later).referrer_id == b.pk


def test_protection_period_blocks_last_click(tenant):
    ReferralPolicy.objects.create(tenant=tenant, binding_mode="last_click", protection_days=7)
    a, b, x = (MemberFactory(tenant=tenant, display_name=n) for n in ("A", "B", "X"))
    now = timezone.now()
    try_bind(tenant.pk, x, a.pk, now=now)
    assert try_bind(tenant.pk, x, b.pk, now=now + timedelta(days=3))[1] == "protected"
    assert try_bind(tenant.pk, x, b.pk, now=now + timedelta(days=8))[1] == ""


def test_new_customer_only(tenant):
    ReferralPolicy.objects.create(tenant=tenant, new_customer_only=True)
    p = Principal.system(tenant.pk)
    do_create_plan(p, name="p", refund_window_days=0, rules=[{"rate_bps": 1000}])
    a, x = (MemberFactory(tenant=tenant, display_name=n) for n in ("A", "老客"))
    on_order_event(paid_event(tenant, x, [order_line("g", 1000, "goods")]))  # bought before, no referrer
    link = do_get_or_create_link(p, member_id=a.pk)
    on_order_event(paid_event(tenant, x, [order_line("g", 1000, "goods")], code=link.code))
    assert active_binding(tenant.pk, x.pk) is None


def test_click_join_purchase_are_attributed(tenant):
    p = Principal.system(tenant.pk)
    do_create_plan(p, name="p", rules=[{"rate_bps": 1000}])
    a, x = (MemberFactory(tenant=tenant, display_name=n) for n in ("A", "X"))
    comm = CommunityFactory(tenant=tenant, name="入门社群")
    link = do_get_or_create_link(p, member_id=a.pk, community_id=comm.pk, campaign="春季")
    do_record_click(link.code, member_id=x.pk, ip="1.2.3.4", device_id="dev1")
    do_record_join(tenant.pk, member_id=x.pk, code=link.code)
    on_order_event(paid_event(tenant, x,
                              [order_line("g", 1000, "goods")]))  # no code on the order: binding attributes it
    kinds = sorted(LinkEvent.objects.filter(link=link).values_list("kind", flat=True))
    assert kinds == ["click", "join", "purchase"]
    assert ReferralBinding.objects.get(member=x).referrer_id == a.pk


def test_channel_code_and_group_live_code(tenant):
    p = Principal.system(tenant.pk)
    comm = CommunityFactory(tenant=tenant, name="入门社群")
    with pytest.raises(Invalid):
        do_get_or_create_link(p, kind="channel")
    counter = do_get_or_create_link(p, kind="channel", channel="门店收银台", community_id=comm.pk)
    assert counter.member_id is None
    g1 = ChatGroup.objects.create(tenant=tenant, community=comm, platform="wecom", external_id="g1", name="1群",
                                  capacity=2)
    g2 = ChatGroup.objects.create(tenant=tenant, community=comm, platform="wecom", external_id="g2", name="2群",
                                  capacity=2)
    live = do_get_or_create_link(p, kind="group_live", community_id=comm.pk)
    routed = []
    for i in range(5):
        res = do_record_click(live.code)
        routed.append(res.group.pk if res.group else None)
        if res.group:
            Membership.objects.create(tenant=tenant, member=MemberFactory(tenant=tenant, display_name=f"m{i}"),
                                      community=comm, group=res.group, joined_at=timezone.now())
    assert routed == [g1.pk, g1.pk, g2.pk, g2.pk, None]


def test_links_are_tenant_scoped(tenant, other_tenant):
    a = MemberFactory(tenant=other_tenant, display_name="外人")
    with pytest.raises(Exception) as exc:
        do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    assert getattr(exc.value, "status", None) == 404


def test_join_through_activity_ingest_is_attributed(tenant):
    p = Principal.system(tenant.pk)
    a = MemberFactory(tenant=tenant, display_name="A")
    comm = CommunityFactory(tenant=tenant, name="入门社群")
    ChatGroup.objects.create(tenant=tenant, community=comm, platform="telegram", external_id="-100", name="群")
    link = do_get_or_create_link(p, member_id=a.pk, community_id=comm.pk)
    raw = {"platform": "telegram", "event_id": "j1", "kind": "join", "occurred_at": timezone.now().isoformat(),
           "sender": "tg-42", "sender_name": "新人", "group": "-100", "payload": {"invite_code": link.code}}
    do_ingest(tenant.pk, [raw])
    do_ingest(tenant.pk, [raw])  # duplicate delivery
    joins = LinkEvent.objects.filter(link=link, kind="join")
    assert joins.count() == 1
    assert ReferralBinding.objects.get(member=joins[0].member).referrer_id == a.pk
