"""The console in a real browser (Debian's chromium through Playwright, 1280×900): a fresh tenant's
onboarding checklist, creating a lottery and a flash sale from the console (a bad date first: the
service's error on the field, then the corrected form), approving a join request (confirm first).
Screenshots: ``test-output/console/<test>/``."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from shequn.commerce import services as commerce
from shequn.commerce.models import FlashSale
from shequn.communities.models import Community
from shequn.communities.services import do_request_join
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.engagement.models import Lottery
from shequn.members.models import Member

from .conftest import Desk

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_fresh_tenant_sees_the_onboarding_checklist(desk: Desk) -> None:
    assert desk.page.url.rstrip("/").endswith("/console")  # no `next`: the console, not a 404
    box = desk.page.locator("#sq-onboarding")
    box.wait_for()
    desk.shot("checklist")
    steps = box.locator("li[data-step]")
    assert steps.count() == 5
    assert box.locator("li[data-done='0']").count() == 5
    assert "导入种子用户" in box.inner_text()
    box.get_by_text("设置付费等级", exact=False).click()
    desk.page.wait_for_load_state("networkidle")
    assert "/console/commerce/product/add/" in desk.page.url
    assert desk.page.get_by_text("第一个 SKU").is_visible()
    desk.shot("tier-form")


def test_create_a_lottery_from_the_console(desk: Desk, tenant: Tenant) -> None:
    closes = timezone.now() + dt.timedelta(days=2)
    desk.go("/console/engagement/lottery/add/")
    desk.page.fill("[name=title]", "周末抽奖")
    desk.fill_datetime("closes_at", closes)
    desk.fill_datetime("draw_at", closes - dt.timedelta(hours=1))  # before the close: refused
    desk.page.fill("[name=prize_1_name]", "车载香薰")
    desk.page.fill("[name=prize_1_stock]", "3")
    desk.page.fill("[name=rule_min_streak]", "3")
    desk.save()
    assert desk.page.get_by_text("开奖时间不能早于截止时间").first.is_visible()
    desk.shot("draw-before-close-refused")
    assert not Lottery.objects.filter(tenant=tenant).exists()
    desk.fill_datetime("draw_at", closes + dt.timedelta(hours=1))
    desk.save()
    desk.shot("created")
    lot = Lottery.objects.get(tenant=tenant)
    assert lot.title == "周末抽奖" and len(lot.seed_commitment) == 64
    assert lot.rules == {"min_streak": 3}
    assert [(p.name, p.stock) for p in lot.prizes.all()] == [("车载香薰", 3)]
    assert "周末抽奖" in desk.page.content()


def test_create_a_flash_sale_from_the_console(desk: Desk, tenant: Tenant) -> None:
    product = commerce.do_create_product(Principal.system(tenant.pk), commerce.NewProduct(name="车载香薰", skus=[
        {"code": "XX-1", "name": "木质", "price_fen": 9900, "stock": 10}]))
    sku = product.skus.get()
    starts = timezone.now() + dt.timedelta(hours=1)
    desk.go("/console/commerce/flashsale/add/")
    desk.page.fill("[name=name]", "周五秒杀")
    desk.page.select_option("select[name=sku]", str(sku.pk))
    desk.page.fill("[name=price_fen]", "9.90")  # entered in 元
    desk.page.fill("[name=initial_stock]", "3")
    desk.fill_datetime("starts_at", starts)
    desk.fill_datetime("ends_at", starts - dt.timedelta(minutes=30))  # ends before it starts: refused
    desk.shot("form")
    desk.save()
    assert desk.page.get_by_text("结束时间必须晚于开始时间").first.is_visible()
    desk.shot("ends-before-start-refused")
    desk.fill_datetime("ends_at", starts + dt.timedelta(hours=2))
    desk.save()
    desk.shot("created")
    fs = FlashSale.objects.get(tenant=tenant)
    assert (fs.name, fs.price_fen, fs.stock) == ("周五秒杀", 990, 3)
    sku.refresh_from_db()
    assert sku.stock == 7  # carved out by the service
    assert "¥9.90" in desk.page.content()


def test_approve_a_join_request_from_the_queue(desk: Desk, tenant: Tenant) -> None:
    """The queue's row button is a link: it opens a confirmation, and only the confirmation's POST
    approves (a GET — a prefetch, a link pasted in a chat — changes nothing)."""
    community = Community.objects.create(tenant=tenant, name="读书会", entry_threshold="approval")
    member = Member.objects.create(tenant=tenant, display_name="想进群的小王", first_seen_at=timezone.now())
    req = do_request_join(member, community, message="我也想读书")
    desk.go("/console/communities/joinrequest/")
    desk.page.get_by_text("想进群的小王").first.wait_for()
    desk.shot("queue")
    desk.page.get_by_text("more_horiz").first.click()  # the row's "…" menu holds its buttons
    desk.page.locator(f"a[href$='/joinrequest/{req.pk}/approve/']").first.click()
    desk.page.wait_for_load_state("networkidle")
    assert desk.page.locator("[data-confirm-action]").is_visible()
    req.refresh_from_db()
    assert req.status == "pending"
    desk.shot("confirm")
    desk.page.get_by_role("button", name="确认通过").click()
    desk.page.wait_for_load_state("networkidle")
    assert desk.page.url.endswith("/console/communities/joinrequest/")
    req.refresh_from_db()
    assert req.status == "approved"
    assert desk.page.get_by_text("已通过").first.is_visible()
    desk.shot("approved")
