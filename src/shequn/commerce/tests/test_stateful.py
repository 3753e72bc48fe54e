"""A hypothesis state machine over orders, payments, refunds and expiries.

Invariants after every step: stock is never negative and is conserved (what is on the shelf plus
what unreleased orders hold equals what was stocked); money in equals money recorded (the sandbox
provider's books equal our payments and refunds, each order's paid/refunded equal its applied
payments/refunds, refunded ≤ paid, unusable payments are refunded in full); reconciliation is clean."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from shequn.commerce import services
from shequn.commerce.gateways import SandboxGateway
from shequn.commerce.models import Order, OrderLine, Payment, Refund, SandboxTransaction, Sku
from shequn.core.errors import Conflict, Invalid
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.members.models import Member

_counter = itertools.count()
STOCK = (6, 3)


class Shop(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        n = next(_counter)
        self.tenant = Tenant.objects.create(slug=f"shop{n}", name=f"shop{n}")
        self.p = Principal.system(self.tenant.pk)
        prod = services.do_create_product(self.p, services.NewProduct(name="货", skus=[
            {"code": f"A{n}", "price_fen": 1234, "stock": STOCK[0]},
            {"code": f"B{n}", "price_fen": 99, "stock": STOCK[1]},
        ]))
        self.skus = list(prod.skus.order_by("pk"))
        self.members = [Member.objects.create(tenant=self.tenant, display_name=f"m{i}",
                                              first_seen_at=timezone.now()) for i in range(3)]
        self.orders: list[int] = []
        self.payments: list[str] = []
        self.keys = itertools.count()

    def _order(self, i):
        return self.orders[i % len(self.orders)] if self.orders else None

    @rule(m=st.integers(0, 2), s=st.integers(0, 1), q=st.integers(-1, 4))
    def create_order(self, m, s, q):
        try:
            o = services.do_create_order(self.p, member_id=self.members[m].pk,
                                         lines=[{"sku_id": self.skus[s].pk, "quantity": q}])
            assert q > 0
            self.orders.append(o.pk)
        except services.SoldOut:
            pass
        except Invalid:
            assert q <= 0

    @rule(i=st.integers(0, 50))
    def start_payment(self, i):
        oid = self._order(i)
        if oid is None:
            return
        try:
            pay = services.do_start_payment(self.p, oid)
            self.payments.append(pay.out_trade_no)
        except Conflict:
            assert Order.objects.get(pk=oid).status != "created" or Order.objects.get(pk=oid).expires_at
        except Exception:
            raise

    @rule(i=st.integers(0, 50), replay=st.booleans())
    def payer_pays(self, i, replay):
        if not self.payments:
            return
        no = self.payments[i % len(self.payments)]
        services.do_sandbox_pay(no)
        if replay:
            assert services.do_sandbox_pay(no)["outcome"] == "duplicate"

    @rule(i=st.integers(0, 50), delta=st.integers(-5, 5))
    def forged_amount(self, i, delta):
        if not self.payments or delta == 0:
            return
        pay = Payment.objects.get(out_trade_no=self.payments[i % len(self.payments)])
        h, b = SandboxGateway.notification({"kind": "payment", "out_trade_no": pay.out_trade_no,
                                            "amount_fen": max(0, pay.amount_fen + delta), "status": "succeeded"})
        with pytest.raises(Invalid):
            services.do_handle_notification("sandbox", h, b)

    @rule(i=st.integers(0, 50), amount=st.integers(-10, 3000))
    def refund(self, i, amount):
        oid = self._order(i)
        if oid is None:
            return
        o = Order.objects.get(pk=oid)
        pending = Refund.objects.filter(order=o, payment__applied=True, status__in=["pending", "succeeded"]) \
            .aggregate(s=Sum("amount_fen"))["s"] or 0
        refundable = o.paid_fen - pending
        try:
            services.do_request_refund(self.p, oid, amount_fen=amount, idempotency_key=f"k{next(self.keys)}")
            assert 0 < amount <= refundable
        except Invalid:
            assert amount <= 0 or amount > refundable
        except Conflict:
            assert o.status not in services.REFUNDABLE or refundable <= 0

    @rule(i=st.integers(0, 50))
    def cancel(self, i):
        oid = self._order(i)
        if oid is None:
            return
        try:
            services.do_cancel_order(self.p, oid, reason="t")
        except Conflict:
            assert Order.objects.get(pk=oid).status != "created"

    @rule()
    def time_passes(self):
        services.do_expire_orders(now=timezone.now() + dt.timedelta(hours=2))

    @rule(s=st.integers(0, 1))
    def restock(self, s):
        services.do_adjust_stock(self.p, self.skus[s].pk, 1)
        self.restocked = getattr(self, "restocked", [0, 0])
        self.restocked[s] += 1

    @invariant()
    def stock_is_never_negative_and_conserved(self):
        restocked = getattr(self, "restocked", [0, 0])
        for k, s in enumerate(self.skus):
            stock = Sku.objects.get(pk=s.pk).stock
            assert stock >= 0
            held = OrderLine.objects.filter(sku=s, order__stock_released=False).aggregate(q=Sum("quantity"))["q"] or 0
            assert stock + held == STOCK[k] + restocked[k]

    @invariant()
    def money_in_equals_money_recorded(self):
        pays = Payment.objects.filter(tenant=self.tenant)
        nos = list(pays.values_list("out_trade_no", flat=True))
        provider_in = SandboxTransaction.objects.filter(kind="pay", status="succeeded", out_trade_no__in=nos) \
            .aggregate(s=Sum("amount_fen"))["s"] or 0
        ours_in = pays.filter(status="succeeded").aggregate(s=Sum("amount_fen"))["s"] or 0
        assert provider_in == ours_in
        provider_out = SandboxTransaction.objects.filter(kind="refund", status="succeeded", out_trade_no__in=nos) \
            .aggregate(s=Sum("amount_fen"))["s"] or 0
        ours_out = Refund.objects.filter(tenant=self.tenant, status="succeeded") \
            .aggregate(s=Sum("amount_fen"))["s"] or 0
        assert provider_out == ours_out
        for o in Order.objects.filter(tenant=self.tenant):
            applied = o.payments.filter(applied=True, status="succeeded").aggregate(s=Sum("amount_fen"))["s"] or 0
            assert o.paid_fen == applied
            refunded = Refund.objects.filter(order=o, payment__applied=True, status="succeeded") \
                .aggregate(s=Sum("amount_fen"))["s"] or 0
            assert o.refunded_fen == refunded <= o.paid_fen
            if o.paid_fen:
                assert o.paid_fen == o.total_fen
        for p in pays.filter(status="succeeded", applied=False):
            back = p.refunds.filter(status="succeeded").aggregate(s=Sum("amount_fen"))["s"] or 0
            assert back == p.amount_fen
        assert services.reconcile(self.tenant.pk) == []


@pytest.mark.django_db
def test_orders_payments_refunds_state_machine():
    run_state_machine_as_test(
        Shop, settings=settings(max_examples=30, stateful_step_count=25, deadline=None,
                                suppress_health_check=list(HealthCheck)),
    )
