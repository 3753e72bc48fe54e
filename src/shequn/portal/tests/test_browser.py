"""The members' pages in a real browser (Debian's chromium through Playwright, 390×844, CJK fonts),
against a live server. Screenshots of every step: ``test-output/portal/<test>/``."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.utils import timezone

from shequn.commerce.models import GroupBuyTeam, Order, OrderStatus
from shequn.commerce.services import (
    NewProduct,
    do_create_flash_sale,
    do_create_group_buy,
    do_create_product,
    do_fail_expired_teams,
    do_request_refund,
)
from shequn.engagement import fairness
from shequn.engagement.models import CheckIn
from shequn.engagement.services import do_close_lottery, do_create_lottery, do_create_red_packet, do_draw_lottery
from shequn.members.models import Member
from shequn.referrals.models import Commission
from shequn.referrals.services import do_get_or_create_link
from shequn.testing.browser import Phone, phone_factory
from shequn.testing.scenarios import ENTRY_FEN, PARTNER_FEN, PaidCommunity, last_sms_code, paid_community

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def live_world(serial_sqlite_server, transactional_db, live_server, settings, tenant) -> PaidCommunity:
    settings.SHEQUN = {**settings.SHEQUN, "PUBLIC_BASE_URL": live_server.url}
    settings.REDIS_URL = None
    return paid_community(tenant)


@pytest.fixture
def phones(browser, live_server, request):
    return phone_factory(browser, live_server.url, request.node.name)


def sign_in(p: Phone, world: PaidCommunity, phone: str) -> None:
    """On the sign-in page (or redirected to it): phone → code from the sandbox SMS → signed in."""
    if "/login/" not in p.page.url:
        p.go(f"/portal/{world.tenant.slug}/login/")
    p.page.get_by_label("手机号").fill(phone)
    p.page.get_by_role("button", name="获取验证码").click()
    p.page.get_by_label("验证码").wait_for()
    p.shot("code-sent")
    p.page.get_by_label("验证码").fill(last_sms_code(world.tenant))
    p.page.get_by_role("button", name="登录", exact=True).click()
    p.page.get_by_test_id("me").wait_for()


def buy(p: Phone, tier_code: str, step: str) -> None:
    p.page.get_by_test_id(f"tier-{tier_code}").get_by_role("button").click()
    p.page.get_by_test_id("pay").wait_for()
    p.shot(f"{step}-checkout")
    p.page.get_by_test_id("pay").click()
    p.page.get_by_test_id("tier-granted").wait_for()
    assert p.text("order-status") == "已支付"
    p.shot(f"{step}-paid")


def invite_url(p: Phone, world: PaidCommunity) -> str:
    p.go(f"/portal/{world.tenant.slug}/invite/")
    url = p.text("invite-url")
    assert re.fullmatch(r"http://[\w.:]+/r/[a-z0-9]+", url), url
    return url


def available(p: Phone, world: PaidCommunity) -> str:
    p.go(f"/portal/{world.tenant.slug}/earnings/")
    return p.text("available")


def test_seed_scenario_in_the_browser(live_world, phones):
    """A opens an invite link, signs in, pays 19.9, downloads the poster; B opens A's link, pays 19.9 →
    A sees ¥19.90 available at once; A withdraws; C comes through B and buys the 1999 tier → B sees
    ¥1,599.20; an operator refunds C → B sees the reversal; nobody sees a second-level commission."""
    world = live_world
    operator_link = do_get_or_create_link(world.system, kind="channel", channel="公众号文章",
                                          community_id=world.community.pk)
    a, b, c = phones("A"), phones("B"), phones("C")

    # A: the channel link → landing → sign in → pay 19.9 → the poster
    a.go(f"/r/{operator_link.code}")
    a.page.get_by_test_id("community").wait_for()
    assert "付费" in a.text("threshold")
    a.shot("landing")
    a.page.get_by_test_id("tier-entry").get_by_role("link").click()
    sign_in(a, world, "13800000001")
    a.shot("signed-in")
    buy(a, "entry", "entry")
    assert a.page.get_by_test_id("ways-in").is_visible()
    url_a = invite_url(a, world)
    a.shot("invite")
    with a.page.expect_download() as dl:
        a.page.get_by_test_id("poster-download").click()
    poster = a.out / "A-poster.png"
    dl.value.save_as(str(poster))
    assert poster.read_bytes()[:4] == b"\x89PNG" and poster.stat().st_size > 10_000

    # B: A's link → pays 19.9 → A has ¥19.90 available at once
    b.go(url_a)
    assert "邀请你加入" in b.text("invited-by")
    b.shot("landing")
    b.page.get_by_test_id("tier-entry").get_by_role("link").click()
    sign_in(b, world, "13800000002")
    buy(b, "entry", "entry")
    assert available(a, world) == "¥19.90"
    a.shot("earnings")

    # A withdraws (below the approval threshold: paid by the sandbox at once)
    a.page.get_by_label("提现金额(元)").fill("19.90")
    a.page.get_by_role("button", name="申请提现").click()
    a.page.get_by_test_id("withdrawal").wait_for()
    assert a.text("withdrawal-status") == "已打款"
    a.shot("withdrawn")
    assert available(a, world) == "¥0.00" and a.text("withdrawn") == "¥19.90"

    # C: B's link → the 1999 partner tier → B sees ¥1,599.20; A sees nothing of it
    url_b = invite_url(b, world)
    c.go(url_b)
    c.page.get_by_test_id("tier-partner").get_by_role("link").click()
    sign_in(c, world, "13800000003")
    buy(c, "partner", "partner")
    assert available(b, world) == "¥1,599.20"
    b.shot("earnings-1599")
    assert available(a, world) == "¥0.00"
    assert "1,599.20" not in a.page.get_by_test_id("lines").inner_text()
    a.shot("no-second-level")
    carol = Member.objects.get(tenant=world.tenant, phone="13800000003")
    assert list(Commission.objects.filter(buyer_id=carol.pk).values_list("referrer__phone", "amount_fen")) == [
        ("13800000002", PARTNER_FEN * 80 // 100)]

    # the operator refunds C → B's page shows the reversal
    order = Order.objects.get(member=carol)
    do_request_refund(world.system, order.pk, amount_fen=PARTNER_FEN, idempotency_key="operator-refund-c",
                      reason="operator")
    assert Order.objects.get(pk=order.pk).status == OrderStatus.REFUNDED
    assert available(b, world) == "¥0.00"
    assert "退款冲回 -¥1,599.20" in b.text("reversed")
    b.shot("reversal")
    assert ENTRY_FEN == 1990 and len(a.shots) >= 6


def test_a_member_cannot_open_anothers_order_earnings_or_withdrawal(live_world, phones):
    world = live_world
    a, b = phones("A"), phones("B")
    a.go(f"/portal/{world.tenant.slug}/c/{world.community.pk}/")
    a.page.get_by_test_id("tier-entry").get_by_role("link").click()
    sign_in(a, world, "13800000011")
    buy(a, "entry", "entry")
    order_url = a.page.url
    b.go(invite_url(a, world))
    b.page.get_by_test_id("tier-entry").get_by_role("link").click()
    sign_in(b, world, "13800000012")
    buy(b, "entry", "entry")
    a.go(f"/portal/{world.tenant.slug}/earnings/")
    a.page.get_by_label("提现金额(元)").fill("19.90")
    a.page.get_by_role("button", name="申请提现").click()
    a.page.get_by_test_id("withdrawal").wait_for()
    withdrawal_url = a.page.url
    for url in (order_url, withdrawal_url):
        response = b.page.goto(url)
        assert response is not None and response.status == 404, url
        b.shot("404")
    # B's own earnings page shows only B's (nothing): A's ¥19.90 is not there
    b.go(f"/portal/{world.tenant.slug}/earnings/")
    assert b.text("available") == "¥0.00" and "13800000012" not in b.page.content()


def test_flash_sale_race_for_the_last_unit(live_world, phones):
    """Two members press buy on the last unit at the same moment: one order, one clear sold-out."""
    world = live_world
    product = do_create_product(world.system, NewProduct(
        name="车载香薰", skus=[{"code": "xx-1", "name": "标准", "price_fen": 9900, "stock": 10}]))
    now = timezone.now()
    fs = do_create_flash_sale(world.system, name="香薰 1 元秒杀", sku_id=product.skus.get().pk, price_fen=100, stock=1,
                              starts_at=now - dt.timedelta(minutes=1), ends_at=now + dt.timedelta(hours=1))
    a, b = phones("A"), phones("B")
    for p, phone in ((a, "13800000021"), (b, "13800000022")):
        p.go(f"/portal/{world.tenant.slug}/flash/{fs.pk}/")
        sign_in(p, world, phone)
        assert "剩余 1 件" in p.text("flash-state")
        p.shot("flash")
    # both press at once: neither click waits for the other's answer
    a.page.get_by_test_id("flash-buy").click(no_wait_after=True)
    b.page.get_by_test_id("flash-buy").click(no_wait_after=True)
    outcomes = {}
    for p in (a, b):
        p.page.wait_for_selector("[data-testid=order], .msg.error")
        won = p.page.get_by_test_id("order").count()
        outcomes[p.name] = "order" if won else p.page.locator(".msg.error").inner_text()
        p.shot("outcome")
    assert list(outcomes.values()).count("order") == 1, outcomes
    loser = next(v for v in outcomes.values() if v != "order")
    assert "已售罄" in loser
    assert Order.objects.filter(flash_sale=fs).count() == 1
    fs.refresh_from_db()
    assert fs.stock == 0
    winner = a if outcomes["A"] == "order" else b
    winner.page.get_by_test_id("pay").click()
    winner.page.get_by_test_id("order-status").wait_for()
    assert winner.text("order-status") == "已支付"
    winner.shot("paid")
    loser_phone = b if winner is a else a
    loser_phone.go(f"/portal/{world.tenant.slug}/flash/{fs.pk}/")
    assert "已售罄" in loser_phone.text("flash-state")


def test_checkin_lottery_and_red_packet(live_world, phones):
    """Check in twice on one day (one check-in); enter a lottery, see the commitment before the draw
    and the seed and verify command after, and the record verifies; claim a red packet."""
    world = live_world
    slug = world.tenant.slug
    a = phones("A")
    a.go(f"/portal/{slug}/checkin/")
    sign_in(a, world, "13800000031")
    a.page.get_by_test_id("checkin-button").click()
    a.page.get_by_test_id("checkin-result").wait_for()
    assert "签到成功" in a.text("checkin-result") and a.text("streak") == "1"
    points = int(a.text("points"))
    assert points > 0
    a.shot("checked-in")
    a.page.get_by_test_id("checkin-button").click()
    # a locator wait, not wait_for_function: the page's CSP forbids evaluating strings (no 'unsafe-eval')
    a.page.get_by_test_id("checkin-result").filter(has_text="已经").wait_for()
    assert a.text("streak") == "1" and int(a.text("points")) == points
    a.shot("checked-in-again")
    member = Member.objects.get(tenant=world.tenant, phone="13800000031")
    assert CheckIn.objects.filter(member=member).count() == 1

    now = timezone.now()
    lot = do_create_lottery(world.system, title="周末抽奖", closes_at=now + dt.timedelta(hours=1),
                            draw_at=now + dt.timedelta(hours=2), prizes=[("保养券", 1)])
    a.go(f"/portal/{slug}/lottery/{lot.pk}/")
    assert a.text("seed-commitment") == lot.seed_commitment
    a.page.get_by_test_id("lottery-enter").click()
    a.page.get_by_test_id("entered").wait_for()
    a.shot("lottery-entered")
    do_close_lottery(world.tenant.pk, lot.pk, now=now + dt.timedelta(hours=1, seconds=1))
    do_draw_lottery(world.tenant.pk, lot.pk, now=now + dt.timedelta(hours=2, seconds=1))
    a.go(f"/portal/{slug}/lottery/{lot.pk}/")
    assert a.text("lottery-status") == "已开奖" and "保养券" in a.text("won")
    assert f"shequn lottery verify lottery-{lot.pk}.json" in a.text("verify-command")
    a.shot("lottery-drawn")
    with a.page.expect_download() as dl:
        a.page.get_by_role("link", name="下载公开记录").click()
    record = json.loads(open(dl.value.path(), encoding="utf-8").read())  # noqa: SIM115
    assert fairness.verify(record).ok

    packet = do_create_red_packet(world.system, total=100, count=2, title="新人红包")
    a.go(f"/portal/{slug}/redpacket/{packet.pk}/")
    a.page.get_by_test_id("claim").click()
    a.page.get_by_test_id("claimed").wait_for()
    assert "积分" in a.text("claimed")
    a.shot("red-packet")
    a.page.reload()
    assert a.page.get_by_test_id("claim").count() == 0


def test_group_buy_that_fails_refunds(live_world, phones):
    """A starts a team and pays, B opens the share link and joins but never pays; the deadline
    passes: the team fails, B's unpaid order is cancelled and A's payment is refunded automatically."""
    world = live_world
    slug = world.tenant.slug
    sku = {"code": "wash-1", "name": "标准", "price_fen": 5900, "stock": 50}
    product = do_create_product(world.system, NewProduct(name="洗车套餐", skus=[sku]))
    now = timezone.now()
    gb = do_create_group_buy(world.system, name="洗车 2 人团", sku_id=product.skus.get().pk, price_fen=2900,
                             team_size=2, starts_at=now - dt.timedelta(minutes=1), ends_at=now + dt.timedelta(days=1),
                             time_limit_minutes=60)
    a, b = phones("A"), phones("B")
    a.go(f"/portal/{slug}/groupbuy/{gb.pk}/")
    sign_in(a, world, "13800000041")
    a.page.get_by_test_id("start-team").click()
    a.page.get_by_test_id("team").wait_for()
    share = a.text("share-url")
    assert "自动原路退款" in a.page.get_by_test_id("team").inner_text()
    a.shot("team-started")
    a.page.get_by_role("link", name="我的订单").click()
    a.page.get_by_test_id("pay").click()
    a.page.get_by_test_id("order-status").wait_for()
    assert a.text("order-status") == "已支付"
    b.go(share)
    sign_in(b, world, "13800000042")
    b.page.get_by_test_id("join-team").click()
    b.page.get_by_test_id("pay").wait_for()
    b.shot("joined-unpaid")
    team = GroupBuyTeam.objects.get(group_buy=gb)
    assert do_fail_expired_teams(now=team.expires_at + dt.timedelta(seconds=1)) == 1
    a.go(share)
    assert a.text("team-status") == "未成团"
    a.shot("team-failed")
    a_order = Order.objects.get(team=team, member__phone="13800000041")
    b_order = Order.objects.get(team=team, member__phone="13800000042")
    assert a_order.status == OrderStatus.REFUNDED and a_order.refunded_fen == 2900
    assert b_order.status == OrderStatus.CANCELLED
    a.go(f"/portal/{slug}/orders/{a_order.pk}/")
    assert a.text("order-status") == "已退款"
    a.shot("refunded")
