"""Issue 12 bug 3: an order event a listener cannot apply must surface to staff as a dead letter with
the reason, never be retried silently forever (core.streams through commerce.events)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from shequn.commerce import events
from shequn.commerce import services as commerce
from shequn.commerce.models import Order, OrderEvent
from shequn.core import streams
from shequn.core.models import DeliveryFailure
from shequn.referrals.models import Commission, FissionTask, InviteLink
from shequn.referrals.services import do_create_plan
from shequn.testing.factories import CommunityFactory, MemberFactory
from shequn.testing.scenarios import member_balance


def _paid_order(system, tenant, buyer, attribution):
    comm = CommunityFactory(tenant=tenant, name="入门社群")
    entry = commerce.do_seed_tiers(system, comm.pk)[0]
    sku = entry.skus.first()
    order = commerce.do_create_order(system, member_id=buyer.pk, lines=[{"sku_id": sku.pk, "quantity": 1}],
                                     attribution={"community_id": comm.pk, **attribution})
    return order, sku, entry


def test_an_order_listener_that_always_fails_is_dead_lettered_with_the_reason(tenant, system):
    calls = []

    def broken(data):
        calls.append(data.event_id)
        raise ValueError(f"cannot apply order {data.order_id}: campaign too long")

    events.register_order_listener("t-broken", broken)
    try:
        buyer = MemberFactory(tenant=tenant, display_name="小波")
        order, _sku, _entry = _paid_order(system, tenant, buyer, {})
        payment = commerce.do_start_payment(system, order.pk)
        commerce.do_sandbox_pay(payment.out_trade_no)
        row = DeliveryFailure.objects.get(subscriber="t-broken")
        assert row.stream == "order_events" and row.state == "pending" and len(calls) == 1
        now = timezone.now()
        for _ in range(streams.MAX_ATTEMPTS + 3):
            now += dt.timedelta(days=1)
            events.retry_failed(now=now)
        row.refresh_from_db()
        assert row.state == "dead" and row.attempts == streams.MAX_ATTEMPTS
        assert len(calls) == streams.MAX_ATTEMPTS  # stopped: no silent retry forever
        assert f"cannot apply order {order.pk}: campaign too long" in row.error
        assert row.refs == [calls[0]]
        # the other listeners (referrals, activity) were not held back
        assert not DeliveryFailure.objects.exclude(subscriber="t-broken").exists()
    finally:
        events.unregister_order_listener("t-broken")


def test_listener_columns_fit_the_attribution_limits_of_the_order_event_contract():
    """commerce rejects longer attribution text at the order's entry (events.ATTRIBUTION_MAX_LENGTH);
    referrals must be able to store whatever is accepted."""
    limits = events.ATTRIBUTION_MAX_LENGTH
    for model in (Commission, FissionTask, InviteLink):
        assert model._meta.get_field("campaign").max_length >= limits["campaign"]
    assert Commission._meta.get_field("invite_code").max_length >= limits["invite_code"]


@pytest.mark.postgres
def test_an_over_long_campaign_already_on_an_order_becomes_a_visible_dead_letter(tenant, system):
    """An order accepted before the entry check existed: the referrals listener fails on its 64-char
    column (PostgreSQL enforces it); the failure is recorded with the reason and dead-lettered."""
    alice, bob = (MemberFactory(tenant=tenant, display_name=n) for n in ("阿丽", "小波"))
    order, sku, entry = _paid_order(system, tenant, bob, {"referrer_member_id": alice.pk})
    do_create_plan(system, name="社群2.0", refund_window_days=0,
                   rules=[{"product_kind": "tier", "product_id": str(entry.pk), "rate_bps": 10000}])
    attribution = dict(Order.objects.get(pk=order.pk).attribution)
    attribution["campaign"] = "c" * 100  # as stored by the old, unchecked entry
    Order.objects.filter(pk=order.pk).update(attribution=attribution)
    payment = commerce.do_start_payment(system, order.pk)
    commerce.do_sandbox_pay(payment.out_trade_no)
    row = DeliveryFailure.objects.get(subscriber="referrals")
    assert "too long" in row.error and row.state == "pending"
    assert member_balance(tenant, alice, "available") == 0
    now = timezone.now()
    for _ in range(streams.MAX_ATTEMPTS):
        now += dt.timedelta(days=1)
        events.retry_failed(now=now)
    row.refresh_from_db()
    assert row.state == "dead" and "too long" in row.error
    # staff fix the data and retry from the console: the referrer is credited
    attribution["campaign"] = "c" * 64
    Order.objects.filter(pk=order.pk).update(attribution=attribution)
    event = OrderEvent.objects.get(pk=row.refs[0])
    event.data = {**event.data, "attribution": attribution}
    event.save(update_fields=["data"])
    assert streams.retry(row)
    assert member_balance(tenant, alice, "available") == sku.price_fen
