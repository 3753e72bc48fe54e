"""The seed's paid-fission model (社群2.0): a 19.9 yuan entry community where every payer distributes
and earns 100% of each entry fee they bring, instantly, one level only; a 1999 yuan partner tier at
80%; refunds; withdrawals."""

from __future__ import annotations

import pytest

from shequn.core.errors import Conflict, Invalid
from shequn.core.permissions import Principal
from shequn.ledger.services import check_ledger
from shequn.referrals.models import Commission, CommissionState, ReferralPolicy, Withdrawal, WithdrawalStatus
from shequn.referrals.payouts import sandbox
from shequn.referrals.services import (
    do_approve_withdrawal,
    do_create_plan,
    do_get_or_create_link,
    do_record_click,
    do_request_withdrawal,
    on_order_event,
)
from shequn.testing.factories import CommunityFactory, MemberFactory, order_line, paid_event, refund_event
from shequn.testing.scenarios import member_balance

ENTRY, PARTNER = 1990, 199900


@pytest.fixture
def seed(tenant):
    p = Principal.system(tenant.pk)
    comm = CommunityFactory(tenant=tenant, name="入门社群")
    plan, warnings = do_create_plan(
        p, name="社群2.0", refund_window_days=0,
        rules=[{"product_kind": "tier", "product_id": "entry", "mode": "percent", "rate_bps": 10000},
               {"product_kind": "tier", "product_id": "partner", "mode": "percent", "rate_bps": 8000}],
    )
    ReferralPolicy.objects.update_or_create(tenant=tenant, defaults={"withdrawal_approval_above_fen": 100_000,
                                                                     "withdrawal_fee_bps": 0})
    return p, comm, plan, warnings


def test_seed_model_end_to_end(tenant, seed):
    p, comm, _plan, warnings = seed
    # the operator sees both risk notes: membership-fee-only pay and instant (0-day) availability
    assert any("禁止传销条例" in w for w in warnings)
    assert any("冻结期为 0" in w for w in warnings)

    alice = MemberFactory(tenant=tenant, display_name="阿丽")
    link = do_get_or_create_link(p, member_id=alice.pk, community_id=comm.pk)
    assert do_get_or_create_link(p, member_id=alice.pk, community_id=comm.pk).pk == link.pk

    # Bob clicks Alice's link, pays the 19.9 entry fee → Alice has 19.90 available at once
    bob = MemberFactory(tenant=tenant, display_name="小波")
    do_record_click(link.code, member_id=bob.pk, ip="10.0.0.2")
    ev_bob = paid_event(tenant, bob, [order_line("entry", ENTRY)], code=link.code)
    on_order_event(ev_bob)
    assert member_balance(tenant, alice, "available") == ENTRY
    assert member_balance(tenant, alice, "commission_pending") == 0
    c = Commission.objects.get(order_id=str(ev_bob.order_id))
    assert c.state == CommissionState.AVAILABLE and c.plan_snapshot["rule"]["rate_bps"] == 10000

    # the same payment callback delivered again credits nothing
    on_order_event(ev_bob)
    assert member_balance(tenant, alice, "available") == ENTRY
    assert Commission.objects.count() == 1

    # one level only: Bob's referee pays → Bob earns, Alice earns nothing more
    bob_link = do_get_or_create_link(p, member_id=bob.pk, community_id=comm.pk)
    carol = MemberFactory(tenant=tenant, display_name="卡罗")
    on_order_event(paid_event(tenant, carol, [order_line("entry", ENTRY)], code=bob_link.code))
    assert member_balance(tenant, bob, "available") == ENTRY
    assert member_balance(tenant, alice, "available") == ENTRY

    # Dan buys the 1999 partner tier through Alice → 80% = 1599.20
    dan = MemberFactory(tenant=tenant, display_name="阿丹")
    ev_dan = paid_event(tenant, dan, [order_line("partner", PARTNER)], code=link.code)
    on_order_event(ev_dan)
    assert member_balance(tenant, alice, "available") == ENTRY + PARTNER * 80 // 100

    # Bob refunds: Alice's 19.90 is taken back from her available balance
    on_order_event(refund_event(ev_bob))
    on_order_event(refund_event(ev_bob))  # replayed refund
    assert member_balance(tenant, alice, "available") == PARTNER * 80 // 100
    assert Commission.objects.get(pk=c.pk).state == CommissionState.CLAWED_BACK

    # Alice withdraws 1000 yuan: above the approval threshold → waits, then is paid
    w = do_request_withdrawal(p, member_id=alice.pk, amount_fen=100_000 + 1, idempotency_key="a-1", payee="openid-a")
    assert w.status == WithdrawalStatus.REQUESTED
    assert member_balance(tenant, alice, "withdrawing") == 100_001
    do_approve_withdrawal(p, w.pk)
    w.refresh_from_db()
    assert w.status == WithdrawalStatus.PAID
    assert [e.to_status for e in w.trail.order_by("pk")] == ["requested", "approved", "paid"]
    assert member_balance(tenant, alice, "paid_out") == 100_001
    assert sandbox().query(out_no=w.out_no).status == "success"

    # Alice takes out the rest, then Dan refunds: the paid-out commission becomes refund debt
    rest = member_balance(tenant, alice, "available")
    w2 = do_request_withdrawal(p, member_id=alice.pk, amount_fen=rest, idempotency_key="a-2", payee="openid-a")
    assert Withdrawal.objects.get(pk=w2.pk).status == WithdrawalStatus.PAID
    dan_c = Commission.objects.get(order_id=str(ev_dan.order_id))
    assert dan_c.state == CommissionState.WITHDRAWN and dan_c.withdrawn_fen == PARTNER * 80 // 100
    on_order_event(refund_event(ev_dan))
    assert Commission.objects.get(pk=dan_c.pk).state == CommissionState.CLAWED_BACK
    assert member_balance(tenant, alice, "available") == 0
    assert member_balance(tenant, alice, "clawback") == -PARTNER * 80 // 100

    # withdrawals are blocked while the balance is negative
    with pytest.raises(Conflict) as exc:
        do_request_withdrawal(p, member_id=alice.pk, amount_fen=100, idempotency_key="a-3")
    assert exc.value.code == "negative_balance"

    # future earnings net against the debt first
    erin = MemberFactory(tenant=tenant, display_name="伊琳")
    on_order_event(paid_event(tenant, erin, [order_line("entry", ENTRY)], code=link.code))
    assert member_balance(tenant, alice, "available") == 0
    assert member_balance(tenant, alice, "clawback") == -PARTNER * 80 // 100 + ENTRY

    report = check_ledger(tenant.pk)
    assert report.ok, report


