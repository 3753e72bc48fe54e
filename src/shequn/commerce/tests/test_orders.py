from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from shequn.activity.models import ActivityEvent
from shequn.commerce import demo, events, services
from shequn.commerce.gateways import BadSignature, SandboxGateway
from shequn.commerce.models import Order, OrderEvent, Payment, Refund, SandboxTransaction, Sku
from shequn.communities.models import Membership
from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.models import AuditLog, DeliveryFailure
from shequn.core.permissions import Principal

from .conftest import make_member, pay, sku


def test_create_order_prices_on_server_and_takes_stock(system, member, product):
    s = sku(product)
    order = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": s.pk, "quantity": 2,
                                                                          "price_fen": 1}])
    assert order.total_fen == 19800 and order.goods_fen == 19800
    assert Sku.objects.get(pk=s.pk).stock == 8
    assert AuditLog.objects.filter(action="commerce.order.create", object_id=str(order.pk)).exists()


@pytest.mark.parametrize(("lines", "field"), [
    ([], "lines"),
    ([{"sku_id": 1, "quantity": 0}], "lines[0].quantity"),
    ([{"sku_id": 1, "quantity": -3}], "lines[0].quantity"),
    ([{"sku_id": 1, "quantity": "2"}], "lines[0].quantity"),
    ([{"sku_id": 999999, "quantity": 1}], "lines[0].sku_id"),
])
def test_bad_lines_are_named_and_nothing_written(system, member, product, lines, field):
    lines = [dict(ln, sku_id=sku(product).pk) if ln.get("sku_id") == 1 else ln for ln in lines]
    with pytest.raises((Invalid, NotFound)) as exc:
        services.do_create_order(system, member_id=member.pk, lines=lines)
    assert exc.value.details["field"] == field
    assert Order.objects.count() == 0
    assert Sku.objects.get(pk=sku(product).pk).stock == 10


def test_shortage_on_second_line_writes_nothing(system, member, product):
    a, b = sku(product), sku(product, "XX-2")
    with pytest.raises(services.SoldOut) as exc:
        services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": a.pk, "quantity": 1},
                                                                     {"sku_id": b.pk, "quantity": 6}])
    assert exc.value.details["field"] == "lines[1].quantity"
    assert Order.objects.count() == 0
    assert Sku.objects.get(pk=a.pk).stock == 10


def test_other_tenants_sku_is_not_found(system, member, other_tenant):
    other = services.do_create_product(Principal.system(other_tenant.pk), services.NewProduct(
        name="x", skus=[{"code": "O1", "price_fen": 100, "stock": 5}]))
    with pytest.raises(NotFound):
        services.do_create_order(system, member_id=member.pk,
                                 lines=[{"sku_id": other.skus.get().pk, "quantity": 1}])


def test_idempotent_create(system, member, product):
    s = sku(product)
    a = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": s.pk, "quantity": 1}],
                                 idempotency_key="k1")
    b = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": s.pk, "quantity": 1}],
                                 idempotency_key="k1")
    assert a.pk == b.pk and Sku.objects.get(pk=s.pk).stock == 9
    with pytest.raises(Conflict):
        services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": s.pk, "quantity": 2}],
                                 idempotency_key="k1")


def test_member_price_by_level(system, product, tenant):
    s = sku(product)
    services.do_set_member_price(system, s.pk, price_fen=8000, min_relationship_level=2)
    fan = make_member(tenant, "铁粉", level=2)
    plain = make_member(tenant, "路人", level=0)
    assert services.do_create_order(system, member_id=fan.pk, lines=[{"sku_id": s.pk, "quantity": 1}]).total_fen == 8000
    assert services.do_create_order(system, member_id=plain.pk,
                                    lines=[{"sku_id": s.pk, "quantity": 1}]).total_fen == 9900


def test_visibility_per_community(system, member, community, tenant):
    p = services.do_create_product(system, services.NewProduct(name="群内专享", visible_in=[community.pk],
                                                               skus=[{"code": "V1", "price_fen": 100, "stock": 3}]))
    with pytest.raises(NotFound):
        services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": p.skus.get().pk, "quantity": 1}])
    Membership.objects.create(tenant=tenant, member=member, community=community, joined_at=timezone.now())
    assert services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": p.skus.get().pk, "quantity": 1}])


