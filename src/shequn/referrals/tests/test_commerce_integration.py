"""End to end with commerce's real order events."""

from __future__ import annotations

from shequn.commerce import events as commerce_events
from shequn.commerce import services as commerce
from shequn.ledger.services import check_ledger
from shequn.referrals.services import do_create_plan, do_get_or_create_link
from shequn.testing.factories import CommunityFactory, MemberFactory
from shequn.testing.scenarios import member_balance


def test_paid_and_refunded_orders_through_commerce(tenant, system):
    assert "referrals" in commerce_events.listeners()  # registered by ReferralsConfig.ready
    comm = CommunityFactory(tenant=tenant, name="入门社群")
    entry, partner = commerce.do_seed_tiers(system, comm.pk)[:2]
    do_create_plan(system, name="社群2.0", refund_window_days=0, rules=[
        {"product_kind": "tier", "product_id": str(entry.pk), "rate_bps": 10000},
        {"product_kind": "tier", "product_id": str(partner.pk), "rate_bps": 8000}])
    alice, bob = (MemberFactory(tenant=tenant, display_name=n) for n in ("阿丽", "小波"))
    link = do_get_or_create_link(system, member_id=alice.pk, community_id=comm.pk)
    sku = entry.skus.first()
    order = commerce.do_create_order(system, member_id=bob.pk, lines=[{"sku_id": sku.pk, "quantity": 1}],
                                     attribution={"invite_code": link.code, "community_id": comm.pk})
    payment = commerce.do_start_payment(system, order.pk)
    commerce.do_sandbox_pay(payment.out_trade_no)
    commerce.do_sandbox_pay(payment.out_trade_no)  # the provider's callback delivered twice
    assert member_balance(tenant, alice, "available") == sku.price_fen
    refund = commerce.do_request_refund(system, order.pk, amount_fen=sku.price_fen, idempotency_key="r1")
    commerce.do_complete_refund(refund.pk, status="succeeded")
    assert member_balance(tenant, alice, "available") == 0
    assert check_ledger(tenant.pk).ok
