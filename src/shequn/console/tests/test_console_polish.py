"""The console as a Chinese operator meets it: a fresh tenant's checklist, money in 元, words instead of
codes, a sidebar that reaches every area, a login that lands on the console, a reply queue that can
skip "收到/谢谢"."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from shequn.activity.services import do_ingest
from shequn.commerce import services as commerce
from shequn.commerce.models import GroupBuyTeam
from shequn.communities.services import do_add_group, do_create_community
from shequn.connectors.models import Connection
from shequn.core.models import StaffRole, Tenant
from shequn.core.permissions import Principal
from shequn.core.services import do_create_operator
from shequn.engagement.models import ReplyTrack
from shequn.engagement.selectors import reply_queue, reply_stats
from shequn.ledger.models import AccountKind, OwnerType
from shequn.ledger.services import do_post, get_account
from shequn.members.models import MemberTag, Tag
from shequn.members.services import do_create_member
from shequn.referrals.services import do_create_plan


@pytest.fixture
def console(tenant: Tenant) -> Client:
    staff = do_create_operator(tenant=tenant, username="op", password="pw-123456", role=StaffRole.OWNER)
    c = Client()
    c.force_login(staff.user)
    return c


def test_login_without_next_lands_on_the_console(tenant: Tenant) -> None:
    do_create_operator(tenant=tenant, username="op2", password="pw-123456", role=StaffRole.OPERATOR)
    r = Client().post("/console/login/", {"username": "op2", "password": "pw-123456"})
    assert r.status_code == 302 and r["Location"] == "/console/", r.get("Location")
    # an owner must pass the second factor first (console/auth_views.py), and then lands there too
    owner = do_create_operator(tenant=tenant, username="own2", password="pw-123456", role=StaffRole.OWNER)
    c = Client()
    r = c.post("/console/login/", {"username": "own2", "password": "pw-123456"})
    assert r.status_code == 302 and r["Location"] == "/console/login/2fa/", r.get("Location")
    assert c.get("/console/login/2fa/").status_code == 200  # an owner without an authenticator enrols here
    device = TOTPDevice.objects.get(user=owner.user, confirmed=False)
    code = f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"
    r = c.post("/console/login/2fa/", {"code": code})
    assert r.status_code == 200 and r.context["next"] == "/console/"  # recovery codes, then on to the console
    assert c.get("/console/").status_code == 200


def _steps(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-step="(\w+)" data-done="(\d)"', html))


def test_fresh_tenant_sees_the_onboarding_checklist_until_set_up(console: Client, tenant: Tenant) -> None:
    p = Principal.system(tenant.pk)
    html = console.get("/console/").content.decode()
    assert "开始使用" in html
    assert _steps(html) == {"connect": "0", "community": "0", "import": "0", "tiers": "0", "commission": "0"}
    assert 'href="/console/commerce/product/add/"' in html
    community = do_create_community(p, name="车友会")
    do_create_member(p, display_name="张三")
    html = console.get("/console/").content.decode()
    assert _steps(html)["community"] == "1" and _steps(html)["import"] == "1"
    commerce.do_seed_tiers(p, community.pk)
    do_create_plan(p, name="入门", rules=[{"product_kind": "tier", "rate_bps": 10000}])
    Connection.objects.create(tenant=tenant, platform="telegram", name="bot")
    html = console.get("/console/").content.decode()
    assert "开始使用" not in html and not _steps(html)


def test_sidebar_reaches_every_area(console: Client) -> None:
    html = console.get("/console/").content.decode()
    for url in ("/console/commerce/product/", "/console/commerce/flashsale/", "/console/moderation/violation/",
                "/console/ledger/transaction/", "/console/engagement/lottery/", "/console/engagement/redpacket/",
                "/console/referrals/withdrawal/", "/console/referrals/commissionplan/",
                "/console/connectors/connection/"):
        assert f'href="{url}"' in html, url


def test_money_is_shown_and_entered_in_yuan(console: Client, tenant: Tenant) -> None:
    p = Principal.system(tenant.pk)
    product = commerce.do_create_product(p, commerce.NewProduct(
        name="车载香薰", skus=[{"code": "X-1", "price_fen": 9900, "stock": 10}]))
    now = timezone.now()
    commerce.do_create_flash_sale(p, name="秒杀", sku_id=product.skus.get().pk, price_fen=1990, stock=2,
                                  starts_at=now, ends_at=now + dt.timedelta(hours=1))
    html = console.get("/console/commerce/flashsale/").content.decode()
    assert "¥19.90" in html and ">1990<" not in html
    html = console.get("/console/commerce/sku/").content.decode()
    assert "¥99.00" in html
    html = console.get("/console/commerce/flashsale/add/").content.decode()
    assert "秒杀价(元)" in html and "秒杀价(分)" not in html
    change = console.get(f"/console/commerce/sku/{product.skus.get().pk}/change/").content.decode()
    assert 'value="99.00"' in change


def test_ledger_lists_amounts_and_words(console: Client, tenant: Tenant) -> None:
    member = do_create_member(Principal.system(tenant.pk), display_name="张三")
    expense = get_account(tenant.pk, OwnerType.MERCHANT, tenant.pk, AccountKind.COMMISSION_EXPENSE, allow_negative=True)
    pending = get_account(tenant.pk, OwnerType.MEMBER, member.pk, AccountKind.COMMISSION_PENDING)
    do_post(tenant.pk, "t-1", "commission.accrue", [(expense, -1990), (pending, 1990)])
    html = console.get("/console/ledger/transaction/").content.decode()
    assert "佣金入账" in html and "¥19.90" in html and ">commission.accrue<" not in html
    html = console.get("/console/ledger/account/").content.decode()
    assert "待结算佣金" in html and ">commission_pending<" not in html


def test_labels_are_words_not_object_ids(tenant: Tenant) -> None:
    member = do_create_member(Principal.system(tenant.pk), display_name="张三", tags=["老客"])
    mt = MemberTag.objects.get(member=member, tag=Tag.objects.get(tenant=tenant, name="老客"))
    assert str(mt) == "老客"
    assert str(GroupBuyTeam(pk=7)) == "团 #7"  # a model without its own label: its Chinese name


def test_reply_queue_marks_messages_that_need_no_answer(console: Client, tenant: Tenant) -> None:
    p = Principal.system(tenant.pk)
    community = do_create_community(p, name="车友会")
    group = do_add_group(p, community, platform="telegram", external_id="room-1", name="一群")
    old = (timezone.now() - dt.timedelta(hours=2)).isoformat()
    res = do_ingest(tenant.pk, [{"platform": "telegram", "event_id": "ev-thanks", "kind": "message",
                                 "sender": "tg-1", "group": "room-1", "occurred_at": old,
                                 "payload": {"text": "收到, 谢谢"}}])
    track = ReplyTrack.objects.get(tenant=tenant, event_id=res.event_ids[0])
    assert list(reply_queue(tenant.pk)) == [track]
    page = console.get("/console/engagement/replytrack/queue/").content.decode()
    assert "无需回复" in page
    r = console.post("/console/engagement/replytrack/queue/", {"track_id": track.pk, "no_reply": "1", "text": ""})
    assert r.status_code == 302
    track.refresh_from_db()
    assert track.no_reply_at is not None and track.answered_at is None
    assert list(reply_queue(tenant.pk)) == []
    stats: Any = reply_stats(tenant.pk, since=timezone.now() - dt.timedelta(days=1))
    assert all(row["messages"] == 0 for row in stats["communities"]) or not stats["communities"]
    assert group.pk
