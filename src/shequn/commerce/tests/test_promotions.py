from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from shequn.commerce import events, selectors, services
from shequn.commerce.models import Coupon, GroupBuyTeam, Order, OrderEvent, Refund, Sku, TierGrant
from shequn.communities.models import Membership
from shequn.core.errors import Conflict, Invalid, NotFound

from .conftest import make_member, pay, sku, window

# --- group buys ----------------------------------------------------------------------------------

def _group_buy(system, product, size=3, reward=None):
    start, end = window(minutes_after=600)
    return services.do_create_group_buy(system, name="三人团", sku_id=sku(product).pk, price_fen=6600,
                                        team_size=size, starts_at=start, ends_at=end, time_limit_minutes=60,
                                        leader_reward_template_id=reward)


def _template(system, **kw):
    start, end = window(minutes_after=60 * 24)
    defaults = {"name": "券", "kind": "fixed", "amount_fen": 1000, "valid_from": start, "valid_until": end}
    return services.do_create_coupon_template(system, **{**defaults, **kw})


def test_team_succeeds_when_full_and_leader_rewarded(system, product, tenant):
    reward = _template(system, name="团长券")
    gb = _group_buy(system, product, reward=reward.pk)
    leader, a, b = (make_member(tenant, n) for n in ("团长", "a", "b"))
    team, lo = services.do_start_team(system, gb.pk, member_id=leader.pk)
    assert lo.total_fen == 6600
    oa = services.do_join_team(system, team.share_token, member_id=a.pk)
    assert oa.attribution["referrer_member_id"] == leader.pk
    with pytest.raises(Conflict):
        services.do_join_team(system, team.share_token, member_id=a.pk)
    ob = services.do_join_team(system, team.share_token, member_id=b.pk)
    with pytest.raises(Conflict) as exc:
        services.do_join_team(system, team.share_token, member_id=make_member(tenant, "c").pk)
    assert exc.value.code == "team_full"
    for o in (lo, oa, ob):
        pay(system, o.pk)
    team.refresh_from_db()
    assert team.status == "succeeded" and team.leader_rewarded
    assert Coupon.objects.filter(owner=leader, template=reward, status="available").count() == 1


def test_group_buy_failure_refunds_everyone_exactly_once(system, product, tenant):
    gb = _group_buy(system, product, size=4)
    leader, a, b = (make_member(tenant, n) for n in ("团长", "a", "b"))
    team, lo = services.do_start_team(system, gb.pk, member_id=leader.pk)
    oa = services.do_join_team(system, team.share_token, member_id=a.pk)
    ob = services.do_join_team(system, team.share_token, member_id=b.pk)  # never pays
    pay(system, lo.pk)
    pay(system, oa.pk)
    stock_before = Sku.objects.get(pk=sku(product).pk).stock
    later = timezone.now() + dt.timedelta(hours=2)
    assert services.do_fail_expired_teams(now=later) == 1
    assert services.do_fail_expired_teams(now=later) == 0  # a second run does nothing
    services.do_retry_pending_refunds()
    team.refresh_from_db()
    assert team.status == "failed"
    for o in (lo, oa):
        o.refresh_from_db()
        assert o.status == "refunded" and o.refunded_fen == 6600
        assert Refund.objects.filter(order=o).count() == 1
        assert OrderEvent.objects.filter(order=o, kind="refunded").count() == 1
    ob.refresh_from_db()
    assert ob.status == "cancelled"
    assert Sku.objects.get(pk=sku(product).pk).stock == stock_before + 3
    # a payment for the unpaid member arriving after the failure is refunded too
    # (the order was cancelled; its stock was released)
    assert services.reconcile(tenant.pk) == []


def test_join_expired_team_refused(system, product, tenant):
    gb = _group_buy(system, product)
    team, _ = services.do_start_team(system, gb.pk, member_id=make_member(tenant).pk)
    GroupBuyTeam.objects.filter(pk=team.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    with pytest.raises(Conflict):
        services.do_join_team(system, team.share_token, member_id=make_member(tenant, "x").pk)
    with pytest.raises(NotFound):
        services.do_join_team(system, "nope", member_id=make_member(tenant, "y").pk)


# --- coupons -------------------------------------------------------------------------------------

def test_coupon_kinds_and_stacking(system, product, member):
    s = sku(product)  # 9900
    fixed = _template(system, name="立减10元", amount_fen=1000, stackable=True)
    pct = _template(system, name="九折", kind="percent", percent_off=10, stackable=True)
    thr = _template(system, name="满100减20", kind="threshold", amount_fen=2000, threshold_fen=10000)
    c1 = services.do_claim_coupon(system, fixed.pk, member_id=member.pk)
    c2 = services.do_claim_coupon(system, pct.pk, member_id=member.pk)
    c3 = services.do_claim_coupon(system, thr.pk, member_id=member.pk)
    with pytest.raises(Conflict):
        services.do_claim_coupon(system, fixed.pk, member_id=member.pk)  # per-member limit 1
    with pytest.raises(Invalid):  # 9900 < 10000 threshold
        services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": s.pk, "quantity": 1}],
                                 coupon_ids=[c3.pk])
    with pytest.raises(Invalid):  # threshold coupon is not stackable
        services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": s.pk, "quantity": 2}],
                                 coupon_ids=[c1.pk, c3.pk])
    o = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": s.pk, "quantity": 2}],
                                 coupon_ids=[c1.pk, c2.pk])
    # 19800 - 1000 = 18800; then 10% of 18800 = 1880
    assert o.discount_fen == 2880 and o.total_fen == 16920
    assert sum(o.lines.values_list("amount_fen", flat=True)) == 16920
    with pytest.raises(Conflict):
        services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": s.pk, "quantity": 1}],
                                 coupon_ids=[c1.pk])
    services.do_cancel_order(system, o.pk)
    assert Coupon.objects.get(pk=c1.pk).status == "available"  # given back with the stock


