"""Red packets: claims once per member, exact sums, expiry refunds, and concurrent claims on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from django.utils import timezone

from shequn.core.errors import Conflict, Invalid
from shequn.engagement import services
from shequn.engagement.models import RedPacket, RedPacketClaim
from shequn.engagement.selectors import points_balance
from shequn.engagement.services import (
    do_claim_red_packet,
    do_create_red_packet,
    do_expire_red_packets,
    do_points_earn,
    red_packets,
)
from shequn.engagement.tests.racing import race_claims


def test_points_packet_claims_and_refund(tenant, system, make_member, group):
    sender = make_member("发红包的")
    do_points_earn(tenant.pk, sender.pk, 100, kind="gift", idempotency_key="seed")
    p = do_create_red_packet(system, total=100, count=3, sender_member_id=sender.pk, group_id=group.pk)
    assert points_balance(tenant.pk, sender.pk)["balance"] == 0
    a, b = make_member("a"), make_member("b")
    rnd = random.Random(3)
    ca = do_claim_red_packet(tenant.pk, p.pk, a.pk, randint=rnd.randint)
    with pytest.raises(Conflict):
        do_claim_red_packet(tenant.pk, p.pk, a.pk)
    cb = do_claim_red_packet(tenant.pk, p.pk, b.pk, randint=rnd.randint)
    assert points_balance(tenant.pk, a.pk)["balance"] == ca.amount >= 1
    do_expire_red_packets(now=timezone.now() + dt.timedelta(days=2))
    p.refresh_from_db()
    assert p.status == "expired" and p.refunded == 100 - ca.amount - cb.amount
    assert points_balance(tenant.pk, sender.pk)["balance"] == p.refunded
    with pytest.raises(Conflict):
        do_claim_red_packet(tenant.pk, p.pk, make_member("c").pk)
    do_expire_red_packets(now=timezone.now() + dt.timedelta(days=3))  # no double refund
    assert points_balance(tenant.pk, sender.pk)["balance"] == p.refunded


def test_cash_needs_the_ledger_wallet(system):
    saved = red_packets._WALLETS.pop("cash", None)  # the ledger registers it at startup
    try:
        with pytest.raises(Invalid) as e:
            do_create_red_packet(system, total=1000, count=10, currency="cash")
        assert e.value.code == "cash_wallet_missing"
    finally:
        if saved is not None:
            services.register_cash_wallet(saved)


def test_cash_through_a_registered_wallet(tenant, system, make_member):
    calls = []

    class FakeLedger:
        def debit(self, tenant_id, member_id, amount, *, idempotency_key, reason):
            calls.append(("debit", member_id, amount, idempotency_key))

        def credit(self, tenant_id, member_id, amount, *, idempotency_key, reason):
            calls.append(("credit", member_id, amount, idempotency_key))

    saved = red_packets._WALLETS.get("cash")
    services.register_cash_wallet(FakeLedger())
    try:
        p = do_create_red_packet(system, total=888, count=2, currency="cash", mode="fixed")
        m1, m2 = make_member(), make_member()
        assert do_claim_red_packet(tenant.pk, p.pk, m1.pk).amount == 444
        assert do_claim_red_packet(tenant.pk, p.pk, m2.pk).amount == 444
        assert RedPacket.objects.get(pk=p.pk).status == "finished"
        assert [c[0] for c in calls] == ["debit", "credit", "credit"] and calls[0][1] is None
    finally:
        red_packets._WALLETS.pop("cash", None)
        if saved is not None:
            services.register_cash_wallet(saved)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_exceed_the_packet(tenant, system, make_member):
    p = do_create_red_packet(system, total=1000, count=10)
    members = [make_member(f"m{i}") for i in range(16)]
    results = race_claims(tenant.pk, p.pk, members)
    p.refresh_from_db()
    assert len(results) == 10 and sum(results) == 1000 and min(results) >= 1
    assert p.remaining_amount == 0 and p.remaining_count == 0 and p.status == "finished"
    assert RedPacketClaim.objects.filter(packet=p).count() == 10
    assert sum(points_balance(tenant.pk, m.pk)["balance"] for m in members) == 1000
