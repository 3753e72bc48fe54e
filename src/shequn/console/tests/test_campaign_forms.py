"""Every campaign object is created from the console and from the API through the same services:
the same bad input gives the same message on the same field in both, and writes nothing."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from shequn.commerce import services as commerce
from shequn.commerce.models import CouponTemplate, FlashSale, GroupBuy, LiveSession, Product
from shequn.communities.models import Community
from shequn.core.models import AuditLog, StaffRole, Tenant
from shequn.core.permissions import Principal
from shequn.core.services import do_create_operator
from shequn.engagement.models import Badge, ContentItem, ContentSchedule, Lottery, RedPacket
from shequn.engagement.services import do_create_badge, do_create_content_item
from shequn.referrals.models import CommissionPlan, FissionTask
from shequn.testing.scenarios import api_key_for


@pytest.fixture
def console(tenant: Tenant) -> Client:
    staff = do_create_operator(tenant=tenant, username="op", password="pw-123456", role=StaffRole.OWNER)
    c = Client()
    c.force_login(staff.user)
    return c


@pytest.fixture
def ctx(tenant: Tenant) -> dict[str, Any]:
    p = Principal.system(tenant.pk)
    community = Community.objects.create(tenant=tenant, name="车友会")
    product = commerce.do_create_product(p, commerce.NewProduct(name="车载香薰", skus=[
        {"code": "XX-1", "name": "木质", "price_fen": 9900, "stock": 10}]))
    item = do_create_content_item(p, title="欢迎", body="欢迎加入")
    do_create_badge(p, code="streak7", name="连签", rule="streak", threshold=7)  # the code is taken
    return {"community": community.pk, "sku": product.skus.get().pk, "content": item.pk}


def _dt(value: dt.datetime, prefix: str) -> dict[str, str]:
    local = timezone.localtime(value)
    return {f"{prefix}_0": local.strftime("%Y-%m-%d"), f"{prefix}_1": local.strftime("%H:%M:%S")}


NOW = timezone.now().replace(microsecond=0) + dt.timedelta(days=1)
LATER = NOW + dt.timedelta(hours=2)


@dataclass
class Case:
    name: str
    model: Any
    console_path: str
    console_data: Callable[[dict[str, Any]], dict[str, Any]]
    console_field: str
    api_path: str
    api_body: Callable[[dict[str, Any]], dict[str, Any]]
    api_field: str
    inline: str = ""


CASES = [
    Case("product", Product, "commerce/product",
         lambda c: {"name": "新品", "kind": "goods", "is_active": "on", "sku_code": "XX-1", "sku_price_fen": "19.90",
                    "sku_stock": "5", "tier_rank": "0"},
         "sku_code", "/api/v1/commerce/products",
         lambda c: {"name": "新品", "skus": [{"code": "XX-1", "price_fen": 1990, "stock": 5}]}, "skus[0].code"),
    Case("paid tier", Product, "commerce/product",
         lambda c: {"name": "入门社群", "kind": "tier", "is_active": "on", "sku_code": "T-1", "sku_price_fen": "19.9",
                    "sku_stock": "1000", "tier_code": "entry", "tier_rank": "1"},
         "tier_community", "/api/v1/commerce/products",
         lambda c: {"name": "入门社群", "kind": "tier", "skus": [{"code": "T-1", "price_fen": 1990}]},
         "tier_community_id"),
    Case("flash sale", FlashSale, "commerce/flashsale",
         lambda c: {"name": "秒杀", "sku": c["sku"], "price_fen": "9.90", "initial_stock": "3",
                    "per_member_limit": "1", "reservation_ttl_seconds": "900", **_dt(LATER, "starts_at"),
                    **_dt(NOW, "ends_at")},
         "ends_at", "/api/v1/commerce/flash-sales",
         lambda c: {"name": "秒杀", "sku_id": c["sku"], "price_fen": 990, "stock": 3, "starts_at": LATER.isoformat(),
                    "ends_at": NOW.isoformat()}, "ends_at"),
    Case("group buy", GroupBuy, "commerce/groupbuy",
         lambda c: {"name": "三人团", "sku": c["sku"], "price_fen": "66", "team_size": "3",
                    "time_limit_minutes": "60", **_dt(LATER, "starts_at"), **_dt(NOW, "ends_at")},
         "ends_at", "/api/v1/commerce/group-buys",
         lambda c: {"name": "三人团", "sku_id": c["sku"], "price_fen": 6600, "team_size": 3,
                    "starts_at": LATER.isoformat(), "ends_at": NOW.isoformat()}, "ends_at"),
    Case("coupon template", CouponTemplate, "commerce/coupontemplate",
         lambda c: {"name": "满减券", "kind": "threshold", "amount_fen": "100", "threshold_fen": "50",
                    "percent_off": "0", "per_member_limit": "1", **_dt(NOW, "valid_from"),
                    **_dt(LATER, "valid_until")},
         "amount_fen", "/api/v1/commerce/coupon-templates",
         lambda c: {"name": "满减券", "kind": "threshold", "amount_fen": 10000, "threshold_fen": 5000,
                    "valid_from": NOW.isoformat(), "valid_until": LATER.isoformat()}, "amount_fen"),
    Case("share coupon", CouponTemplate, "commerce/coupontemplate",
         lambda c: {"name": "送好友", "kind": "percent", "percent_off": "100", "amount_fen": "0",
                    "threshold_fen": "0", "per_member_limit": "1", "is_share": "on", **_dt(NOW, "valid_from"),
                    **_dt(LATER, "valid_until")},
         "percent_off", "/api/v1/commerce/coupon-templates",
         lambda c: {"name": "送好友", "kind": "percent", "percent_off": 100, "is_share": True,
                    "valid_from": NOW.isoformat(), "valid_until": LATER.isoformat()}, "percent_off"),
    Case("live session", LiveSession, "commerce/livesession",
         lambda c: {"title": "周五直播", "platform": "wechat_channels", **_dt(LATER, "starts_at"),
                    **_dt(NOW, "ends_at")},
         "ends_at", "/api/v1/commerce/live-sessions",
         lambda c: {"title": "周五直播", "starts_at": LATER.isoformat(), "ends_at": NOW.isoformat()}, "ends_at"),
    Case("lottery", Lottery, "engagement/lottery",
         lambda c: {"title": "周末抽奖", "entry_cost_points": "0", "max_tickets": "1", "prize_1_name": "香薰",
                    "prize_1_stock": "1", **_dt(LATER, "closes_at"), **_dt(NOW, "draw_at")},
         "draw_at", "/api/v1/engagement/lotteries",
         lambda c: {"title": "周末抽奖", "closes_at": LATER.isoformat(), "draw_at": NOW.isoformat(),
                    "prizes": [{"name": "香薰", "stock": 1}]}, "draw_at"),
    Case("red packet", RedPacket, "engagement/redpacket",
         lambda c: {"title": "恭喜发财", "currency": "points", "mode": "random", "total_points": "3", "count": "5",
                    "expires_hours": "24"},
         "total_points", "/api/v1/engagement/red-packets",
         lambda c: {"title": "恭喜发财", "total": 3, "count": 5}, "total"),
    Case("badge", Badge, "engagement/badge",
         lambda c: {"code": "streak7", "name": "连签七天", "rule": "streak", "threshold": "7"},
         "code", "/api/v1/engagement/badges",
         lambda c: {"code": "streak7", "name": "连签七天", "rule": "streak", "threshold": 7}, "code"),
    Case("SOP item", ContentItem, "engagement/contentitem",
         lambda c: {"title": "欢迎新人", "kind": "link", "body": "欢迎"},
         "url", "/api/v1/engagement/content-items",
         lambda c: {"title": "欢迎新人", "kind": "link", "body": "欢迎"}, "url"),
    Case("SOP sequence", ContentSchedule, "engagement/contentschedule",
         lambda c: {"content": c["content"], "kind": "sequence", "community": c["community"], "day_offset": "1",
                    "respect_quiet_hours": "on", "active": "on"},
         "time_of_day", "/api/v1/engagement/content-schedules",
         lambda c: {"content_id": c["content"], "kind": "sequence", "community_id": c["community"],
                    "day_offset": 1}, "time_of_day"),
    Case("fission task", FissionTask, "referrals/fissiontask",
         lambda c: {"name": "邀请三人", "threshold": "3", "reward_kind": "gift", "reward_note": "", "is_active": "on"},
         "reward_note", "/api/v1/referrals/fission-tasks",
         lambda c: {"name": "邀请三人", "threshold": 3, "reward_kind": "gift"}, "reward_note"),
    Case("commission plan", CommissionPlan, "referrals/commissionplan",
         lambda c: {"name": "入门分佣", "campaign": "", "refund_window_days": "7", "priority": "0", "is_active": "on",
                    "rules-TOTAL_FORMS": "1", "rules-INITIAL_FORMS": "0", "rules-MIN_NUM_FORMS": "0",
                    "rules-MAX_NUM_FORMS": "1000", "rules-0-product_kind": "tier", "rules-0-product_id": "",
                    "rules-0-mode": "percent", "rules-0-rate_bps": "0", "rules-0-fixed_fen": "0"},
         "rate_bps", "/api/v1/referrals/plans",
         lambda c: {"name": "入门分佣", "rules": [{"product_kind": "tier", "rate_bps": 0}]}, "rules[0].rate_bps",
         inline="rules"),
]


def _console_errors(response: Any, case: Case) -> list[str]:
    if case.inline:
        for inline in response.context["inline_admin_formsets"]:
            formset = inline.formset
            if formset.prefix == case.inline:
                return [str(m) for form in formset.forms for m in form.errors.get(case.console_field, [])]
        return []
    form = response.context["adminform"].form
    return [str(m) for m in form.errors.get(case.console_field, [])]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_console_and_api_give_the_same_errors(case: Case, console: Client, ctx: dict[str, Any],
                                              tenant: Tenant) -> None:
    before = case.model.objects.filter(tenant=tenant).count()
    r = console.post(f"/console/{case.console_path}/add/", case.console_data(ctx))
    assert r.status_code == 200, (r.status_code, r.headers.get("Location"))
    console_messages = _console_errors(r, case)
    assert console_messages, r.context["adminform"].form.errors
    _key, secret = api_key_for(tenant)
    api = Client().post(case.api_path, data=json.dumps(case.api_body(ctx)), content_type="application/json",
                        headers={"Authorization": f"Bearer {secret}", "Idempotency-Key": f"same-{case.name}"})
    assert api.status_code in (404, 409, 422), api.content.decode()
    body = api.json()
    assert body["details"]["field"] == case.api_field, body
    assert body["message"] in console_messages, (body["message"], console_messages)
    assert case.model.objects.filter(tenant=tenant).count() == before  # nothing written by either


def test_console_create_goes_through_the_services(console: Client, ctx: dict[str, Any], tenant: Tenant) -> None:
    """Good input: the console add writes through do_create_* (audited by the service, amounts in 元)."""
    r = console.post("/console/commerce/flashsale/add/", {
        "name": "秒杀", "sku": ctx["sku"], "price_fen": "9.90", "initial_stock": "3", "per_member_limit": "1",
        "reservation_ttl_seconds": "900", **_dt(NOW, "starts_at"), **_dt(LATER, "ends_at")})
    assert r.status_code == 302, r.context["adminform"].form.errors if r.context else r
    fs = FlashSale.objects.get(tenant=tenant)
    assert (fs.price_fen, fs.stock, fs.initial_stock) == (990, 3, 3)
    assert fs.sku.stock == 7  # carved out of the SKU by the service
    assert AuditLog.objects.filter(tenant=tenant, action="commerce.flash.create").exists()
    r = console.post("/console/referrals/commissionplan/add/", {
        "name": "合伙人", "campaign": "", "refund_window_days": "7", "priority": "0", "is_active": "on",
        "rules-TOTAL_FORMS": "1", "rules-INITIAL_FORMS": "0", "rules-MIN_NUM_FORMS": "0", "rules-MAX_NUM_FORMS": "1000",
        "rules-0-product_kind": "tier", "rules-0-product_id": "", "rules-0-mode": "percent", "rules-0-rate_bps": "80",
        "rules-0-fixed_fen": "0"})
    assert r.status_code == 302
    plan = CommissionPlan.objects.get(tenant=tenant, name="合伙人")
    assert [x.rate_bps for x in plan.rules.all()] == [8000]
    assert AuditLog.objects.filter(tenant=tenant, action="referrals.plan.create").exists()
