"""The demo shows every engine: after ``seed_demo`` each engine has rows, and a second run adds
nothing (rows of every engine and every ledger/points posting counted before and after)."""

from __future__ import annotations

import pytest
from django.db.models import Model, Sum

from shequn.analytics.models import DailyRollup
from shequn.commerce.models import Coupon, CouponTemplate, FlashSale, GroupBuy, Order, OrderStatus, Product, Refund
from shequn.communities.models import ChatGroup, Membership
from shequn.demo import seed_demo
from shequn.engagement.models import (
    CheckIn,
    CheckInStats,
    ContentSchedule,
    LotteryEntry,
    MemberScore,
    PointsEntry,
    RedPacket,
    RedPacketClaim,
    WelcomeMessage,
)
from shequn.ledger.models import Entry, Transaction
from shequn.ledger.services import check_ledger
from shequn.moderation.models import ModerationPolicy, Violation
from shequn.referrals.models import (
    Commission,
    FissionReward,
    InviteLink,
    LeaderboardEntry,
    ReferralBinding,
    Withdrawal,
    WithdrawalStatus,
)

COUNTED: list[type[Model]] = [
    Product, Order, Refund, FlashSale, GroupBuy, CouponTemplate, Coupon,
    InviteLink, ReferralBinding, Commission, Withdrawal, LeaderboardEntry, FissionReward,
    MemberScore, PointsEntry, CheckIn, LotteryEntry, RedPacket, RedPacketClaim, ContentSchedule,
    ModerationPolicy, Violation, Transaction, Entry,
]


def _counts(tenant_id: int) -> dict[str, int]:
    return {m.__name__: m.objects.filter(tenant_id=tenant_id).count() for m in COUNTED}  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.django_db
def test_seed_demo_fills_every_engine_once():
    tenant = seed_demo(members=160, days=14)
    counts = _counts(tenant.pk)
    assert all(counts.values()), {k: v for k, v in counts.items() if not v}
    # commerce: the two paid tiers beside the goods, orders paid and refunded
    assert Product.objects.filter(tenant=tenant, kind="tier").count() == 2
    assert Order.objects.filter(tenant=tenant, status=OrderStatus.REFUNDED).exists()
    assert Order.objects.filter(tenant=tenant, status=OrderStatus.PAID).exists()
    # referrals: commissions from those orders on the ledger, one withdrawal waiting for a person
    assert Transaction.objects.filter(tenant=tenant, kind__startswith="commission").exists()
    assert Withdrawal.objects.get(tenant=tenant).status == WithdrawalStatus.REQUESTED
    # engagement: a cash red packet on the ledger; moderation: ads waiting in the review queue
    assert RedPacket.objects.get(tenant=tenant).currency == "cash"
    assert Violation.objects.filter(tenant=tenant, status=Violation.Status.PENDING).count() >= 2
    assert Violation.objects.filter(tenant=tenant, status=Violation.Status.DRY_RUN).exists()
    assert check_ledger(tenant.pk).ok
    # consistent data: every group within its capacity, check-in streaks that differ, a flash sale
    # that sold (paid orders against it), a welcome per community
    for group in ChatGroup.objects.filter(tenant=tenant):
        open_members = Membership.objects.filter(group=group, left_at__isnull=True).count()
        assert open_members <= group.capacity, (group.name, open_members, group.capacity)
    streaks = set(CheckInStats.objects.filter(tenant=tenant).values_list("longest_streak", flat=True))
    assert len(streaks) >= 4, streaks
    flash = FlashSale.objects.get(tenant=tenant)
    assert flash.stock < 50 and Order.objects.filter(tenant=tenant, status=OrderStatus.PAID,
                                                     lines__sku=flash.sku).exists()
    assert WelcomeMessage.objects.filter(tenant=tenant).count() == 3
    # analytics: the orders are spread over 90 days and the rollups carry them (sales on 30+ days)
    gmv_days = DailyRollup.objects.filter(tenant=tenant, gmv_fen__gt=0).values("day").distinct().count()
    assert gmv_days >= 30
    assert DailyRollup.objects.filter(tenant=tenant).aggregate(s=Sum("gmv_fen"))["s"] == Order.objects.filter(
        tenant=tenant, paid_at__isnull=False).aggregate(s=Sum("paid_fen"))["s"]

    assert seed_demo(members=160, days=14).pk == tenant.pk
    assert _counts(tenant.pk) == counts
