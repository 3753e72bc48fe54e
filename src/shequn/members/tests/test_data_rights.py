"""A member's data rights (PIPL): export everything held about them (JSON + XLSX), and erasure that
keeps orders and their amounts under a pseudonymous id. API and console; audited."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from openpyxl import load_workbook

from shequn.activity.models import ActivityEvent
from shequn.commerce.models import Order
from shequn.communities.models import Community, Membership
from shequn.core.models import AuditLog, StaffRole, Tenant
from shequn.members.models import Identity, Member, MemberTag, Tag
from shequn.portal import services as portal_services
from shequn.portal.models import MemberSession
from shequn.testing.client import ApiClient
from shequn.testing.factories import StaffFactory
from shequn.testing.scenarios import api_key_for

pytestmark = pytest.mark.django_db
PHONE = "13812345678"


@pytest.fixture
def person(tenant: Tenant) -> dict[str, Any]:
    now = timezone.now()
    m = Member.objects.create(tenant=tenant, display_name="王小丽", phone=PHONE, email="li@example.com",
                              note="喜欢自驾", first_seen_at=now)
    Identity.objects.create(tenant=tenant, member=m, platform="wecom", external_id="wm-li", display_name="小丽")
    MemberTag.objects.create(tenant=tenant, member=m, tag=Tag.objects.create(tenant=tenant, name="车主"))
    community = Community.objects.create(tenant=tenant, name="车友会")
    Membership.objects.create(tenant=tenant, member=m, community=community, joined_at=now)
    event = ActivityEvent.objects.create(
        tenant=tenant, member=m, community=community, platform="wecom", platform_event_id="e1", kind="message",
        occurred_at=now, received_at=now,
        payload={"text": "我的手机号是 13812345678", "sender_name": "小丽", "raw_kind": "text"})
    order = Order.objects.create(tenant=tenant, member=m, status="paid", goods_fen=9900, total_fen=9900, paid_fen=9900)
    portal_services.do_start_session(m, "sms")
    return {"member": m, "event": event, "order": order}


def test_export_holds_everything_unmasked_as_json_and_xlsx(tenant: Tenant, person: dict[str, Any]) -> None:
    m = person["member"]
    _key, secret = api_key_for(tenant, ["members.write"])
    api = ApiClient(secret)
    resp = api.get(f"/api/v1/members/{m.pk}/export")
    assert resp.status_code == 200 and resp["Content-Type"].startswith("application/json")
    data = json.loads(resp.content)["sections"]
    assert data["member"][0]["phone"] == PHONE and data["member"][0]["email"] == "li@example.com"
    assert data["identities"][0]["external_id"] == "wm-li"
    assert data["tags"][0]["tag__name"] == "车主"
    assert data["memberships"][0]["community__name"] == "车友会"
    assert data["activity"][0]["payload"]["text"] == "我的手机号是 13812345678"
    assert data["orders"][0]["total_fen"] == 9900
    xlsx = api.get(f"/api/v1/members/{m.pk}/export", {"format": "xlsx"})
    assert xlsx.status_code == 200
    book = load_workbook(io.BytesIO(xlsx.content))
    assert {"member", "identities", "activity", "orders"} <= set(book.sheetnames)
    assert PHONE in [c.value for c in book["member"][2]]
    assert AuditLog.objects.filter(tenant=tenant, action="member.data_export", object_id=str(m.pk)).count() == 2


def test_export_and_erase_need_members_write(tenant: Tenant, person: dict[str, Any]) -> None:
    _key, secret = api_key_for(tenant, ["members.read"])
    api = ApiClient(secret)
    assert api.get(f"/api/v1/members/{person['member'].pk}/export").status_code == 403
    assert api.post(f"/api/v1/members/{person['member'].pk}/erase", {"reason": "x"}).status_code == 403


def test_erase_anonymises_but_orders_keep_their_amounts(tenant: Tenant, person: dict[str, Any]) -> None:
    m, order, event = person["member"], person["order"], person["event"]
    _key, secret = api_key_for(tenant, ["members.write"])
    api = ApiClient(secret)
    assert api.post(f"/api/v1/members/{m.pk}/erase", {"reason": ""}).status_code == 422
    resp = api.post(f"/api/v1/members/{m.pk}/erase", {"reason": "会员申请 #2026-001"})
    assert resp.status_code == 200, resp.content
    m.refresh_from_db()
    assert m.display_name.startswith("已注销会员-") and "小丽" not in m.display_name
    assert (m.phone, m.email, m.note) == ("", "", "") and m.erased_at is not None
    assert not Identity.objects.filter(member=m).exists() and not MemberTag.objects.filter(member=m).exists()
    event.refresh_from_db()
    assert event.payload == {"raw_kind": "text", "erased": True}  # the event counts; its text is gone
    order.refresh_from_db()
    assert order.member_id == m.pk and order.total_fen == 9900 and order.paid_fen == 9900
    assert not MemberSession.objects.filter(member=m).exists()
    audit = AuditLog.objects.get(tenant=tenant, action="member.erase")
    assert audit.reason == "会员申请 #2026-001" and audit.data["removed"]["identities"] == 1
    assert PHONE not in json.dumps(audit.data)
    assert api.post(f"/api/v1/members/{m.pk}/erase", {"reason": "again"}).status_code == 409
    exported = json.loads(api.get(f"/api/v1/members/{m.pk}/export").content)["sections"]
    assert PHONE not in json.dumps(exported, ensure_ascii=False)


def test_the_console_action_exports_and_erases(tenant: Tenant, person: dict[str, Any]) -> None:
    m = person["member"]
    c = Client()
    c.force_login(StaffFactory(tenant=tenant, role=StaffRole.OPERATOR).user)
    resp = c.post("/console/members/member/", {"action": "data_rights", "_selected_action": [m.pk]})
    assert resp.status_code == 302 and resp["Location"] == f"/console/shequn/members/{m.pk}/data-rights/"
    page = c.get(resp["Location"])
    assert page.status_code == 200 and "删除个人信息" in page.content.decode()
    download = c.get(resp["Location"] + "?download=xlsx")
    assert download.status_code == 200 and download["Content-Disposition"].endswith('.xlsx"')
    refused = c.post(resp["Location"], {"reason": "申请"})  # the confirmation box not ticked
    assert refused.status_code == 200
    m.refresh_from_db()
    assert m.erased_at is None
    done = c.post(resp["Location"], {"reason": "申请", "confirm": "on"})
    assert done.status_code == 302
    m.refresh_from_db()
    assert m.erased_at is not None and m.phone == ""
    # a read-only role cannot reach the page
    ro = Client()
    ro.force_login(StaffFactory(tenant=tenant, role=StaffRole.READONLY).user)
    assert ro.get(f"/console/shequn/members/{m.pk}/data-rights/").status_code == 403