def test_withdrawal_rules(tenant, seed):
    p, comm, _plan, _w = seed
    ReferralPolicy.objects.filter(tenant=tenant).update(
        withdrawal_min_fen=500, withdrawal_fee_fixed_fen=100, withdrawal_daily_cap_fen=3000,
        withdrawal_approval_above_fen=100_000)
    alice = MemberFactory(tenant=tenant, display_name="阿丽")
    link = do_get_or_create_link(p, member_id=alice.pk, community_id=comm.pk)
    for i in range(3):
        on_order_event(paid_event(tenant, MemberFactory(tenant=tenant, display_name=f"买家{i}"),
                                  [order_line("entry", ENTRY)], code=link.code))
    assert member_balance(tenant, alice, "available") == 3 * ENTRY

    with pytest.raises(Invalid) as exc:
        do_request_withdrawal(p, member_id=alice.pk, amount_fen=499, idempotency_key="min")
    assert exc.value.code == "below_minimum"
    w = do_request_withdrawal(p, member_id=alice.pk, amount_fen=2000, idempotency_key="w1", payee="x")
    assert w.fee_fen == 100 and Withdrawal.objects.get(pk=w.pk).status == WithdrawalStatus.PAID
    assert member_balance(tenant, alice, "paid_out") == 1900
    # same key again: the same withdrawal, no second debit
    assert do_request_withdrawal(p, member_id=alice.pk, amount_fen=2000, idempotency_key="w1").pk == w.pk
    with pytest.raises(Invalid) as exc:
        do_request_withdrawal(p, member_id=alice.pk, amount_fen=1500, idempotency_key="w2")
    assert exc.value.code == "daily_cap"
    # a failed payout is reversed back to available
    failed = do_request_withdrawal(p, member_id=alice.pk, amount_fen=1000, idempotency_key="w3", payee="fail")
    failed.refresh_from_db()
    assert failed.status == WithdrawalStatus.REVERSED
    assert [e.to_status for e in failed.trail.order_by("pk")] == ["requested", "approved", "failed", "reversed"]
    assert member_balance(tenant, alice, "available") == 3 * ENTRY - 2000
    assert check_ledger(tenant.pk).ok


def test_overdraft_request_is_refused(tenant, seed):
    p, comm, _plan, _w = seed
    alice = MemberFactory(tenant=tenant, display_name="阿丽")
    link = do_get_or_create_link(p, member_id=alice.pk, community_id=comm.pk)
    on_order_event(paid_event(tenant, MemberFactory(tenant=tenant, display_name="买家"), [order_line("entry", ENTRY)],
                              code=link.code))
    with pytest.raises(Conflict) as exc:
        do_request_withdrawal(p, member_id=alice.pk, amount_fen=ENTRY + 1, idempotency_key="big")
    assert exc.value.code == "insufficient_funds"
    assert not Withdrawal.objects.exists()