def test_pay_emits_event_with_attribution_and_activity(system, member, friend, product, community):
    received = []
    events.register_order_listener("test", received.append)
    try:
        order = services.do_create_order(
            system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}],
            attribution={"community_id": community.pk, "referrer_member_id": friend.pk, "campaign": "618"},
        )
        out = pay(system, order.pk)
    finally:
        events.unregister_order_listener("test")
    assert out["outcome"] == "paid"
    order.refresh_from_db()
    assert order.status == "paid" and order.paid_fen == 9900
    ev = OrderEvent.objects.get(order=order, kind="paid")
    [data] = received
    assert data.event_id == ev.pk and data.amount_fen == 9900 and data.member_id == member.pk
    assert data.attribution == {"community_id": community.pk, "group_id": None, "invite_code": None,
                                "referrer_member_id": friend.pk, "live_session_id": None, "campaign": "618"}
    assert data.lines[0]["product_kind"] == "goods" and data.lines[0]["amount_fen"] == 9900
    act = ActivityEvent.objects.get(platform="portal", platform_event_id=f"order-paid-{order.pk}")
    assert act.kind == "purchase" and act.member_id == member.pk


def test_failing_listener_is_recorded_and_retried_without_blocking_others(system, member, product):
    calls = {"bad": 0, "good": 0}

    def bad(e):
        calls["bad"] += 1
        if calls["bad"] == 1:
            raise RuntimeError("boom")

    def good(e):
        calls["good"] += 1

    events.register_order_listener("bad", bad)
    events.register_order_listener("good", good)
    try:
        order = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk,
                                                                              "quantity": 1}])
        pay(system, order.pk)
        assert calls == {"bad": 1, "good": 1}
        failed = DeliveryFailure.objects.get(subscriber="bad")
        assert failed.state == "pending" and "boom" in failed.error and failed.stream == "order_events"
        later = timezone.now() + dt.timedelta(hours=1)
        assert events.retry_failed(now=later) == 1
        assert calls == {"bad": 2, "good": 1}
        assert DeliveryFailure.objects.get(subscriber="bad").state == "resolved"
        assert events.retry_failed(now=later) == 0
    finally:
        events.unregister_order_listener("bad")
        events.unregister_order_listener("good")


def test_replayed_callback_books_once(system, member, product):
    order = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    p = services.do_start_payment(system, order.pk)
    headers, body = SandboxGateway().pay(p.out_trade_no, p.amount_fen)
    assert services.do_handle_notification("sandbox", headers, body)["outcome"] == "paid"
    assert services.do_handle_notification("sandbox", headers, body)["outcome"] == "duplicate"
    order.refresh_from_db()
    assert order.paid_fen == 9900
    assert OrderEvent.objects.filter(order=order, kind="paid").count() == 1


def test_forged_callback_rejected(system, member, product):
    order = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    p = services.do_start_payment(system, order.pk)
    headers, body = SandboxGateway.notification({"kind": "payment", "out_trade_no": p.out_trade_no,
                                                 "amount_fen": p.amount_fen, "status": "succeeded"})
    headers["X-Sandbox-Signature"] = "0" * 64
    with pytest.raises(BadSignature):
        services.do_handle_notification("sandbox", headers, body)
    # a genuinely signed notice whose body was tampered with in transit
    h2, b2 = SandboxGateway.notification({"kind": "payment", "out_trade_no": p.out_trade_no, "amount_fen": 9900,
                                          "status": "failed"})
    with pytest.raises(BadSignature):
        services.do_handle_notification("sandbox", h2, b2.replace(b"failed", b"succeeded"))
    with pytest.raises(BadSignature):
        services.do_handle_notification("sandbox", {}, body)
    order.refresh_from_db()
    assert order.status == "created" and Payment.objects.get(pk=p.pk).status == "pending"


def test_wrong_amount_in_callback_rejected(system, member, product):
    order = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    p = services.do_start_payment(system, order.pk)
    headers, body = SandboxGateway.notification({"kind": "payment", "out_trade_no": p.out_trade_no,
                                                 "amount_fen": 1, "status": "succeeded"})
    with pytest.raises(Invalid) as exc:
        services.do_handle_notification("sandbox", headers, body)
    assert exc.value.code == "amount_mismatch"
    order.refresh_from_db()
    assert order.status == "created" and order.paid_fen == 0


def test_failure_notice_after_success_is_ignored(system, member, product):
    order = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    p = services.do_start_payment(system, order.pk)
    services.do_sandbox_pay(p.out_trade_no)
    h, b = SandboxGateway.notification({"kind": "payment", "out_trade_no": p.out_trade_no,
                                        "amount_fen": p.amount_fen, "status": "closed"})
    assert services.do_handle_notification("sandbox", h, b)["outcome"] == "ignored"
    assert Payment.objects.get(pk=p.pk).status == "succeeded"