def test_expired_coupon_refused(system, product, member):
    t = _template(system)
    c = services.do_claim_coupon(system, t.pk, member_id=member.pk)
    t.valid_until = timezone.now() - dt.timedelta(seconds=1)
    t.save()
    with pytest.raises(Invalid):
        services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}],
                                 coupon_ids=[c.pk])
    assert Order.objects.count() == 0


def test_buy_one_give_one_attributes_friend_to_giver(system, product, member, friend, tenant):
    gift = _template(system, name="送好友一张", kind="fixed", amount_fen=9900, is_share=True,
                     new_customers_only=True)
    product.gift_coupon_template = gift
    product.save()
    o = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    pay(system, o.pk)
    share = Coupon.objects.get(source_order=o)
    assert share.status == "unclaimed" and share.giver_id == member.pk and share.share_token
    with pytest.raises(Invalid):
        services.do_claim_share_coupon(system, share.share_token, member_id=member.pk)  # not to oneself
    received = []
    events.register_order_listener("t", received.append)
    try:
        c = services.do_claim_share_coupon(system, share.share_token, member_id=friend.pk)
        with pytest.raises(Conflict):
            services.do_claim_share_coupon(system, share.share_token, member_id=make_member(tenant, "z").pk)
        fo = services.do_create_order(system, member_id=friend.pk,
                                      lines=[{"sku_id": sku(product).pk, "quantity": 1}], coupon_ids=[c.pk])
        assert fo.attribution["referrer_member_id"] == member.pk
        assert fo.total_fen == 0 and fo.status == "paid"  # fully covered by the gift
    finally:
        events.unregister_order_listener("t")
    assert received[-1].attribution["referrer_member_id"] == member.pk


def test_share_coupon_new_customers_only(system, product, member, friend):
    gift = _template(system, name="新客券", kind="fixed", amount_fen=100, is_share=True, new_customers_only=True)
    product.gift_coupon_template = gift
    product.save()
    o = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    pay(system, o.pk)
    f = services.do_create_order(system, member_id=friend.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    pay(system, f.pk)  # the friend is an existing customer now
    share = Coupon.objects.get(source_order=o)
    with pytest.raises(Invalid) as exc:
        services.do_claim_share_coupon(system, share.share_token, member_id=friend.pk)
    assert exc.value.code == "not_new_customer"


# --- paid tiers ----------------------------------------------------------------------------------

def test_tier_purchase_grants_membership_renews_and_refund_revokes(system, community, member):
    entry, partner = services.do_seed_tiers(system, community.pk)
    assert entry.skus.get().price_fen == 1990 and partner.skus.get().price_fen == 199900
    assert services.do_seed_tiers(system, community.pk)[0].pk == entry.pk  # idempotent
    o = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": partner.skus.get().pk,
                                                                      "quantity": 1}])
    received = []
    events.register_order_listener("t", received.append)
    try:
        pay(system, o.pk)
    finally:
        events.unregister_order_listener("t")
    assert received[0].lines[0]["product_kind"] == "tier"
    g1 = TierGrant.objects.get(order=o)
    assert g1.privileges["may_create_groups"] is True
    m = Membership.objects.get(member=member, community=community, left_at__isnull=True)
    assert m.join_source == "purchase"
    # renewal starts when the current period ends
    o2 = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": partner.skus.get().pk,
                                                                       "quantity": 1}])
    pay(system, o2.pk)
    g2 = TierGrant.objects.get(order=o2)
    assert g2.starts_at == g1.expires_at
    # refunding the renewal keeps the membership (the first grant still holds it)
    services.do_request_refund(system, o2.pk, amount_fen=199900, idempotency_key="t1")
    assert TierGrant.objects.get(pk=g2.pk).status == "revoked"
    assert Membership.objects.filter(member=member, community=community, left_at__isnull=True).exists()
    services.do_request_refund(system, o.pk, amount_fen=199900, idempotency_key="t2")
    assert not Membership.objects.filter(member=member, community=community, left_at__isnull=True).exists()
    assert TierGrant.objects.filter(member=member).count() == 2  # history kept


def test_tier_member_price_and_expiry(system, community, member, product):
    entry, _partner = services.do_seed_tiers(system, community.pk)
    services.do_set_member_price(system, sku(product).pk, price_fen=7000, tier_product_id=entry.pk)
    o = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": entry.skus.get().pk,
                                                                      "quantity": 1}])
    pay(system, o.pk)
    o2 = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    assert o2.total_fen == 7000
    assert services.do_expire_tiers(now=timezone.now() + dt.timedelta(days=400)) == 1
    assert not Membership.objects.filter(member=member, community=community, left_at__isnull=True).exists()


# --- live sessions -------------------------------------------------------------------------------

def test_live_session_attribution(system, community, member, product):
    live = services.do_create_live_session(system, title="周五直播", starts_at=timezone.now(),
                                           community_id=community.pk, host_name="主播小王")
    services.do_record_live_join(system, live.pk, member.pk)
    assert Membership.objects.get(member=member, community=community).join_source == "live"
    o = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}],
                                 attribution={"live_session_id": live.pk})
    pay(system, o.pk)
    [row] = selectors.live_session_stats(system.tenant_id)
    assert row["joins"] == 1 and row["paid_orders"] == 1 and row["gmv_fen"] == 9900
    with pytest.raises(NotFound):
        services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}],
                                 attribution={"live_session_id": 99999})
    with pytest.raises(Invalid):
        services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}],
                                 attribution={"bogus": 1})
