from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shequn.core.errors import Conflict
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.core.testing import race
from shequn.ledger.models import Transaction
from shequn.ledger.services import check_ledger
from shequn.referrals.models import Commission, CommissionState, ReferralPolicy, Withdrawal
from shequn.referrals.payouts import sandbox
from shequn.referrals.services import (
    do_create_plan,
    do_execute_payout,
    do_get_or_create_link,
    do_reconcile_withdrawals,
    do_request_withdrawal,
    do_thaw_due,
    on_order_event,
)
from shequn.testing.factories import MemberFactory, OrderEventData, order_line, paid_event, refund_event
from shequn.testing.scenarios import member_balance


def _plan(tenant, window=7, **kw):
    return do_create_plan(Principal.system(tenant.pk), name="p", refund_window_days=window,
                          rules=[{"product_kind": "goods", "rate_bps": 1000},
                                 {"product_id": "vip", "mode": "fixed", "fixed_fen": 500}], **kw)[0]


def test_frozen_until_refund_window_then_available(tenant):
    _plan(tenant, window=7)
    a, x = (MemberFactory(tenant=tenant, display_name=n) for n in ("A", "X"))
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    t0 = timezone.now()
    on_order_event(paid_event(tenant, x, [order_line("g", 10000, "goods"), order_line("vip", 3000, "tier", qty=2)],
                              code=link.code, at=t0))
    assert member_balance(tenant, a, "commission_pending") == 1000 + 1000
    assert do_thaw_due(now=t0 + timedelta(days=6)) == 0
    assert do_thaw_due(now=t0 + timedelta(days=7, seconds=1)) == 2
    assert do_thaw_due(now=t0 + timedelta(days=8)) == 0  # retried task: nothing more
    assert member_balance(tenant, a, "available") == 2000 and member_balance(tenant, a, "commission_pending") == 0


def test_refund_before_thaw_voids_and_partial_refund_is_proportional(tenant):
    _plan(tenant, window=7)
    a = MemberFactory(tenant=tenant, display_name="A")
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    ev = paid_event(tenant, MemberFactory(tenant=tenant, display_name="X"),
                    [order_line("g", 10000, "goods", line_id="l1"), order_line("g2", 5000, "goods",
                                                                                           line_id="l2")],
                    code=link.code)
    on_order_event(ev)
    on_order_event(refund_event(ev, lines=[{"order_line_id": "l1", "amount_fen": 4000}], event_id="r1"))
    assert member_balance(tenant, a, "commission_pending") == 1500 - 400
    on_order_event(refund_event(ev, lines=[], event_id="r2"))  # full refund of the rest
    assert member_balance(tenant, a, "commission_pending") == 0
    assert set(Commission.objects.values_list("state", flat=True)) == {CommissionState.VOID}
    assert check_ledger(tenant.pk).ok


def test_self_purchase_and_caps(tenant):
    p = Principal.system(tenant.pk)
    do_create_plan(p, name="p", refund_window_days=0, self_purchase=True, cap_per_order_fen=1200,
                   rules=[{"product_kind": "goods", "rate_bps": 1000, "cap_fen": 800}])
    a = MemberFactory(tenant=tenant, display_name="A")
    link = do_get_or_create_link(p, member_id=a.pk)
    on_order_event(paid_event(tenant, a, [order_line("g", 10000, "goods"), order_line("h", 10000, "goods")],
                              code=link.code))
    # each line capped at 8.00, the order at 12.00; the buyer earns on their own purchase
    assert member_balance(tenant, a, "available") == 1200


def test_no_self_purchase_by_default(tenant):
    _plan(tenant, window=0)
    a = MemberFactory(tenant=tenant, display_name="A")
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    on_order_event(paid_event(tenant, a, [order_line("g", 10000, "goods")], code=link.code))
    assert not Commission.objects.exists()


