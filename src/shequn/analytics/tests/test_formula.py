"""The formula's product equals sales, and the LMDI attribution adds up to the change."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from shequn.analytics import figures as stored_figures
from shequn.analytics import selectors, services
from shequn.analytics.formula import FACTORS, Figures, decompose
from shequn.analytics.models import FormulaFigures
from shequn.core.models import Tenant

from .world import at, event, ingest, make_world, pay

positive = st.integers(1, 10_000)


@st.composite
def figures(draw: st.DrawFn) -> Figures:
    buyers = draw(positive)
    orders = buyers + draw(st.integers(0, 10_000))
    return Figures(visitors=draw(st.integers(0, 10_000)), joins=draw(positive), experienced=draw(positive),
                   buyers=buyers, orders=orders, sales_fen=draw(st.integers(1, 10**9)))


@given(figures())
def test_the_product_of_the_factors_is_sales(f: Figures) -> None:
    product = f.product()
    assert product is not None and math.isclose(product, f.sales_fen, rel_tol=1e-9)


@given(figures(), figures())
def test_the_attribution_sums_to_the_change(a: Figures, b: Figures) -> None:
    d = decompose(a, b)
    assert d is not None
    assert math.isclose(sum(d.contribution_fen.values()), b.sales_fen - a.sales_fen, abs_tol=1e-6 * max(
        a.sales_fen, b.sales_fen))
    assert math.isclose(sum(d.contribution_pct.values()), d.change_pct or 0, abs_tol=1e-6 * max(
        1.0, abs(d.change_pct or 0)) + 1e-6)


def test_a_pure_conversion_drop_is_attributed_to_conversion_only() -> None:
    before = Figures(visitors=800, joins=200, experienced=400, buyers=100, orders=150, sales_fen=1_500_000)
    after = Figures(visitors=800, joins=200, experienced=400, buyers=80, orders=120, sales_fen=1_200_000)
    d = decompose(before, after)
    assert d is not None
    assert d.change_fen == -300_000
    assert math.isclose(d.contribution_fen["conversion"], -300_000)
    assert all(abs(d.contribution_fen[k]) < 1e-6 for k in FACTORS if k != "conversion")
    assert round(d.factor_pct["conversion"]) == -20


def test_no_decomposition_when_a_factor_is_zero() -> None:
    assert decompose(Figures(), Figures(joins=1, experienced=1, buyers=1, orders=1, sales_fen=100)) is None


@pytest.mark.django_db
def test_formula_panel_on_real_rollups(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    w = make_world(tenant)
    # previous week: 4 joins, 4 buyers × 1 order × ¥100; this week: 4 joins, 2 buyers, one buys twice, ¥150 each
    ingest(w, [event(w, "join", m, 0, at(m % 3)) for m in range(4)])
    for m in range(4):
        pay(w, m, 10_000, at(1))
    ingest(w, [event(w, "join", m, 1, at(7 + m % 3)) for m in range(4)])
    pay(w, 0, 15_000, at(8))
    pay(w, 0, 15_000, at(9))
    pay(w, 1, 15_000, at(9, 11))
    services.do_refresh(tenant.pk)
    monkeypatch.setattr(selectors, "today", lambda tid: at(13).date())
    panel = selectors.formula_panel(tenant.pk, days=7)
    assert panel["sales_fen"] == 45_000 and panel["previous_sales_fen"] == 40_000
    assert panel["identity_holds"]
    assert math.isclose(sum(r["contribution_fen"] for r in panel["factors"]), 5_000)
    values = {r["key"]: r["value"] for r in panel["factors"]}
    assert values["traffic"] == 4 and values["repurchase"] == 1.5 and values["aov"] == 15_000
    assert panel["summary"].startswith("销售额 +12%")
    assert "转化率 −50%" in panel["summary"]
    assert panel["period"] == {"start": "2026-10-08", "end": "2026-10-14"}
    assert at(13).date() == dt.date(2026, 10, 14)


def test_stored_formula_figures_equal_the_live_ones(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    """The panel (tenant-wide and per community / campaign / channel) and the breakdown read from the
    rows do_refresh_formula stored equal the live ones; a stale set or another window is live."""
    w = make_world(tenant)
    ingest(w, [event(w, "join", m, m % 2, at(m % 5), invite=m % 2 == 0) for m in range(4)])
    ingest(w, [event(w, "message", m, 1, at(20 + m)) for m in range(4)])
    for m, (day, amount) in enumerate([(2, 10_000), (3, 990), (22, 15_000), (25, 5_900)]):
        pay(w, m % 3, amount, at(day), campaign="双11" if m % 2 else "")
    ingest(w, [event(w, "join", m, 0, at(24)) for m in range(2)])
    services.do_refresh(tenant.pk)
    monkeypatch.setattr(selectors, "today", lambda tid: at(27).date())
    end = at(27).date()
    scopes = [selectors.Scope(), *(selectors.Scope(community_id=c.pk) for c in w.communities),
              selectors.Scope(campaign="双11"), selectors.Scope(campaign="nope"), selectors.Scope(channel="")]
    live = [selectors.formula_panel(tenant.pk, days=30, end=end, scope=s) for s in scopes]
    live_breakdown = {by: selectors.breakdown(tenant.pk, by, days=30) for by in selectors.SLICES}
    assert stored_figures.do_refresh_formula(tenant.pk) > 0
    assert FormulaFigures.objects.filter(tenant=tenant).exists()
    assert [selectors.formula_panel(tenant.pk, days=30, scope=s) for s in scopes] == live
    assert {by: selectors.breakdown(tenant.pk, by, days=30) for by in selectors.SLICES} == live_breakdown
    assert selectors.stored_formula(tenant.pk, 30, "community") is not None
    # a stale set, a set of another day and a window not stored are not read
    FormulaFigures.objects.filter(tenant=tenant).update(
        computed_at=timezone.now() - selectors.FORMULA_STALE_AFTER - dt.timedelta(seconds=1))
    assert selectors.stored_formula(tenant.pk, 30, "") is None
    stored_figures.do_refresh_formula(tenant.pk)
    monkeypatch.setattr(selectors, "today", lambda tid: at(28).date())
    assert selectors.stored_formula(tenant.pk, 30, "") is None
    assert selectors.stored_formula(tenant.pk, 7, "") is None
