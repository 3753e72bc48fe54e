"""The 健康提醒 and 裂变传播 pages in a real browser (Debian's chromium through Playwright): the
sidebar badge counts the open notices, the generations chart is drawn by the vendored ECharts.
Screenshots: ``test-output/console/<test>/``."""

from __future__ import annotations

import datetime as dt

import pytest

from shequn.analytics import health
from shequn.analytics.tests.test_reach import build_forest
from shequn.analytics.tests.world import make_world
from shequn.core.models import Tenant
from shequn.moderation.models import Violation
from shequn.portal.tests.browser import browser, serial_sqlite_server  # noqa: F401  (fixtures)

from .test_console_browser import Desk, desk  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_health_badge_and_reach_chart(desk: Desk, tenant: Tenant) -> None:  # noqa: F811
    w = make_world(tenant)
    now = dt.datetime.now(dt.UTC)
    for i in range(5):
        Violation.objects.create(tenant=tenant, community=w.communities[0], group=w.groups[0], member=w.members[i],
                                 verdict="ad", score=0.99, occurred_at=now - dt.timedelta(minutes=i))
    health.do_evaluate(tenant.pk)
    build_forest(tenant)
    open_now = health.open_count(tenant.pk)
    assert open_now >= 1

    desk.go("/console/shequn/analytics/health/")
    desk.page.locator("#health-open tr[data-rule='ad_wave']").wait_for()
    nav = desk.page.locator("a[href='/console/shequn/analytics/health/']").first
    assert str(open_now) in nav.inner_text()  # the sidebar badge
    desk.shot("health")

    desk.go("/console/shequn/analytics/reach/")
    desk.page.locator("#chart-generations canvas").wait_for()
    assert desk.page.locator("#reach-depth").inner_text().strip() == "3"
    assert desk.page.locator("#reach-referrers tbody tr").first.inner_text().startswith("A")
    desk.shot("reach")