def test_retried_payout_task_pays_once(tenant):
    _plan(tenant, window=0)
    ReferralPolicy.objects.update_or_create(tenant=tenant, defaults={"withdrawal_approval_above_fen": 10**9})
    a = MemberFactory(tenant=tenant, display_name="A")
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    on_order_event(paid_event(tenant, MemberFactory(tenant=tenant, display_name="X"),
                              [order_line("g", 50000, "goods")], code=link.code))
    w = do_request_withdrawal(Principal.system(tenant.pk), member_id=a.pk, amount_fen=3000, idempotency_key="k",
                              payee="o")
    for _ in range(3):
        do_execute_payout(tenant.pk, w.pk)
    assert member_balance(tenant, a, "paid_out") == 3000
    assert Transaction.objects.filter(tenant=tenant, kind="withdrawal.paid").count() == 1


def test_reconcile_books_a_slow_payout_once(tenant):
    _plan(tenant, window=0)
    a = MemberFactory(tenant=tenant, display_name="A")
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    on_order_event(paid_event(tenant, MemberFactory(tenant=tenant, display_name="X"),
                              [order_line("g", 50000, "goods")], code=link.code))
    w = do_request_withdrawal(Principal.system(tenant.pk), member_id=a.pk, amount_fen=3000, idempotency_key="k",
                              payee="slow")
    w.refresh_from_db()
    assert w.status == "processing"
    assert do_reconcile_withdrawals(tenant.pk) == 0
    sandbox().settle(w.out_no)
    assert do_reconcile_withdrawals(tenant.pk) == 1
    assert do_reconcile_withdrawals(tenant.pk) == 0
    assert member_balance(tenant, a, "paid_out") == 3000 and member_balance(tenant, a, "withdrawing") == 0


# --- properties ----------------------------------------------------------------------------------

_actions = st.lists(
    st.one_of(
        st.tuples(st.just("pay"), st.integers(0, 3), st.integers(100, 20000)),
        st.tuples(st.just("refund"), st.integers(0, 30), st.integers(0, 1)),
        st.tuples(st.just("withdraw"), st.integers(0, 3), st.integers(100, 30000)),
        st.tuples(st.just("replay"), st.integers(0, 30), st.just(0)),
        st.tuples(st.just("thaw"), st.just(0), st.integers(0, 10)),
    ),
    min_size=1, max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=_actions, window=st.sampled_from([0, 3]))
def test_property_books_balance_and_available_never_negative(tenant, actions, window):
    """Any interleaving of payments, (replayed) refunds, withdrawals and thaws keeps every transaction
    balanced, cached == derived balances, and available/pending/withdrawing >= 0."""
    with transaction.atomic():
        p = Principal.system(tenant.pk)
        do_create_plan(p, name="p", refund_window_days=window, rules=[{"rate_bps": 5000}])
        ReferralPolicy.objects.update_or_create(tenant=tenant, defaults={"withdrawal_min_fen": 100})
        refs = [MemberFactory(tenant=tenant, display_name=f"R{i}") for i in range(4)]
        links = [do_get_or_create_link(p, member_id=r.pk) for r in refs]
        events = []
        clock = timezone.now()
        for n, (kind, i, amount) in enumerate(actions):
            clock += timedelta(hours=1)
            if kind == "pay":
                ev = paid_event(tenant, MemberFactory(tenant=tenant, display_name=f"B{n}"),
                                [order_line("g", amount, "goods")], code=links[i].code, at=clock)
                on_order_event(ev)
                events.append(ev)
            elif kind == "refund" and events:
                ev = events[i % len(events)]
                on_order_event(refund_event(ev, event_id=f"rf-{ev.order_id}-{amount}", at=clock))
            elif kind == "replay" and events:
                on_order_event(events[i % len(events)])
            elif kind == "withdraw":
                with contextlib.suppress(Conflict):
                    do_request_withdrawal(p, member_id=refs[i].pk, amount_fen=amount, idempotency_key=f"w{n}",
                                          payee="o", now=clock)
            elif kind == "thaw":
                do_thaw_due(now=clock + timedelta(days=amount))
        report = check_ledger(tenant.pk)
        assert report.ok, report
        assert Commission.objects.filter(tenant=tenant).count() <= len(events)
        for r in refs:
            for k in ("available", "commission_pending", "withdrawing", "paid_out"):
                assert member_balance(tenant, r, k) >= 0
            assert member_balance(tenant, r, "clawback") <= 0
        transaction.set_rollback(True)


