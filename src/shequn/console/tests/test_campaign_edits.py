"""Every campaign object is *changed* from the console and from the API through the same services
(``do_update_*`` / ``check_update_*``): the same bad change gives the same message on the same field
in both and writes nothing; a good change is applied through both (and audited by the service).

The console is driven like a browser: the change page is fetched, every input, select and textarea
it renders is sent back (with the management forms of its inlines), with the case's fields changed."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from shequn.api.testing import key_for
from shequn.commerce import services as commerce
from shequn.commerce.models import CouponTemplate, FlashSale, GroupBuy, LiveSession, Product, Sku
from shequn.communities.models import Community
from shequn.core.errors import Conflict
from shequn.core.models import AuditLog, StaffRole, Tenant
from shequn.core.permissions import Principal
from shequn.core.services import do_create_operator
from shequn.engagement import services as engagement
from shequn.engagement.models import Badge, ContentItem, ContentSchedule, Lottery, LotteryPrize, RedPacket
from shequn.members.models import Member
from shequn.referrals import services as referrals
from shequn.referrals.models import CommissionPlan, FissionTask


class _FormParser(HTMLParser):
    """What a browser submits from the page's main form: inputs (checked boxes only), selects (the
    selected options) and textareas."""

    def __init__(self) -> None:
        super().__init__()
        self.data: list[tuple[str, str]] = []
        self._select: str | None = None
        self._textarea: str | None = None
        self._text = ""
        self._multiple = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        name = a.get("name", "")
        if tag == "input" and name and a.get("type", "text") not in ("submit", "button", "file", "image"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.data.append((name, a.get("value", "on" if a.get("type") == "checkbox" else "")))
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select is not None and "selected" in a:
            self.data.append((self._select, a.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.data.append((self._textarea, self._text.lstrip("\n")))
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text += data


def browser_form(client: Client, url: str) -> dict[str, Any]:
    r = client.get(url)
    assert r.status_code == 200, (url, r.status_code)
    parser = _FormParser()
    parser.feed(r.content.decode())
    out: dict[str, Any] = {}
    for name, value in parser.data:
        if name in ("csrfmiddlewaretoken", "action", "select_across", "index"):
            continue
        if name in out:
            out[name] = [*(out[name] if isinstance(out[name], list) else [out[name]]), value]
        else:
            out[name] = value
    return out


@pytest.fixture
def console(tenant: Tenant) -> Client:
    staff = do_create_operator(tenant=tenant, username="op", password="pw-123456", role=StaffRole.OWNER)
    c = Client()
    c.force_login(staff.user)
    return c


NOW = timezone.now().replace(microsecond=0)
SOON = NOW + dt.timedelta(days=1)
LATER = SOON + dt.timedelta(hours=2)


def _dt(value: dt.datetime, prefix: str) -> dict[str, str]:
    local = timezone.localtime(value)
    return {f"{prefix}_0": local.strftime("%Y-%m-%d"), f"{prefix}_1": local.strftime("%H:%M:%S")}


@pytest.fixture
def ctx(tenant: Tenant) -> dict[str, Any]:
    """One object of each kind, created through the services."""
    p = Principal.system(tenant.pk)
    community = Community.objects.create(tenant=tenant, name="车友会")
    goods = commerce.do_create_product(p, name="车载香薰", skus=[
        {"code": "XX-1", "name": "木质", "price_fen": 9900, "stock": 10},
        {"code": "XX-2", "name": "花香", "price_fen": 9900, "stock": 10}])
    sku, sku2 = list(goods.skus.order_by("pk"))
    tier = commerce.do_create_product(p, name="入门社群", kind="tier", tier_community_id=community.pk,
                                      tier_code="entry", tier_rank=1, skus=[{"code": "T-1", "price_fen": 1990}])
    item = engagement.do_create_content_item(p, title="欢迎", body="欢迎加入")
    plan, _w = referrals.do_create_plan(p, name="入门分佣", rules=[{"product_kind": "tier", "rate_bps": 10000}])
    return {
        "p": p, "community": community.pk, "sku": sku.pk, "sku2": sku2.pk, "tier": tier.pk,
        "flash": commerce.do_create_flash_sale(p, name="秒杀", sku_id=sku.pk, price_fen=990, stock=3,
                                               starts_at=NOW - dt.timedelta(hours=1), ends_at=LATER).pk,
        "group_buy": commerce.do_create_group_buy(p, name="三人团", sku_id=sku2.pk, price_fen=6600, team_size=3,
                                                  starts_at=SOON, ends_at=LATER).pk,
        "coupon": commerce.do_create_coupon_template(p, name="满减券", kind="threshold", amount_fen=1000,
                                                     threshold_fen=5000, valid_from=SOON, valid_until=LATER).pk,
        "live": commerce.do_create_live_session(p, title="周五直播", starts_at=SOON).pk,
        "lottery": engagement.do_create_lottery(p, title="周末抽奖", closes_at=SOON, draw_at=LATER,
                                                prizes=[("香薰", 1)]).pk,
        "packet": engagement.do_create_red_packet(p, title="恭喜发财", total=100, count=5).pk,
        "badge": engagement.do_create_badge(p, code="streak30", name="连签三十天", rule="streak", threshold=30).pk,
        "badge_code_taken": engagement.do_create_badge(p, code="streak7", name="连签", rule="streak", threshold=7).pk,
        "content": item.pk,
        "schedule": engagement.do_create_content_schedule(p, content_id=item.pk, kind="recurring",
                                                          community_id=community.pk,
                                                          time_of_day=dt.time(9, 0)).pk,
        "fission": referrals.do_create_fission_task(p, name="邀请三人", threshold=3, reward_kind="points",
                                                    reward_value=100).pk,
        "plan": plan.pk,
    }


@dataclass
class Case:
    name: str
    model: Any
    key: str  # the ctx key of the object
    console_path: str
    bad_console: Callable[[dict[str, Any]], dict[str, Any]]
    console_field: str
    api_path: str
    bad_api: Callable[[dict[str, Any]], dict[str, Any]]
    api_field: str
    good_console: Callable[[dict[str, Any]], dict[str, Any]]
    good_api: dict[str, Any]
    applied: Callable[[Any, dict[str, Any]], bool]
    inline: str = ""
    audit: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("paid tier", Product, "tier", "commerce/product",
         lambda c: {"tier_community": ""}, "tier_community", "/api/v1/commerce/products/{id}",
         lambda c: {"tier": {"community_id": None}}, "tier_community_id",
         lambda c: {"name": "入门社群 (新)", "priv_may_create_groups": "on"}, {"name": "入门社群 2026"},
         lambda o, via: o.name == ("入门社群 (新)" if via == "console" else "入门社群 2026")
         and (via == "api" or o.tier_privileges.get("may_create_groups") is True),
         audit="commerce.product.update"),
    Case("SKU", Sku, "sku", "commerce/sku",
         lambda c: {"code": "XX-2"}, "code", "/api/v1/commerce/skus/{id}",
         lambda c: {"code": "XX-2"}, "code",
         lambda c: {"price_fen": "88.00"}, {"price_fen": 7700},
         lambda o, via: o.price_fen == (8800 if via == "console" else 7700) and o.stock == 7,
         audit="commerce.sku.update"),
    Case("flash sale (started: price fixed)", FlashSale, "flash", "commerce/flashsale",
         lambda c: {"price_fen": "8.80"}, "price_fen", "/api/v1/commerce/flash-sales/{id}",
         lambda c: {"price_fen": 880}, "price_fen",
         lambda c: {"initial_stock": "5"}, {"stock": 4, "name": "秒杀 (加量)"},
         lambda o, via: (o.initial_stock, o.stock, Sku.objects.get(pk=o.sku_id).stock)
         == ((5, 5, 5) if via == "console" else (4, 4, 6)),
         audit="commerce.flash.update"),
    Case("group buy", GroupBuy, "group_buy", "commerce/groupbuy",
         lambda c: _dt(SOON - dt.timedelta(hours=1), "ends_at"), "ends_at", "/api/v1/commerce/group-buys/{id}",
         lambda c: {"ends_at": (SOON - dt.timedelta(hours=1)).isoformat()}, "ends_at",
         lambda c: {"team_size": "5"}, {"team_size": 4, "is_active": False},
         lambda o, via: (o.team_size, o.is_active) == ((5, True) if via == "console" else (4, False)),
         audit="commerce.group_buy.update"),
    Case("coupon template", CouponTemplate, "coupon", "commerce/coupontemplate",
         lambda c: {"amount_fen": "60"}, "amount_fen", "/api/v1/commerce/coupon-templates/{id}",
         lambda c: {"amount_fen": 6000}, "amount_fen",
         lambda c: {"total_quantity": "100"}, {"total_quantity": 50},
         lambda o, via: o.total_quantity == (100 if via == "console" else 50),
         audit="commerce.coupon_template.update"),
    Case("live session", LiveSession, "live", "commerce/livesession",
         lambda c: _dt(SOON - dt.timedelta(hours=1), "ends_at"), "ends_at", "/api/v1/commerce/live-sessions/{id}",
         lambda c: {"ends_at": (SOON - dt.timedelta(hours=1)).isoformat()}, "ends_at",
         lambda c: {"title": "周六直播"}, {"title": "周日直播"},
         lambda o, via: o.title == ("周六直播" if via == "console" else "周日直播"),
         audit="commerce.live.update"),
    Case("lottery and its prizes", Lottery, "lottery", "engagement/lottery",
         lambda c: _dt(SOON - dt.timedelta(hours=1), "draw_at"), "draw_at", "/api/v1/engagement/lotteries/{id}",
         lambda c: {"draw_at": (SOON - dt.timedelta(hours=1)).isoformat()}, "draw_at",
         lambda c: {"prize_1_stock": "2", "prize_2_name": "贴纸", "prize_2_stock": "10"},
         {"prizes": [{"name": "香薰", "stock": 3}]},
         lambda o, via: [(x.name, x.stock) for x in LotteryPrize.objects.filter(lottery=o).order_by("rank")]
         == ([("香薰", 2), ("贴纸", 10)] if via == "console" else [("香薰", 3)]),
         audit="engagement.lottery.update"),
    Case("red packet", RedPacket, "packet", "engagement/redpacket",
         lambda c: _dt(NOW - dt.timedelta(hours=1), "expires_at"), "expires_at", "/api/v1/engagement/red-packets/{id}",
         lambda c: {"expires_at": (NOW - dt.timedelta(hours=1)).isoformat()}, "expires_at",
         lambda c: {"title": "新年快乐"}, {"title": "万事如意"},
         lambda o, via: o.title == ("新年快乐" if via == "console" else "万事如意") and o.total == 100,
         audit="engagement.redpacket.update"),
    Case("badge", Badge, "badge", "engagement/badge",
         lambda c: {"code": "streak7"}, "code", "/api/v1/engagement/badges/{id}",
         lambda c: {"code": "streak7"}, "code",
         lambda c: {"threshold": "31"}, {"threshold": 32},
         lambda o, via: o.threshold == (31 if via == "console" else 32),
         audit="engagement.badge.update"),
    Case("SOP item", ContentItem, "content", "engagement/contentitem",
         lambda c: {"kind": "link", "url": ""}, "url", "/api/v1/engagement/content-items/{id}",
         lambda c: {"kind": "link", "url": ""}, "url",
         lambda c: {"title": "欢迎新朋友"}, {"title": "欢迎各位"},
         lambda o, via: o.title == ("欢迎新朋友" if via == "console" else "欢迎各位"),
         audit="engagement.content.update"),
    Case("SOP schedule", ContentSchedule, "schedule", "engagement/contentschedule",
         lambda c: {"kind": "sequence", "time_of_day": ""}, "time_of_day",
         "/api/v1/engagement/content-schedules/{id}",
         lambda c: {"kind": "sequence", "time_of_day": None}, "time_of_day",
         lambda c: {"kind": "sequence", "day_offset": "3", "active": ""}, {"weekdays": [0, 2], "active": False},
         lambda o, via: (o.kind, o.day_offset, o.active) == ("sequence", 3, False) if via == "console"
         else (o.weekdays, o.active) == ([0, 2], False),
         audit="engagement.schedule.update"),
    Case("fission task", FissionTask, "fission", "referrals/fissiontask",
         lambda c: {"reward_kind": "gift", "reward_note": ""}, "reward_note", "/api/v1/referrals/fission-tasks/{id}",
         lambda c: {"reward_kind": "gift", "reward_note": ""}, "reward_note",
         lambda c: {"threshold": "5"}, {"threshold": 6, "is_active": False},
         lambda o, via: (o.threshold, o.is_active) == ((5, True) if via == "console" else (6, False)),
         audit="referrals.fission_task.update"),
    Case("commission plan", CommissionPlan, "plan", "referrals/commissionplan",
         lambda c: {"rules-0-rate_bps": "0"}, "rate_bps", "/api/v1/referrals/plans/{id}",
         lambda c: {"rules": [{"product_kind": "tier", "rate_bps": 0}]}, "rules[0].rate_bps",
         lambda c: {"rules-0-rate_bps": "80"},
         {"name": "合伙人分佣", "rules": [{"product_kind": "tier", "rate_bps": 9000}]},
         lambda o, via: [r.rate_bps for r in o.rules.all()] == ([8000] if via == "console" else [9000]),
         inline="rules", audit="referrals.plan.update"),
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


def _snapshot(case: Case, pk: int) -> dict[str, Any]:
    row = case.model.objects.filter(pk=pk).values().get()
    row.pop("updated_at", None)
    return row


def _patch(tenant: Tenant, path: str, body: dict[str, Any]) -> Any:
    _key, secret = key_for(tenant)
    return Client().patch(path, data=json.dumps(body), content_type="application/json",
                          headers={"Authorization": f"Bearer {secret}"})


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_console_and_api_refuse_the_same_change_the_same_way(case: Case, console: Client, ctx: dict[str, Any],
                                                             tenant: Tenant) -> None:
    pk = ctx[case.key]
    url = f"/console/{case.console_path}/{pk}/change/"
    before = _snapshot(case, pk)
    r = console.post(url, {**browser_form(console, url), **case.bad_console(ctx)})
    assert r.status_code == 200, (r.status_code, r.headers.get("Location"))
    console_messages = _console_errors(r, case)
    assert console_messages, r.context["adminform"].form.errors
    api = _patch(tenant, case.api_path.format(id=pk), case.bad_api(ctx))
    assert api.status_code in (404, 409, 422), api.content.decode()
    body = api.json()
    assert body["details"]["field"] == case.api_field, body
    assert body["message"] in console_messages, (body["message"], console_messages)
    assert _snapshot(case, pk) == before  # nothing written by either
    assert not AuditLog.objects.filter(tenant=tenant, action=case.audit).exists()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_good_change_is_applied_through_both(case: Case, console: Client, ctx: dict[str, Any],
                                               tenant: Tenant) -> None:
    pk = ctx[case.key]
    url = f"/console/{case.console_path}/{pk}/change/"
    r = console.post(url, {**browser_form(console, url), **case.good_console(ctx)})
    assert r.status_code == 302, r.context["adminform"].form.errors if r.context else r
    assert case.applied(case.model.objects.get(pk=pk), "console")
    assert AuditLog.objects.filter(tenant=tenant, action=case.audit).count() == 1
    api = _patch(tenant, case.api_path.format(id=pk), case.good_api)
    assert api.status_code == 200, api.content.decode()
    assert case.applied(case.model.objects.get(pk=pk), "api")
    assert AuditLog.objects.filter(tenant=tenant, action=case.audit).count() == 2


def test_a_lottery_someone_entered_only_gains_prizes(ctx: dict[str, Any], tenant: Tenant) -> None:
    """State rule: after the first entry a prize can't shrink or go (console and API alike, via the service)."""
    p = ctx["p"]
    lot = Lottery.objects.get(pk=ctx["lottery"])
    engagement.do_update_lottery(p, lot.pk, prizes=[("香薰", 2), ("贴纸", 5)])
    member = Member.objects.create(tenant=tenant, display_name="甲", first_seen_at=NOW - dt.timedelta(days=30))
    engagement.do_enter_lottery(tenant.pk, lot.pk, member.pk)
    api = _patch(tenant, f"/api/v1/engagement/lotteries/{lot.pk}", {"prizes": [{"name": "香薰", "stock": 2}]})
    assert api.status_code == 409 and api.json()["details"]["field"] == "prizes[1]", api.content
    api = _patch(tenant, f"/api/v1/engagement/lotteries/{lot.pk}", {"prizes": [{"name": "香薰", "stock": 3},
                                                                              {"name": "贴纸", "stock": 5},
                                                                              {"name": "徽章", "stock": 1}]})
    assert api.status_code == 200, api.content
    assert LotteryPrize.objects.filter(lottery=lot).count() == 3


def test_flash_sale_stock_moves_between_sale_and_sku_and_never_below_sold(ctx: dict[str, Any]) -> None:
    p = ctx["p"]
    fs = FlashSale.objects.get(pk=ctx["flash"])
    FlashSale.objects.filter(pk=fs.pk).update(stock=1)  # 2 of 3 sold
    with pytest.raises(Conflict) as err:
        commerce.do_update_flash_sale(p, fs.pk, stock=1)
    assert err.value.details == {"field": "stock", "sold": 2}
    fs = commerce.do_update_flash_sale(p, fs.pk, stock=2)  # give the unsold unit back
    assert (fs.initial_stock, fs.stock, Sku.objects.get(pk=fs.sku_id).stock) == (2, 0, 8)
