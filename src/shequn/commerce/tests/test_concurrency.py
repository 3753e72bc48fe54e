"""Money and seat races, on PostgreSQL (SQLite serialises writers and would hide lost updates)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import Sum
from django.utils import timezone

from shequn.commerce import services
from shequn.commerce.models import GroupBuyParticipant, Order, Refund
from shequn.core.errors import Conflict, Invalid
from shequn.core.testing import race
from shequn.members.models import Member

from .conftest import pay, sku

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_concurrent_refunds_never_exceed_paid(system, member, product):
    order = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    pay(system, order.pk)

    def refund(i):
        try:
            services.do_request_refund(system, order.pk, amount_fen=3000, idempotency_key=f"c{i}")
            return "ok"
        except (Invalid, Conflict):
            return "refused"

    out = race(refund, 12, threads=10)
    order.refresh_from_db()
    assert out.count("ok") == 3  # 3 × 3000 ≤ 9900 < 4 × 3000
    assert order.refunded_fen == 9000 <= order.paid_fen
    assert Refund.objects.filter(order=order, status="succeeded").aggregate(s=Sum("amount_fen"))["s"] == 9000


def test_concurrent_joins_never_overfill_a_team(system, tenant, product):
    now = timezone.now()
    gb = services.do_create_group_buy(system, name="三人团", sku_id=sku(product).pk, price_fen=100, team_size=3,
                                      starts_at=now - dt.timedelta(minutes=1), ends_at=now + dt.timedelta(hours=1))
    leader = Member.objects.create(tenant=tenant, display_name="团长", first_seen_at=now)
    team, _ = services.do_start_team(system, gb.pk, member_id=leader.pk)
    joiners = Member.objects.bulk_create(
        [Member(tenant=tenant, display_name=f"j{i}", first_seen_at=now) for i in range(8)]
    )

    def join(m):
        try:
            services.do_join_team(system, team.share_token, member_id=m.pk)
            return "ok"
        except Conflict:
            return "full"

    out = race(lambda i: join(joiners[i]), len(joiners), threads=8)
    assert out.count("ok") == 2
    assert GroupBuyParticipant.objects.filter(team=team).count() == 3
    assert Order.objects.filter(team=team).count() == 3
