"""Members' pages through the Django test client: landing attribution, entry thresholds, the paid
loop (pay → commission → withdraw → refund reversal), and isolation (another member's ids are 404)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from shequn.commerce.models import Coupon, CouponTemplate, Order, OrderStatus
from shequn.commerce.services import do_request_refund
from shequn.communities.models import Community, JoinRequest, Membership
from shequn.communities.services import do_decide_join
from shequn.engagement.services import do_check_in, do_seed_streak_badges
from shequn.members.models import Member
from shequn.referrals.models import Commission, LinkEvent, ReferralBinding, Withdrawal
from shequn.referrals.services import do_get_or_create_link

from .world import ENTRY, PARTNER, World, build_world, last_code


def sign_in(client: Client, world: World, phone: str) -> Member:
    url = reverse("portal:login", args=[world.tenant.slug])
    client.post(url, {"phone": phone, "action": "send"})
    r = client.post(url, {"phone": phone, "action": "verify", "code": last_code(world.tenant)})
    assert r.status_code == 302, r.content.decode()[:500]
    return Member.objects.get(tenant=world.tenant, phone=phone)


def buy_tier(client: Client, world: World, tier) -> Order:
    sku = tier.skus.get()
    r = client.post(reverse("portal:buy", args=[world.tenant.slug, sku.pk]), {"token": f"t{sku.pk}"})
    assert r.status_code == 302, r
    order = Order.objects.order_by("-pk").first()
    assert r["Location"] == reverse("portal:order", args=[world.tenant.slug, order.pk])
    r = client.post(reverse("portal:pay", args=[world.tenant.slug, order.pk]))
    assert r.status_code == 302
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    return order


def my_link(client: Client, world: World) -> str:
    page = client.get(reverse("portal:invite", args=[world.tenant.slug])).content.decode()

    return re.search(r"/r/([a-z0-9]+)", page).group(1)


def test_landing_records_the_click_and_shows_the_paid_threshold_first(client, world):
    alice = Member.objects.create(tenant=world.tenant, display_name="阿丽", first_seen_at=world.community.created_at)
    link = do_get_or_create_link(world.system, member_id=alice.pk, community_id=world.community.pk)
    r = client.get(f"/r/{link.code}")
    assert r.status_code == 200
    html = r.content.decode()
    assert "阿丽" in html and "邀请你加入" in html and "不发广告" in html and "付费" in html
    assert "¥19.90" in html and "¥1,999.00" in html
    assert "matrix.to" not in html  # ways in only after the tier is paid
    click = LinkEvent.objects.get(link=link, kind="click")
    assert click.member_id is None and click.ip == "127.0.0.1"
    assert "shequn_ref" in r.cookies
    # signing in with the link remembered: the known member's click binds the referrer
    bob = sign_in(client, world, "13900000001")
    assert ReferralBinding.objects.get(member=bob).referrer_id == alice.pk
    assert LinkEvent.objects.filter(link=link, kind="click", member=bob).exists()
    assert client.get("/r/nope1234").status_code == 404


def test_free_threshold_shows_the_ways_in(client, tenant):
    world = build_world(tenant, threshold=Community.EntryThreshold.FREE)
    link = do_get_or_create_link(world.system, kind="channel", channel="门店收银台", community_id=world.community.pk)
    html = client.get(f"/r/{link.code}").content.decode()
    assert "https://matrix.to/#/#shequn-entry:example.org" in html


def test_approval_threshold_goes_through_the_operator(client, tenant):
    world = build_world(tenant, threshold=Community.EntryThreshold.APPROVAL)
    link = do_get_or_create_link(world.system, kind="channel", channel="展会", community_id=world.community.pk)
    client.get(f"/r/{link.code}")
    member = sign_in(client, world, "13900000002")
    page = reverse("portal:community", args=[tenant.slug, world.community.pk])
    assert "matrix.to" not in client.get(page).content.decode()
    client.post(reverse("portal:request_join", args=[tenant.slug, world.community.pk]), {"message": "我是车主"})
    req = JoinRequest.objects.get(member=member)
    assert req.status == "pending" and req.invite_code == link.code
    assert "审核中" in client.get(page).content.decode()
    do_decide_join(world.system, req.pk, approve=True, note="欢迎")
    assert Membership.objects.filter(member=member, community=world.community, left_at__isnull=True).exists()
    assert "matrix.to" in client.get(page).content.decode()
    assert "欢迎" in client.get(reverse("portal:home", args=[tenant.slug])).content.decode()


def test_the_paid_loop_and_isolation(world):
    a, b, c = Client(), Client(), Client()
    alice = sign_in(a, world, "13900000011")
    buy_tier(a, world, world.entry)
    order_page = a.get(reverse("portal:order", args=[world.tenant.slug, Order.objects.get(member=alice).pk]))
    assert "已开通" in order_page.content.decode() and "matrix.to" in order_page.content.decode()
    code_a = my_link(a, world)
    poster = a.get(reverse("portal:invite_poster", args=[world.tenant.slug, code_a]) + "?download=1")
    assert poster["Content-Type"] == "image/png" and poster.content[:4] == b"\x89PNG"

    b.get(f"/r/{code_a}")
    bob = sign_in(b, world, "13900000012")
    buy_tier(b, world, world.entry)
    earnings = a.get(reverse("portal:earnings", args=[world.tenant.slug])).content.decode()
    assert 'data-testid="available">¥19.90' in earnings

    r = a.post(reverse("portal:withdraw", args=[world.tenant.slug]), {"amount": "19.90", "token": "w1"})
    w = Withdrawal.objects.get(member=alice)
    assert r["Location"] == reverse("portal:withdrawal", args=[world.tenant.slug, w.pk])
    assert w.status == "paid" and w.amount_fen == ENTRY

    code_b = my_link(b, world)
    c.get(f"/r/{code_b}")
    carol = sign_in(c, world, "13900000013")
    c_order = buy_tier(c, world, world.partner)
    b_page = b.get(reverse("portal:earnings", args=[world.tenant.slug])).content.decode()
    assert 'data-testid="available">¥1,599.20' in b_page
    # one level only: Alice earns nothing on Carol
    assert not Commission.objects.filter(referrer=alice, buyer_id=carol.pk).exists()
    assert "¥1,599.20" not in a.get(reverse("portal:earnings", args=[world.tenant.slug])).content.decode()

    do_request_refund(world.system, c_order.pk, amount_fen=PARTNER, idempotency_key="op-refund")
    b_page = b.get(reverse("portal:earnings", args=[world.tenant.slug])).content.decode()
    assert 'data-testid="available">¥0.00' in b_page and "退款冲回 -¥1,599.20" in b_page

    # isolation: Bob cannot open Alice's order, withdrawal or poster by changing an id
    a_order = Order.objects.get(member=alice)
    slug = world.tenant.slug
    for url in (reverse("portal:order", args=[slug, a_order.pk]),
                reverse("portal:withdrawal", args=[slug, w.pk]),
                reverse("portal:invite_poster", args=[slug, code_a]),
                reverse("portal:invite_qr", args=[slug, code_a])):
        assert b.get(url).status_code == 404, url
    for url in (reverse("portal:pay", args=[slug, a_order.pk]), reverse("portal:refund", args=[slug, a_order.pk])):
        assert b.post(url).status_code == 404, url
    a_order.refresh_from_db()
    assert a_order.status == OrderStatus.PAID
    assert bob.pk != alice.pk


def test_refund_request_within_policy(client, world):
    member = sign_in(client, world, "13900000021")
    order = buy_tier(client, world, world.entry)
    html = client.get(reverse("portal:order", args=[world.tenant.slug, order.pk])).content.decode()
    assert "申请退款" in html
    client.post(reverse("portal:refund", args=[world.tenant.slug, order.pk]), {"token": "r1", "reason": "不想要了"})
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED and order.member_id == member.pk
    assert not Membership.objects.filter(member=member, community=world.community, left_at__isnull=True).exists()


@pytest.mark.parametrize("page", ["home", "invite", "earnings", "orders"])
def test_pages_need_a_member(client, world, page):
    url = reverse(f"portal:{page}", args=[world.tenant.slug])
    r = client.get(url)
    if page == "home":
        assert r.status_code == 200
    else:
        assert r.status_code == 302 and "/login/" in r["Location"]


def test_share_a_buy_one_give_one_coupon(world):
    a, b = Client(), Client()
    alice = sign_in(a, world, "13900000031")
    now = timezone.now()
    template = CouponTemplate.objects.create(tenant=world.tenant, name="买一赠一 立减 10 元", kind="amount",
                                             amount_fen=1000, valid_from=now, valid_until=now + dt.timedelta(days=7),
                                             is_share=True)
    Coupon.objects.create(tenant=world.tenant, template=template, giver=alice, share_token="gift-token-1",
                          status=Coupon.Status.UNCLAIMED)
    page = a.get(reverse("portal:coupons", args=[world.tenant.slug])).content.decode()
    assert "/portal/acme/coupons/share/gift-token-1/" in page
    # Alice cannot claim her own gift; Bob can, once
    url = reverse("portal:share_coupon", args=[world.tenant.slug, "gift-token-1"])
    a.post(url)
    assert Coupon.objects.get(share_token="gift-token-1").owner_id is None
    bob = sign_in(b, world, "13900000032")
    assert b.post(url).status_code == 302
    c = Coupon.objects.get(share_token="gift-token-1")
    assert c.owner_id == bob.pk and c.status == Coupon.Status.AVAILABLE
    assert "买一赠一 立减 10 元" in b.get(reverse("portal:coupons", args=[world.tenant.slug])).content.decode()
    assert b.get(reverse("portal:share_coupon", args=[world.tenant.slug, "nope"])).status_code == 404


def test_checkin_page_shows_earned_badges_and_the_next_milestones(world):
    do_seed_streak_badges(world.tenant.pk)
    client = Client()
    me = sign_in(client, world, "13800000031")
    now = timezone.now()
    for days_ago in (2, 1):
        do_check_in(world.tenant.pk, me.pk, at=now - dt.timedelta(days=days_ago))
    url = reverse("portal:checkin", args=[world.tenant.slug])
    html = client.get(url).content.decode()
    assert 'data-testid="badge-earned"' not in html and "坚持三天" in html and "2 / 3" in html
    html = client.post(url, HTTP_HX_REQUEST="true").content.decode()  # today: the third day in a row
    assert 'data-testid="new-badge"' in html and "获得新徽章: 坚持三天" in html
    assert 'data-testid="badge-earned"' in html and "3 / 7" in html
    again = client.post(url, HTTP_HX_REQUEST="true").content.decode()  # a second check-in today: nothing new
    assert "今天已经签到过了" in again and 'data-testid="new-badge"' not in again
    # another member sees only their own badges
    other = Client()
    sign_in(other, world, "13800000032")
    assert 'data-testid="badge-earned"' not in other.get(url).content.decode()
