"""Fission-task rewards reach the other engines through the hooks wired in their ``AppConfig.ready``:
points → engagement's points ledger, coupon → a commerce coupon, cash → the ledger (referrals)."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from shequn.commerce.models import Coupon
from shequn.commerce.services import do_create_coupon_template, grant_fission_coupon
from shequn.core.permissions import Principal
from shequn.engagement.models import PointsEntry
from shequn.engagement.selectors import points_balance
from shequn.engagement.services import grant_fission_points
from shequn.referrals.models import FissionReward, FissionTask
from shequn.referrals.services import do_create_plan, do_get_or_create_link, fission, on_order_event
from shequn.testing.factories import MemberFactory, order_line, paid_event
from shequn.testing.scenarios import member_balance


def test_the_engines_register_their_reward_hooks():
    assert fission._REWARD_HOOKS["points"] is grant_fission_points
    assert fission._REWARD_HOOKS["coupon"] is grant_fission_coupon


def test_points_coupon_and_cash_rewards_after_valid_invites(tenant):
    do_create_plan(Principal.system(tenant.pk), name="p", refund_window_days=0, rules=[{"rate_bps": 1000}])
    now = timezone.now()
    tpl = do_create_coupon_template(Principal.system(tenant.pk), name="邀请奖励券", kind="fixed", amount_fen=500,
                                    valid_from=now - dt.timedelta(days=1), valid_until=now + dt.timedelta(days=30))
    FissionTask.objects.create(tenant=tenant, name="邀2得积分", threshold=2, reward_kind="points", reward_value=50)
    FissionTask.objects.create(tenant=tenant, name="邀2得券", threshold=2, reward_kind="coupon", reward_value=tpl.pk)
    FissionTask.objects.create(tenant=tenant, name="邀3得现金", threshold=3, reward_kind="cash", reward_value=300)
    a = MemberFactory(tenant=tenant, display_name="A")
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    events = [paid_event(tenant, MemberFactory(tenant=tenant, display_name=f"x{i}"), [order_line("g", 1000, "goods")],
                         code=link.code) for i in range(3)]
    for e in events:
        on_order_event(e)
    for e in events:  # replayed payment events grant nothing twice
        on_order_event(e)
    assert points_balance(tenant.pk, a.pk)["balance"] == 50
    assert PointsEntry.objects.filter(tenant=tenant, member=a, kind="fission").count() == 1
    assert Coupon.objects.filter(template=tpl, owner=a).count() == 1
    assert member_balance(tenant, a, "available") == 3 * 100 + 300
    assert FissionReward.objects.filter(member=a).count() == 3


def test_a_coupon_that_cannot_be_issued_does_not_fail_the_payment(tenant):
    do_create_plan(Principal.system(tenant.pk), name="p", refund_window_days=0, rules=[{"rate_bps": 1000}])
    FissionTask.objects.create(tenant=tenant, name="邀1得券", threshold=1, reward_kind="coupon", reward_value=999999)
    a = MemberFactory(tenant=tenant, display_name="A")
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    on_order_event(paid_event(tenant, MemberFactory(tenant=tenant, display_name="x"),
                              [order_line("g", 1000, "goods")], code=link.code))
    assert member_balance(tenant, a, "available") == 100 and not Coupon.objects.filter(owner=a).exists()
