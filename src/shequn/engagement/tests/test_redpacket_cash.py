"""Cash red packets on the ledger (wired by ``LedgerConfig.ready``): funding, claims and the expiry
refund are idempotent ledger postings, exact to the fen, and the books stay balanced."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from django.utils import timezone

from shequn.core.errors import Conflict
from shequn.engagement.models import RedPacket, RedPacketClaim
from shequn.engagement.services import do_claim_red_packet, do_create_red_packet, do_expire_red_packets, red_packets
from shequn.engagement.tests.racing import race_claims
from shequn.ledger.models import AccountKind, Entry, OwnerType, Transaction
from shequn.ledger.services import InsufficientFunds, check_ledger, do_post, get_account
from shequn.ledger.wallet import RED_PACKET_EXPENSE, LedgerCashWallet


def _available(tenant_id: int, member_id: int) -> int:
    return get_account(tenant_id, OwnerType.MEMBER, member_id, AccountKind.AVAILABLE).balance_fen


def _merchant(tenant_id: int, kind: str) -> int:
    return get_account(tenant_id, OwnerType.MERCHANT, tenant_id, kind,
                       allow_negative=kind == RED_PACKET_EXPENSE).balance_fen


def test_the_ledger_registers_the_cash_wallet():
    assert isinstance(red_packets._WALLETS["cash"], LedgerCashWallet)


def test_organisation_packet_create_claims_expiry_refund_exact_to_the_fen(tenant, system, make_member, group):
    p = do_create_red_packet(system, total=1000, count=3, currency="cash", group_id=group.pk)
    assert _merchant(tenant.pk, RED_PACKET_EXPENSE) == -1000
    assert _merchant(tenant.pk, AccountKind.RED_PACKET_POOL) == 1000
    a, b = make_member("a"), make_member("b")
    rnd = random.Random(7)
    ca = do_claim_red_packet(tenant.pk, p.pk, a.pk, randint=rnd.randint)
    cb = do_claim_red_packet(tenant.pk, p.pk, b.pk, randint=rnd.randint)
    assert _available(tenant.pk, a.pk) == ca.amount and _available(tenant.pk, b.pk) == cb.amount
    assert _merchant(tenant.pk, AccountKind.RED_PACKET_POOL) == 1000 - ca.amount - cb.amount

    assert do_expire_red_packets(now=timezone.now() + dt.timedelta(days=2)) == 1
    p.refresh_from_db()
    assert p.refunded == 1000 - ca.amount - cb.amount > 0
    assert _merchant(tenant.pk, AccountKind.RED_PACKET_POOL) == 0
    assert _merchant(tenant.pk, RED_PACKET_EXPENSE) == -(ca.amount + cb.amount)  # the spend is what was claimed
    kinds = list(Transaction.objects.filter(tenant=tenant).order_by("pk").values_list("kind", "idempotency_key"))
    assert kinds == [("red_packet.fund", f"redpacket:{p.pk}:fund"),
                     ("red_packet.payout", f"redpacket:{p.pk}:claim:{a.pk}"),
                     ("red_packet.payout", f"redpacket:{p.pk}:claim:{b.pk}"),
                     ("red_packet.payout", f"redpacket:{p.pk}:refund")]
    assert set(Transaction.objects.filter(tenant=tenant).values_list("ref_type", "ref_id")) == {
        ("engagement.RedPacket", str(p.pk))}
    assert do_expire_red_packets(now=timezone.now() + dt.timedelta(days=3)) == 0  # no second refund
    assert Transaction.objects.filter(tenant=tenant).count() == 4
    assert check_ledger(tenant.pk).ok


def test_member_packet_spends_the_withdrawable_balance(tenant, system, make_member):
    sender, other = make_member("发红包的"), make_member("领红包的")
    expense = get_account(tenant.pk, OwnerType.MERCHANT, tenant.pk, AccountKind.REWARD_EXPENSE, allow_negative=True)
    do_post(tenant.pk, "seed", "fission.reward",
            [(expense, -500), (get_account(tenant.pk, OwnerType.MEMBER, sender.pk, AccountKind.AVAILABLE), 500)])
    with pytest.raises(InsufficientFunds):  # a Conflict: more than the sender holds
        do_create_red_packet(system, total=501, count=2, currency="cash", sender_member_id=sender.pk)
    assert not RedPacket.objects.exists() and _available(tenant.pk, sender.pk) == 500
    p = do_create_red_packet(system, total=300, count=2, currency="cash", mode="fixed", sender_member_id=sender.pk)
    assert _available(tenant.pk, sender.pk) == 200
    assert do_claim_red_packet(tenant.pk, p.pk, other.pk).amount == 150
    do_expire_red_packets(now=timezone.now() + dt.timedelta(days=2))
    assert _available(tenant.pk, sender.pk) == 350 and _available(tenant.pk, other.pk) == 150
    assert check_ledger(tenant.pk).ok


def test_a_replayed_claim_never_credits_twice(tenant, system, make_member):
    p = do_create_red_packet(system, total=100, count=2, currency="cash", mode="fixed")
    m = make_member()
    do_claim_red_packet(tenant.pk, p.pk, m.pk)
    entries = Entry.objects.filter(tenant=tenant).count()
    with pytest.raises(Conflict):
        do_claim_red_packet(tenant.pk, p.pk, m.pk)
    # the wallet itself replays: the same key posts nothing new
    red_packets._WALLETS["cash"].credit(tenant.pk, m.pk, 50, idempotency_key=f"redpacket:{p.pk}:claim:{m.pk}",
                                     reason="retry")
    assert Entry.objects.filter(tenant=tenant).count() == entries
    assert _available(tenant.pk, m.pk) == 50
    assert RedPacketClaim.objects.filter(packet=p).count() == 1
    assert check_ledger(tenant.pk).ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_cash_claims_never_over_pay(tenant, system, make_member):
    p = do_create_red_packet(system, total=1000, count=10, currency="cash")
    members = [make_member(f"m{i}") for i in range(16)]
    results = race_claims(tenant.pk, p.pk, members)
    assert len(results) == 10 and sum(results) == 1000
    assert sum(_available(tenant.pk, m.pk) for m in members) == 1000
    assert _merchant(tenant.pk, AccountKind.RED_PACKET_POOL) == 0
    assert Transaction.objects.filter(tenant=tenant, kind="red_packet.payout").count() == 10
    assert check_ledger(tenant.pk).ok
