"""The console's funnel, cohort and segment pages: figures from the analytics selectors, filters,
the htmx live count, saving a segment from structured fields, exports with masked phones, coupon
grant from the list, and that a read-only role cannot write."""

from __future__ import annotations

import io

import pytest
from django.test import Client
from django.urls import reverse
from openpyxl import load_workbook

from shequn.analytics import services
from shequn.analytics.models import Segment
from shequn.analytics.tests.world import at, click, event, ingest, make_world, pay
from shequn.commerce.models import Coupon, CouponTemplate
from shequn.core.models import StaffRole, Tenant
from shequn.testing.factories import StaffFactory

pytestmark = pytest.mark.django_db


def client_for(tenant: Tenant, role: str = StaffRole.OWNER) -> Client:
    c = Client()
    c.force_login(StaffFactory(tenant=tenant, role=role).user)
    return c


@pytest.fixture
def w(tenant: Tenant):
    w = make_world(tenant, n_members=4)
    click(w, at(0, 9), member=0)
    ingest(w, [event(w, "join", 0, 0, at(0), invite=True), event(w, "message", 0, 0, at(1)),
               event(w, "join", 1, 0, at(0), invite=True), event(w, "join", 2, 1, at(1))])
    pay(w, 0, 10_000, at(2), campaign="双11")
    pay(w, 0, 20_000, at(5), campaign="双11")
    services.do_refresh(tenant.pk)
    w.members[0].phone = "13912345678"
    w.members[0].save()
    return w


def test_funnel_page_by_channel_with_member_export(w, tenant):
    c = client_for(tenant)
    page = c.get(reverse("console:analytics_funnel"), {"by": "channel"})
    html = page.content.decode()
    assert page.status_code == 200
    assert "转化漏斗" in html and "门店" in html and "echarts.min.js" in html and "cdn" not in html.lower()
    export = c.get(reverse("console:analytics_funnel_export", args=["xlsx"]),
                   {"step": "second_order", "by": "channel", "key": "门店"})
    rows = list(load_workbook(io.BytesIO(export.content)).active.iter_rows(min_row=2, values_only=True))
    assert [r[0] for r in rows] == [w.members[0].pk]


def test_cohort_page_shows_retention_and_revenue_in_yuan(w, tenant):
    page = client_for(tenant).get(reverse("console:analytics_cohorts"), {"grain": "month"})
    html = page.content.decode()
    assert page.status_code == 200 and "2026-10-01" in html
    assert "¥100.00" in html  # 30,000 fen over a cohort of 3 members = 100.00 元 per member


def test_segment_builder_counts_live_saves_exports_and_grants(w, tenant):
    c = client_for(tenant)
    count = c.post(reverse("console:segment_count"), {"min_orders": "2"})
    assert "1 人" in count.content.decode()
    bad = c.post(reverse("console:segment_count"), {"min_recency": "9"})
    assert "min_recency" in bad.content.decode()
    saved = c.post(reverse("console:segment_add"), {"name": "复购会员", "min_orders": "2", "lifecycle_stage": ""})
    assert saved.status_code == 302
    seg = Segment.objects.get(tenant=tenant, name="复购会员")
    assert seg.min_orders == 2 and seg.max_orders is None
    listing = c.get(reverse("console:segments")).content.decode()
    assert "复购会员" in listing
    csv = c.get(reverse("console:segment_export", args=[seg.pk, "csv"])).content.decode("utf-8-sig")
    assert "139****5678" in csv and "13912345678" not in csv
    template = CouponTemplate.objects.create(tenant=tenant, name="回馈券", kind="fixed", amount_fen=500,
                                             valid_from=at(-1), valid_until=at(400), per_member_limit=1)
    for _ in range(2):
        c.post(reverse("console:segment_action", args=[seg.pk]), {"op": "coupon", "target_id": str(template.pk)})
    assert list(Coupon.objects.filter(template=template).values_list("owner_id", flat=True)) == [w.members[0].pk]


def test_readonly_staff_sees_pages_but_cannot_save(w, tenant):
    c = client_for(tenant, StaffRole.READONLY)
    assert c.get(reverse("console:segments")).status_code == 200
    assert c.post(reverse("console:segment_add"), {"name": "x"}).status_code == 403
    assert not Segment.objects.exists()