# --- PostgreSQL concurrency -----------------------------------------------------------------------

MAX_THREADS = 20


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_100_concurrent_withdrawal_requests_never_overdraw():
    tenant = Tenant.objects.create(slug="wd", name="提现")
    p = Principal.system(tenant.pk)
    do_create_plan(p, name="p", refund_window_days=0, rules=[{"rate_bps": 10000}])
    ReferralPolicy.objects.update_or_create(tenant=tenant, defaults={
        "withdrawal_approval_above_fen": 10**9, "withdrawal_daily_cap_fen": 10**9, "withdrawal_min_fen": 100})
    a = MemberFactory(tenant=tenant, display_name="A")
    link = do_get_or_create_link(p, member_id=a.pk)
    on_order_event(paid_event(tenant, MemberFactory(tenant=tenant, display_name="X"),
                              [order_line("g", 4250, "goods")], code=link.code))
    assert member_balance(tenant, a, "available") == 4250

    results = race(lambda i: do_request_withdrawal(p, member_id=a.pk, amount_fen=100, idempotency_key=f"k{i}",
                                                   payee="o"), 100)
    ok = [r for r in results if isinstance(r, Withdrawal)]
    refused = [r for r in results if isinstance(r, Conflict) and r.code == "insufficient_funds"]
    assert len(ok) == 42 and len(refused) == 58, [r for r in results if not isinstance(r, (Withdrawal, Conflict))]
    assert member_balance(tenant, a, "available") == 50
    assert member_balance(tenant, a, "paid_out") == 4200
    assert check_ledger(tenant.pk).ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_of_a_paid_event_credit_once():
    tenant = Tenant.objects.create(slug="rp", name="重放")
    p = Principal.system(tenant.pk)
    do_create_plan(p, name="p", refund_window_days=0, rules=[{"rate_bps": 10000}])
    a = MemberFactory(tenant=tenant, display_name="A")
    link = do_get_or_create_link(p, member_id=a.pk)
    ev = paid_event(tenant, MemberFactory(tenant=tenant, display_name="X"), [order_line("entry", 1990)], code=link.code)
    errors = [r for r in race(lambda _i: on_order_event(ev), 10) if isinstance(r, Exception)]
    assert not errors
    assert member_balance(tenant, a, "available") == 1990
    assert Commission.objects.filter(tenant=tenant).count() == 1
    assert check_ledger(tenant.pk).ok


def test_commerce_payload_variants_are_accepted(tenant):
    """commerce sends int event ids, member_id 0 when unknown, None attribution values and may send
    occurred_at None."""
    _plan(tenant, window=0)
    a, x = (MemberFactory(tenant=tenant, display_name=n) for n in ("A", "X"))
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    attribution = {"community_id": None, "group_id": None, "invite_code": link.code, "referrer_member_id": None,
                   "live_session_id": None, "campaign": None}
    ev = OrderEventData(tenant_id=tenant.pk, event_id=9001, kind="paid", order_id=77, member_id=x.pk,
                        amount_fen=10000, lines=[order_line("g", 10000, "goods")], attribution=attribution,
                        occurred_at=None)
    on_order_event(ev)
    on_order_event(OrderEventData(tenant_id=tenant.pk, event_id=9002, kind="paid", order_id=78, member_id=0,
                                  amount_fen=1, lines=[], attribution=attribution, occurred_at=None))
    assert member_balance(tenant, a, "available") == 1000