def test_refund_greater_than_paid_refused(system, member, product):
    order = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    pay(system, order.pk)
    with pytest.raises(Invalid) as exc:
        services.do_request_refund(system, order.pk, amount_fen=9901, idempotency_key="r1")
    assert exc.value.code == "refund_exceeds_paid"
    r = services.do_request_refund(system, order.pk, amount_fen=4000, idempotency_key="r2")
    assert r.status == "succeeded"
    order.refresh_from_db()
    assert order.status == "partially_refunded" and order.refunded_fen == 4000
    with pytest.raises(Invalid):
        services.do_request_refund(system, order.pk, amount_fen=5901, idempotency_key="r3")
    again = services.do_request_refund(system, order.pk, amount_fen=4000, idempotency_key="r2")
    assert again.pk == r.pk
    services.do_request_refund(system, order.pk, amount_fen=5900, idempotency_key="r4")
    order.refresh_from_db()
    assert order.status == "refunded" and order.refunded_fen == 9900
    assert Refund.objects.filter(order=order).count() == 2
    refunded = OrderEvent.objects.filter(order=order, kind="refunded").order_by("pk")
    assert [e.amount_fen for e in refunded] == [4000, 5900]


def test_refund_unpaid_order_refused(system, member, product):
    order = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    with pytest.raises(Conflict):
        services.do_request_refund(system, order.pk, amount_fen=1, idempotency_key="x")
    with pytest.raises(Invalid):
        services.do_request_refund(system, order.pk, amount_fen=0, idempotency_key="x")


def test_expiry_releases_stock_and_late_payment_revives_or_refunds(system, member, product, tenant):
    s = sku(product, "XX-2")  # stock 5
    order = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": s.pk, "quantity": 5}])
    p = services.do_start_payment(system, order.pk)
    assert services.do_expire_orders(now=timezone.now() + dt.timedelta(hours=1)) == 1
    order.refresh_from_db()
    assert order.status == "cancelled" and Sku.objects.get(pk=s.pk).stock == 5
    assert OrderEvent.objects.filter(order=order, kind="cancelled").exists()
    # stock still there: the late payment revives the order
    assert services.do_sandbox_pay(p.out_trade_no)["outcome"] == "revived"
    order.refresh_from_db()
    assert order.status == "paid" and Sku.objects.get(pk=s.pk).stock == 0

    # second order expires, someone else takes the stock, the late payment is refunded automatically
    services.do_adjust_stock(system, s.pk, 1)
    o2 = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": s.pk, "quantity": 1}])
    p2 = services.do_start_payment(system, o2.pk)
    services.do_expire_orders(now=timezone.now() + dt.timedelta(hours=1))
    other = make_member(tenant, "王五")
    services.do_create_order(system, member_id=other.pk, lines=[{"sku_id": s.pk, "quantity": 1}])
    assert services.do_sandbox_pay(p2.out_trade_no)["outcome"] == "refunding"
    o2.refresh_from_db()
    assert o2.status == "cancelled" and o2.paid_fen == 0
    r = Refund.objects.get(payment_id=p2.pk)
    assert r.status == "succeeded" and r.amount_fen == p2.amount_fen
    assert Sku.objects.get(pk=s.pk).stock == 0
    assert services.reconcile(tenant.pk) == []


def test_state_machine_refuses_bad_transitions(system, member, product):
    order = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    with pytest.raises(Conflict):
        services.do_fulfil_order(system, order.pk)
    pay(system, order.pk)
    services.do_fulfil_order(system, order.pk)
    services.do_complete_order(system, order.pk)
    with pytest.raises(Conflict):
        services.do_cancel_order(system, order.pk)
    assert OrderEvent.objects.filter(order=order, kind="completed").count() == 1
    actions = list(AuditLog.objects.filter(object_type="Order", object_id=str(order.pk))
                   .values_list("action", flat=True))
    assert "commerce.order.paid" in actions and "commerce.order.fulfilled" in actions
    assert "commerce.order.completed" in actions


def test_reconcile_reports_differences(system, member, product, tenant):
    order = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    pay(system, order.pk)
    assert services.reconcile(tenant.pk) == []
    SandboxTransaction.objects.filter(kind="pay").update(amount_fen=1)
    diffs = services.reconcile(tenant.pk)
    assert [d.kind for d in diffs] == ["amount_mismatch"]


def test_demo_seed(system, community, tenant):
    members = [make_member(tenant, f"d{i}") for i in range(12)]
    out = demo.do_seed_demo_commerce(system, community_id=community.pk, member_ids=[m.pk for m in members],
                                     orders=12)
    assert out["paid_orders"] == 12
    assert Refund.objects.filter(tenant=tenant, status="succeeded").count() == 1
    assert services.reconcile(tenant.pk) == []
    assert demo.do_seed_demo_commerce(system, community_id=community.pk, member_ids=[]) == {"skipped": 1}
