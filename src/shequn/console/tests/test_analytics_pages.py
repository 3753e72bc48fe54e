"""The 健康提醒 and 裂变传播 console pages: open notices with the sidebar badge and the home count,
the settings form (through ``health.do_save_settings``, write permission), and the reach page with its
ECharts series on a known invite forest."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse

from shequn.analytics import health
from shequn.analytics.models import HealthFigures
from shequn.analytics.tests.test_reach import build_forest
from shequn.analytics.tests.world import make_world
from shequn.console import dashboard
from shequn.core.models import StaffRole, Tenant
from shequn.moderation.models import Violation
from shequn.testing.factories import StaffFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_home_cache(monkeypatch):
    monkeypatch.setattr(dashboard, "HOME_TTL", 0)


def client_for(tenant: Tenant, role: str = StaffRole.OWNER) -> Client:
    c = Client()
    c.force_login(StaffFactory(tenant=tenant, role=role).user)
    return c


def _ad_wave(tenant: Tenant) -> None:
    w = make_world(tenant)
    now = dt.datetime.now(dt.UTC)
    for i in range(5):
        Violation.objects.create(tenant=tenant, community=w.communities[0], group=w.groups[0], member=w.members[i],
                                 verdict="ad", score=0.99, occurred_at=now - dt.timedelta(minutes=i))
    health.do_evaluate(tenant.pk)


def test_health_page_lists_open_notices_with_badge_and_home_count(tenant, other_tenant):
    _ad_wave(tenant)
    _ad_wave(other_tenant)
    c = client_for(tenant, StaffRole.READONLY)
    resp = c.get(reverse("console:health"))
    html = resp.content.decode()
    assert resp.status_code == 200 and 'data-rule="ad_wave"' in html and "广告潮" in html
    assert len(resp.context["open_notices"]) == health.open_notices(tenant.pk).count()
    assert all(n.tenant_id == tenant.pk for n in resp.context["open_notices"])
    assert "护肤群1群" in html  # the figures table
    n = health.open_count(tenant.pk)
    req = resp.wsgi_request
    assert n >= 1 and dashboard.health_badge(req) == str(n)
    home = c.get(reverse("admin:index"))
    kpis = {k["label"]: k["value"] for k in home.context["shequn_kpis"]}
    assert kpis["健康提醒 (未恢复)"] == n
    assert c.post(reverse("console:health"), {"ad_wave_threshold": "9"}).status_code == 403  # read-only


def test_health_page_reads_the_stored_figures_and_says_when_they_were_computed(tenant, other_tenant):
    _ad_wave(tenant)
    _ad_wave(other_tenant)
    health.do_refresh_figures(tenant.pk)
    health.do_refresh_figures(other_tenant.pk)
    stored_at = HealthFigures.objects.filter(tenant=tenant).values_list("computed_at", flat=True).first()
    resp = client_for(tenant, StaffRole.READONLY).get(reverse("console:health"))
    figures = resp.context["figures"]
    assert {r["computed_at"] for r in figures} == {stored_at} and resp.context["figures_as_of"] == stored_at
    assert next(r for r in figures if r["name"] == "护肤群1群")["ads"] == 5  # this tenant's ads only
    assert 'id="health-figures-as-of"' in resp.content.decode()


def test_health_settings_form_saves_through_the_service(tenant):
    make_world(tenant)
    c = client_for(tenant)
    form = {"ad_wave_minutes": "30", "ad_wave_threshold": "8", "backlog_minutes": "15", "backlog_threshold": "2",
            "quiet_min_before": "10", "staff_group_id": "0", "notify_console": "on", "notify_webhook": "on"}
    resp = c.post(reverse("console:health"), form)
    assert resp.status_code == 302
    s = health.get_settings(tenant.pk)
    assert (s.ad_wave_minutes, s.ad_wave_threshold, s.backlog_minutes, s.notify_owner) == (30, 8, 15, False)
    c.post(reverse("console:health"), {**form, "ad_wave_threshold": "0"})  # refused: nothing changes
    assert health.get_settings(tenant.pk).ad_wave_threshold == 8


def test_reach_page_draws_generations(tenant, other_tenant):
    build_forest(tenant)
    c = client_for(tenant, StaffRole.READONLY)
    resp = c.get(reverse("console:reach"))
    html = resp.content.decode()
    assert resp.status_code == 200 and "echarts.min.js" in html and 'id="reach-chart"' in html
    assert resp.context["chart"]["depths"] == [1, 2, 3] and resp.context["chart"]["members"] == [3, 2, 1]
    assert resp.context["referrers"][0]["name"] == "A" and resp.context["summary"]["referred"] == 8


def test_health_page_offers_the_stored_windows_only(tenant):
    _ad_wave(tenant)
    health.do_refresh_figures(tenant.pk)
    c = client_for(tenant, StaffRole.READONLY)
    for days in health.STORED_WINDOWS:
        resp = c.get(reverse("console:health"), {"days": days, "by": "community"})
        assert resp.status_code == 200 and resp.context["days"] == days
        assert resp.context["figures"] == health.health_figures(tenant.pk, by="community", days=days)
        assert f"健康指标 (近 {days} 天)" in resp.content.decode()
    html = c.get(reverse("console:health")).content.decode()
    assert all(f"days={n}" in html for n in health.STORED_WINDOWS if n != 7)
    # a window not offered falls back to the default rather than computing live
    assert c.get(reverse("console:health"), {"days": "14"}).context["days"] == 7
