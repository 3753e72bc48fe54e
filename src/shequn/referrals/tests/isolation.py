"""Tenant-isolation probes of the referrals API (see ``shequn.api.tests.test_isolation``).

A real referral: a plan, the caller's member's invite link, a paid order by a buyer sharing the
referrer's phone (an open ``same_phone`` fraud signal, commission available at once), then a
withdrawal above the approval threshold (pending, so approve and reject both succeed). The plain
leaderboard (``/leaderboards/{metric}``) has no tenant object in its path: exempt here, tested in
``test_api.py``."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.members.models import Member
from shequn.referrals.models import FraudSignal, FraudStatus, LinkEvent, ReferralBinding, ReferralPolicy, Withdrawal
from shequn.referrals.services import (
    do_approve_withdrawal,
    do_create_alliance,
    do_create_fission_task,
    do_create_plan,
    do_get_or_create_link,
    do_invite_to_alliance,
    do_request_withdrawal,
    get_policy,
    on_order_event,
)

from .factories import line, paid

P = "/api/v1/referrals"

PROBES: dict[tuple[str, str], Any] = {
    ("get", f"{P}/links/{{code}}/qr.png"): None,
    ("get", f"{P}/links/{{code}}/poster.png"): None,
    ("post", f"{P}/links/{{code}}/click"): {"ip": "203.0.113.9", "device_id": "iso-device"},
    ("get", f"{P}/members/{{member_id}}/statement"): None,
    ("post", f"{P}/withdrawals/{{withdrawal_id}}/approve"): None,
    ("post", f"{P}/withdrawals/{{withdrawal_id}}/reject"): {"reason": "收款信息不符"},
    ("get", f"{P}/leaderboards/{{metric}}/members/{{member_id}}"): None,
    ("post", f"{P}/fraud-signals/{{signal_id}}/review"): {"decision": "cleared", "note": "核实无误"},
    ("post", f"{P}/payouts/withdrawals/{{withdrawal_id}}/reconcile"): None,
    ("post", f"{P}/payouts/withdrawals/{{withdrawal_id}}/manual-paid"): {"channel": "bank", "reference": "R-1"},
    ("post", f"{P}/payouts/withdrawals/{{withdrawal_id}}/manual-failed"): {"reason": "户名不符"},
    ("post", f"{P}/alliances/{{alliance_id}}/invitations"): {"tenant_slug": "iso-third"},
    ("post", f"{P}/alliance-invitations/{{invitation_id}}/accept"): None,
    ("post", f"{P}/alliance-invitations/{{invitation_id}}/decline"): None,
    ("post", f"{P}/fission-tasks/{{task_id}}/pause"): None,
    ("post", f"{P}/fission-tasks/{{task_id}}/resume"): None,
    ("post", f"{P}/plans/{{plan_id}}/pause"): None,
    ("post", f"{P}/plans/{{plan_id}}/resume"): None,
    ("patch", f"{P}/fission-tasks/{{task_id}}"): {"name": "邀请好友 (改名)"},
    ("patch", f"{P}/plans/{{plan_id}}"): {"name": "方案 (改名)"},
}
#: the payout actions act on a manual-provider withdrawal that is being transferred
PARAMS = {key: {"withdrawal_id": "manual_withdrawal_id"} for key in PROBES if "/payouts/" in key[1]}
EXEMPT = {
    ("get", f"{P}/leaderboards/{{metric}}"):
        "the path names a metric (an enum), not a tenant object — "
        "referrals/tests/test_api.py::test_leaderboard_never_lists_another_tenants_members",
}


def build_ids(tenant: Tenant, ids: dict[str, Any]) -> dict[str, Any]:
    p = Principal.system(tenant.pk)
    referrer = Member.objects.get(pk=ids["member_id"])
    plan, _warnings = do_create_plan(p, name="入门", refund_window_days=0,
                                     rules=[{"product_kind": "tier", "rate_bps": 10000}])
    third, _c = Tenant.objects.get_or_create(slug="iso-third", defaults={"name": "第三家"})
    inviter = Tenant.objects.create(slug=f"iso-inviter-{tenant.pk}", name="邀请方")
    theirs = do_create_alliance(Principal.system(inviter.pk), name="同城联盟")
    invitation = do_invite_to_alliance(Principal.system(inviter.pk), theirs.pk, tenant_slug=tenant.slug)
    ours = do_create_alliance(p, name="我们的联盟")
    task = do_create_fission_task(p, name="邀 3 人送积分", threshold=3, reward_kind="points", reward_value=100)
    link = do_get_or_create_link(p, member_id=referrer.pk)
    buyer = Member.objects.create(tenant=tenant, display_name="同号买家", phone=referrer.phone,
                                  first_seen_at=timezone.now())
    on_order_event(paid(tenant, buyer, [line("entry", 1990)], code=link.code))
    get_policy(tenant.pk)
    ReferralPolicy.objects.filter(tenant=tenant).update(withdrawal_approval_above_fen=100)
    w = do_request_withdrawal(p, member_id=referrer.pk, amount_fen=1500, idempotency_key="iso-wd", payee="openid")
    assert w.status == "requested", w.status
    ReferralPolicy.objects.filter(tenant=tenant).update(payout_provider="manual")
    manual = do_request_withdrawal(p, member_id=referrer.pk, amount_fen=300, idempotency_key="iso-wd-manual",
                                   payee="招商银行 尾号 1234")
    manual = do_approve_withdrawal(p, manual.pk)
    assert manual.status == "processing", manual.status
    signal = FraudSignal.objects.filter(tenant=tenant, status=FraudStatus.OPEN).order_by("pk").first()
    assert signal is not None
    assert third.pk
    return {"alliance_id": ours.pk, "invitation_id": invitation.pk, "task_id": task.pk,
            "plan_id": plan.pk, "code": link.code, "withdrawal_id": w.pk, "signal_id": signal.pk, "metric": "referrals",
            "manual_withdrawal_id": manual.pk}


def snapshot(tenant: Tenant) -> dict[str, Any]:
    return {
        "link_events": LinkEvent.objects.filter(tenant=tenant).count(),
        "bindings": ReferralBinding.objects.filter(tenant=tenant).count(),
        "withdrawals": list(Withdrawal.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "status")),
        "signals": list(FraudSignal.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "status")),
    }

MIXED = {
    ("post", f"{P}/links/{{code}}/click"): lambda own, foreign: {"member_id": foreign["member_id"]},
}
