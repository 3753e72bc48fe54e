from __future__ import annotations

import pytest
from django.test import Client

from shequn.core.permissions import Principal
from shequn.core.services import do_create_operator
from shequn.ledger.models import Transaction
from shequn.referrals.models import FraudSignal, ReferralPolicy, Withdrawal, WithdrawalStatus
from shequn.referrals.services import do_create_plan, do_get_or_create_link, do_request_withdrawal, on_order_event
from shequn.testing.factories import MemberFactory, order_line, paid_event
from shequn.testing.scenarios import member_balance

PAGES = ["referrals/referralpolicy", "referrals/invitelink", "referrals/referralbinding", "referrals/commissionplan",
         "referrals/commission", "referrals/withdrawal", "referrals/fraudsignal", "referrals/fissiontask",
         "ledger/account", "ledger/transaction"]


@pytest.fixture
def console(tenant):
    def login(role):
        do_create_operator(tenant=tenant, username=f"u-{role}", password="pw-123456789", role=role)
        c = Client()
        assert c.login(username=f"u-{role}", password="pw-123456789")
        return c
    return login


@pytest.fixture
def money(tenant):
    p = Principal.system(tenant.pk)
    do_create_plan(p, name="入门", refund_window_days=0, rules=[{"product_kind": "tier", "rate_bps": 10000}])
    a = MemberFactory(tenant=tenant, display_name="阿丽", phone="13800000000")
    link = do_get_or_create_link(p, member_id=a.pk)
    on_order_event(paid_event(tenant, MemberFactory(tenant=tenant, display_name="X", phone="13800000000"),
                              [order_line("entry", 1990)], code=link.code))
    return a


def test_pages_render_for_owner(console, money):
    c = console("owner")
    for page in PAGES:
        r = c.get(f"/console/{page}/")
        assert r.status_code == 200, page


def test_finance_pages_hidden_from_readonly_staff(console, money):
    c = console("readonly")
    assert c.get("/console/referrals/commission/").status_code == 200
    assert c.get("/console/referrals/withdrawal/").status_code == 403
    assert c.get("/console/ledger/transaction/").status_code == 403


def test_operator_cannot_approve_withdrawals(tenant, console, money):
    ReferralPolicy.objects.filter(tenant=tenant).update(withdrawal_approval_above_fen=100)
    w = do_request_withdrawal(Principal.system(tenant.pk), member_id=money.pk, amount_fen=1500, idempotency_key="k",
                              payee="o")
    c = console("operator")
    c.post("/console/referrals/withdrawal/", {"action": "approve", "_selected_action": [w.pk]})
    assert Withdrawal.objects.get(pk=w.pk).status == WithdrawalStatus.REQUESTED


def test_withdrawal_approval_action_and_fraud_review(tenant, console, money):
    ReferralPolicy.objects.filter(tenant=tenant).update(withdrawal_approval_above_fen=100)
    w = do_request_withdrawal(Principal.system(tenant.pk), member_id=money.pk, amount_fen=1500, idempotency_key="k",
                              payee="o")
    assert w.status == WithdrawalStatus.REQUESTED
    c = console("finance")
    r = c.post("/console/referrals/withdrawal/", {"action": "approve", "_selected_action": [w.pk]})
    assert r.status_code == 302
    assert Withdrawal.objects.get(pk=w.pk).status == WithdrawalStatus.PAID
    assert member_balance(tenant, money, "paid_out") == 1500
    sig = FraudSignal.objects.first()
    assert sig is not None
    c2 = console("owner")
    c2.post("/console/referrals/fraudsignal/", {"action": "clear", "_selected_action": [sig.pk]})
    sig.refresh_from_db()
    assert sig.status == "cleared"


def test_ledger_rows_cannot_be_edited_in_the_console(console, money):
    c = console("owner")
    txn = Transaction.objects.first()
    r = c.post(f"/console/ledger/transaction/{txn.pk}/delete/", {"post": "yes"})
    assert r.status_code == 403
    assert Transaction.objects.filter(pk=txn.pk).exists()
