"""Fraud signals on referred purchases: same phone, IP/device clusters, velocity, re-registration,
existing customers, refund rate. By default a signal is flagged for review; with the tenant's
``fraud_blocking`` the commissions are held until review.

Reviewing a signal (release or void the held commissions) moves commission state and money, so
it lives with the commission lifecycle: :func:`shequn.referrals.services.commissions.do_review_signal`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q

from shequn.members.models import Member

from ..models import (
    BuyerStat,
    Commission,
    CommissionState,
    FraudKind,
    FraudSignal,
    FraudStatus,
    LinkEvent,
    LinkEventKind,
    ReferralBinding,
)
from ..selectors import buyer_fingerprint
from ._common import get_policy


def _apply_fraud_checks(tenant_id: int, referrer_id: int, buyer: Member, created: list[Commission], *,
                        now: datetime, binding: ReferralBinding | None) -> bool:
    """Record fraud signals for this referred purchase; returns True when commissions are held
    (only if the tenant turned blocking on — by default signals are flagged for review)."""
    policy = get_policy(tenant_id)
    signals: list[tuple[str, dict[str, Any]]] = []
    referrer = Member.objects.get(pk=referrer_id)
    if buyer.pk != referrer_id and buyer.phone and buyer.phone == referrer.phone:
        signals.append((FraudKind.SAME_PHONE, {}))
    ip, device = buyer_fingerprint(tenant_id, buyer.pk)
    purchases = LinkEvent.objects.filter(tenant_id=tenant_id, kind=LinkEventKind.PURCHASE, link__member_id=referrer_id)
    if ip:
        n = purchases.filter(ip=ip).values("member_id").distinct().count()
        if n > policy.fraud_ip_threshold:
            signals.append((FraudKind.IP_CLUSTER, {"ip": ip, "buyers": n}))
    if device:
        n = purchases.filter(device_id=device).values("member_id").distinct().count()
        if n > policy.fraud_ip_threshold:
            signals.append((FraudKind.DEVICE_CLUSTER, {"buyers": n}))
    recent = Commission.objects.filter(tenant_id=tenant_id, referrer_id=referrer_id,
                                       created_at__gte=now - timedelta(hours=1)).values("order_id").distinct().count()
    if recent > policy.fraud_velocity_per_hour:
        signals.append((FraudKind.VELOCITY, {"orders_last_hour": recent}))
    if buyer.phone and Member.objects.filter(tenant_id=tenant_id, phone=buyer.phone).exclude(pk=buyer.pk).filter(
            created_at__lt=buyer.created_at).exists():
        signals.append((FraudKind.REREGISTRATION, {}))
    stat = BuyerStat.objects.filter(tenant_id=tenant_id, member=buyer).first()
    if binding is not None and stat is not None and stat.first_paid_at and stat.first_paid_at < binding.bound_at:
        signals.append((FraudKind.EXISTING_CUSTOMER, {"first_paid_at": stat.first_paid_at.isoformat()}))
    if not signals:
        return False
    block = policy.fraud_blocking
    for kind, detail in signals:
        FraudSignal.objects.create(tenant_id=tenant_id, kind=kind, referrer_id=referrer_id, subject_member_id=buyer.pk,
                                   commission=created[0], order_id=created[0].order_id, detail=detail, blocking=block)
    if block:
        Commission.objects.filter(pk__in=[c.pk for c in created], state=CommissionState.FROZEN).update(
            state=CommissionState.HELD)
        for c in created:
            c.state = CommissionState.HELD
    return block


def _refund_rate_check(tenant_id: int, referrer_ids: Iterable[int], now: datetime) -> None:
    policy = get_policy(tenant_id)
    for rid in referrer_ids:
        agg = Commission.objects.filter(tenant_id=tenant_id, referrer_id=rid).aggregate(
            n=Count("order_id", distinct=True),
            refunded=Count("order_id", distinct=True, filter=Q(reversed_fen__gt=0)))
        n, refunded = agg["n"] or 0, agg["refunded"] or 0
        if n >= 4 and refunded * 100 >= policy.fraud_refund_rate_pct * n and not FraudSignal.objects.filter(
                tenant_id=tenant_id, referrer_id=rid, kind=FraudKind.REFUND_RATE, status=FraudStatus.OPEN).exists():
            FraudSignal.objects.create(tenant_id=tenant_id, kind=FraudKind.REFUND_RATE, referrer_id=rid,
                                       detail={"orders": n, "refunded": refunded}, blocking=False)
