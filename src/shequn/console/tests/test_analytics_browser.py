"""The analytics pages in a real browser (Debian's chromium through Playwright): building a segment
field by field with the live count following each change (htmx), saving it, then the funnel by
channel (htmx filter swap, ECharts funnel) and the cohort table/charts. Screenshots under
``test-output/console/<test>/``."""

from __future__ import annotations

import pytest

from shequn.analytics import services
from shequn.analytics.models import Segment
from shequn.analytics.tests.world import at, click, event, ingest, make_world, pay
from shequn.core.models import Tenant

from .conftest import Desk

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _data(tenant: Tenant) -> None:
    w = make_world(tenant, n_members=6)
    click(w, at(0, 9), member=0)
    ingest(w, [event(w, "join", i, i % 2, at(i), invite=i < 3) for i in range(5)]
           + [event(w, "message", i, 0, at(i, 12)) for i in range(3)])
    for i, amount in ((0, 10_000), (0, 20_000), (1, 5_000), (2, 9_900), (2, 19_900)):
        pay(w, i, amount, at(3 + i, 15), campaign="双11")
    services.do_refresh(tenant.pk)


def test_build_a_segment_then_view_funnel_and_cohorts(desk: Desk, tenant: Tenant) -> None:
    _data(tenant)
    desk.go("/console/shequn/analytics/segments/")
    desk.shot("segments-empty")
    desk.page.click("#segment-add")
    desk.page.get_by_test_id("segment-count").wait_for()
    desk.shot("builder-open")
    desk.page.wait_for_function("document.querySelector('[data-testid=segment-count]').innerText.includes('6')")
    desk.shot("builder-everyone")
    desk.page.fill("#seg-name", "复购会员")
    desk.page.fill("#seg-min-orders", "2")
    desk.page.wait_for_function("document.querySelector('[data-testid=segment-count]').innerText.includes(' 2 ')")
    desk.page.select_option("#seg-min_monetary", "5")
    desk.page.wait_for_function("document.querySelector('[data-testid=segment-count]').innerText.includes(' 1 ')")
    desk.shot("builder-filtered")
    desk.page.click("#segment-save")
    desk.page.wait_for_url("**/analytics/segments/")
    assert Segment.objects.get(tenant=tenant).min_monetary == 5
    assert "复购会员" in desk.page.locator("#segments").inner_text()
    desk.shot("segment-saved")

    desk.go("/console/shequn/analytics/funnel/")
    desk.page.locator("#chart-funnel canvas").wait_for()
    desk.shot("funnel-overall")
    desk.page.select_option("#funnel-by", "channel")
    desk.page.wait_for_url("**by=channel**")
    desk.page.locator("[data-testid=funnel-group]", has_text="门店").wait_for()
    desk.shot("funnel-by-channel")

    desk.go("/console/shequn/analytics/cohorts/")
    desk.page.locator("#chart-retention canvas").wait_for()
    assert "2026-10-01" in desk.page.locator("#cohort-table").inner_text()
    desk.page.select_option("#cohort-grain", "week")
    desk.page.wait_for_url("**grain=week**")
    desk.page.locator("#chart-revenue canvas").wait_for()
    desk.shot("cohorts-weekly")
