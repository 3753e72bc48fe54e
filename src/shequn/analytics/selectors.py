"""Tenant-scoped reads behind every dashboard: they read the rollups (``DailyRollup``), the member-day
facts and the journeys — never the raw activity stream. Days are local days in the tenant's zone."""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Count, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from shequn.communities import selectors as community_selectors
from shequn.communities.models import ChatGroup, Community
from shequn.core.models import Tenant
from shequn.members import selectors as member_selectors
from shequn.members.models import Member

from .formula import FACTORS, Decomposition, Figures, decompose
from .models import CohortCell, DailyDistinct, DailyRollup, FormulaFigures, MemberDay, MemberJourney
from .presence import members_present

FACTOR_LABELS = {
    "traffic": gettext_lazy("流量"), "experience": gettext_lazy("体验率"), "conversion": gettext_lazy("转化率"),
    "aov": gettext_lazy("客单价"), "repurchase": gettext_lazy("复购系数"),
}
FACTOR_HELP = {
    "traffic": gettext_lazy("链接访客 + 入群人数"),
    "experience": gettext_lazy("体验人数 ÷ 流量; 体验 = 入群、首次发言、首单或购买"),
    "conversion": gettext_lazy("买家 ÷ 体验人数"),
    "aov": gettext_lazy("成交额 ÷ 订单数"),
    "repurchase": gettext_lazy("订单数 ÷ 买家 (人均订单)"),
}
SLICES = ("community", "campaign", "channel")
#: the member-day rows the formula's distinct counts need (experienced or bought): the condition of
#: the partial index ``analytics_memberday_exp_idx``, written the same way so both databases use it
EXPERIENCED_OR_BOUGHT = Q(experienced=True) | Q(orders__gt=0)
#: the windows whose formula figures ``figures.do_refresh_formula`` stores (every 5 minutes), and how
#: old a stored set may be before the readers compute live again
FORMULA_STORED_DAYS = (30,)
FORMULA_STALE_AFTER = dt.timedelta(minutes=15)
_FIGURE_FIELDS = ("visitors", "joins", "experienced", "buyers", "orders", "sales_fen", "repeat_buyers", "refund_fen")


def stored_formula(tenant_id: int, days: int, slice_: str) -> dict[tuple[str, str], Figures] | None:
    """The stored figures of one slice (``""``: tenant-wide) by (key, period), or None when there is no
    fresh set for the window ending today (then the caller computes live)."""
    if days not in FORMULA_STORED_DAYS:
        return None
    end = today(tenant_id)
    rows = list(FormulaFigures.objects.filter(
        tenant_id=tenant_id, days=days, slice__in=["", slice_], end_day=end,
        computed_at__gte=timezone.now() - FORMULA_STALE_AFTER).values_list("slice", "key", "period", *_FIGURE_FIELDS))
    if not any(r[0] == "" for r in rows):  # the tenant-wide rows mark a complete set
        return None
    return {(key, period): Figures(*values) for sl, key, period, *values in rows if sl == slice_}


def tenant_tz(tenant_id: int) -> str:
    return Tenant.objects.filter(pk=tenant_id).values_list("time_zone", flat=True).first() or "Asia/Shanghai"


def today(tenant_id: int) -> dt.date:
    return timezone.now().astimezone(ZoneInfo(tenant_tz(tenant_id))).date()


@dataclass(frozen=True)
class Scope:
    """Which slice of the tenant: a community, a campaign, a channel (None = all)."""

    community_id: int | None = None
    campaign: str | None = None
    channel: str | None = None

    def apply(self, qs: QuerySet[Any]) -> QuerySet[Any]:
        if self.community_id is not None:
            qs = qs.filter(community_id=self.community_id)
        if self.campaign is not None:
            qs = qs.filter(campaign=self.campaign)
        if self.channel is not None:
            qs = qs.filter(channel=self.channel)
        return qs


def rollups(tenant_id: int, start: dt.date, end: dt.date, scope: Scope = Scope()) -> QuerySet[DailyRollup]:
    """Rows of days ``start``..``end`` inclusive."""
    return scope.apply(DailyRollup.objects.filter(tenant_id=tenant_id, day__gte=start, day__lte=end))


def member_days(tenant_id: int, start: dt.date, end: dt.date, scope: Scope = Scope()) -> QuerySet[MemberDay]:
    return scope.apply(MemberDay.objects.filter(tenant_id=tenant_id, day__gte=start, day__lte=end))


def period_figures(tenant_id: int, start: dt.date, end: dt.date, scope: Scope = Scope()) -> Figures:
    sums = rollups(tenant_id, start, end, scope).aggregate(
        visitors=Sum("visitors"), joins=Sum("joins"), orders=Sum("orders"), sales=Sum("gmv_fen"),
        refund=Sum("refund_fen"))
    facts = member_days(tenant_id, start, end, scope).filter(EXPERIENCED_OR_BOUGHT)  # the partial index's rows
    distinct = facts.aggregate(
        experienced=Count("member_id", distinct=True),
        buyers=Count("member_id", filter=Q(orders__gt=0), distinct=True))
    per_buyer = facts.filter(orders__gt=0).values("member_id").annotate(n=Sum("orders"))
    repeat = per_buyer.filter(n__gte=2).count() if distinct["buyers"] else 0
    return Figures(visitors=sums["visitors"] or 0, joins=sums["joins"] or 0, experienced=distinct["experienced"],
                   buyers=distinct["buyers"], orders=sums["orders"] or 0, sales_fen=sums["sales"] or 0,
                   repeat_buyers=repeat, refund_fen=sums["refund"] or 0)


def _pct(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:+.0f}%".replace("-", "−")


def _factor_value(key: str, value: float | None) -> str:
    if value is None:
        return "—"
    if key == "traffic":
        return f"{value:,.0f}"
    if key == "aov":
        return f"¥{value / 100:,.2f}"
    if key == "repurchase":
        return f"{value:.2f}"
    return f"{value * 100:.1f}%"


def summary_line(decomposition: Decomposition | None, before: Figures, after: Figures) -> str:
    """"销售额 −18%: 转化率 −25%, 客单价 +6%, …" — the factors ordered by the size of their contribution."""
    if decomposition is None:
        if before.sales_fen == 0:
            return _("上一周期没有销售额, 无法分解变化")
        return _("有因子为 0 (流量、体验、买家或订单), 无法分解变化")
    parts = sorted(FACTORS, key=lambda k: -abs(decomposition.contribution_fen[k]))
    factors = ", ".join(f"{FACTOR_LABELS[k]} {_pct(decomposition.factor_pct[k])}" for k in parts)
    return f"{_('销售额')} {_pct(decomposition.change_pct)}: {factors}"


def formula_panel(tenant_id: int, *, days: int = 30, end: dt.date | None = None, scope: Scope = Scope()
                  ) -> dict[str, Any]:
    """The formula for the last ``days`` days against the ``days`` before: each factor's value, the
    product (equal to sales), and the LMDI attribution of the change. Without an explicit ``end``, a
    stored window and at most one scope dimension, the counts come from the stored figures
    (:mod:`.figures`, refreshed every 5 minutes); otherwise they are computed live."""
    explicit_end = end
    end = end or today(tenant_id)
    start = end - dt.timedelta(days=days - 1)
    prev_end = start - dt.timedelta(days=1)
    prev_start = prev_end - dt.timedelta(days=days - 1)
    stored = None
    if explicit_end is None:  # the stored set (figures.do_refresh_formula) covers today's window, one slice
        dims = [(n, v) for n, v in (("community", scope.community_id), ("campaign", scope.campaign),
                                    ("channel", scope.channel)) if v is not None]
        if len(dims) <= 1:
            slice_, key = dims[0] if dims else ("", "")
            found = stored_formula(tenant_id, days, slice_)
            if found is not None:
                stored = (found.get((str(key), "now"), Figures()), found.get((str(key), "before"), Figures()))
    if stored is not None:
        now, before = stored
    else:
        now = period_figures(tenant_id, start, end, scope)
        before = period_figures(tenant_id, prev_start, prev_end, scope)
    decomposition = decompose(before, now)
    f_now, f_before = now.factors(), before.factors()
    rows = [{
        "key": k, "label": str(FACTOR_LABELS[k]), "help": str(FACTOR_HELP[k]),
        "value": f_now[k], "display": _factor_value(k, f_now[k]),
        "previous": f_before[k], "previous_display": _factor_value(k, f_before[k]),
        "change_pct": decomposition.factor_pct[k] if decomposition else None,
        "change_display": _pct(decomposition.factor_pct[k]) if decomposition else "—",
        "contribution_fen": decomposition.contribution_fen[k] if decomposition else None,
        "contribution_display": f"¥{decomposition.contribution_fen[k] / 100:+,.2f}" if decomposition else "—",
    } for k in FACTORS]
    product = now.product()
    return {
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "previous_period": {"start": prev_start.isoformat(), "end": prev_end.isoformat()},
        "figures": now.__dict__, "previous_figures": before.__dict__,
        "sales_fen": now.sales_fen, "previous_sales_fen": before.sales_fen,
        "sales_yuan": f"{now.sales_fen / 100:,.2f}", "previous_sales_yuan": f"{before.sales_fen / 100:,.2f}",
        "change_yuan": f"{(now.sales_fen - before.sales_fen) / 100:+,.2f}",
        "product_fen": product, "identity_holds": product is not None and abs(product - now.sales_fen) < 0.5,
        "repeat_rate": now.repeat_rate,
        "factors": rows,
        "change_fen": now.sales_fen - before.sales_fen,
        "change_display": _pct(decomposition.change_pct) if decomposition else "—",
        "summary": summary_line(decomposition, before, now),
        "decomposed": decomposition is not None,
    }


def _dates(end: dt.date, days: int) -> list[dt.date]:
    return [end - dt.timedelta(days=days - 1 - i) for i in range(days)]


def sales_trend(tenant_id: int, *, days: int = 90, scope: Scope = Scope()) -> dict[str, Any]:
    """Daily GMV (fen), orders, buyers (distinct per day), refunds and first purchases."""
    dates = _dates(today(tenant_id), days)
    per_day = rollups(tenant_id, dates[0], dates[-1], scope).values("day").annotate(
        gmv=Sum("gmv_fen"), orders=Sum("orders"), refund=Sum("refund_fen"), firsts=Sum("first_purchases"),
        messages=Sum("messages"), joins=Sum("joins"), leaves=Sum("leaves"), visitors=Sum("visitors"))
    sums: dict[dt.date, dict[str, Any]] = {r["day"]: dict(r) for r in per_day}
    if scope.campaign is None and scope.channel is None:  # stored per day (DailyDistinct)
        stored = DailyDistinct.objects.filter(
            tenant_id=tenant_id, community_id=-1 if scope.community_id is None else scope.community_id,
            day__gte=dates[0], day__lte=dates[-1]).values_list("day", "active_members", "buyers")
        active = {d: a for d, a, _b in stored}
        buyers = {d: b for d, _a, b in stored}
    else:
        facts = member_days(tenant_id, dates[0], dates[-1], scope).values("day")
        buyers = {r["day"]: r["n"] for r in facts.filter(orders__gt=0).annotate(n=Count("member_id", distinct=True))}
        active = {r["day"]: r["n"] for r in facts.filter(active=True).annotate(n=Count("member_id", distinct=True))}

    def series(name: str) -> list[int]:
        return [int((sums.get(d) or {}).get(name) or 0) for d in dates]

    return {"dates": [d.isoformat() for d in dates], "gmv_fen": series("gmv"), "orders": series("orders"),
            "refund_fen": series("refund"), "first_purchases": series("firsts"), "messages": series("messages"),
            "joins": series("joins"), "leaves": series("leaves"), "visitors": series("visitors"),
            "buyers": [buyers.get(d, 0) for d in dates], "daily_active": [active.get(d, 0) for d in dates]}


def _figures_by(tenant_id: int, column: str, start: dt.date, end: dt.date) -> dict[Any, Figures]:
    """``period_figures`` for every value of ``column`` at once: three grouped queries over the
    rollups and the member-day facts (not three queries per value)."""
    sums = {r[column]: r for r in rollups(tenant_id, start, end).values(column).annotate(
        visitors=Sum("visitors"), joins=Sum("joins"), orders=Sum("orders"), sales=Sum("gmv_fen"),
        refund=Sum("refund_fen"))}
    facts = member_days(tenant_id, start, end).filter(EXPERIENCED_OR_BOUGHT)  # the partial index's rows
    distinct = {r[column]: r for r in facts.values(column).annotate(
        experienced=Count("member_id", distinct=True),
        buyers=Count("member_id", filter=Q(orders__gt=0), distinct=True))}
    repeat: Counter[Any] = Counter(
        k for k, _m in facts.filter(orders__gt=0).values_list(column, "member_id").annotate(n=Sum("orders"))
        .filter(n__gte=2).values_list(column, "member_id"))
    out = {}
    for key in set(sums) | set(distinct):
        s, d = sums.get(key) or {}, distinct.get(key) or {}
        out[key] = Figures(visitors=s.get("visitors") or 0, joins=s.get("joins") or 0,
                           experienced=d.get("experienced") or 0, buyers=d.get("buyers") or 0,
                           orders=s.get("orders") or 0, sales_fen=s.get("sales") or 0,
                           repeat_buyers=repeat[key], refund_fen=s.get("refund") or 0)
    return out


def breakdown(tenant_id: int, by: str, *, days: int = 30) -> list[dict[str, Any]]:
    """The formula per community / campaign / channel, with the change against the period before;
    ordered by the absolute change in sales (the top movers first). Six grouped queries whatever the
    number of slices."""
    if by not in SLICES:
        raise ValueError(by)
    end = today(tenant_id)
    start = end - dt.timedelta(days=days - 1)
    prev_end = start - dt.timedelta(days=1)
    prev_start = prev_end - dt.timedelta(days=days - 1)
    column = "community_id" if by == "community" else by
    rows = stored_formula(tenant_id, days, by)
    if rows is not None:  # stored by figures.do_refresh_formula (every 5 minutes)
        now_by: dict[Any, Figures] = {}
        before_by: dict[Any, Figures] = {}
        for (key, period), f in rows.items():
            (now_by if period == "now" else before_by)[int(key) if by == "community" else key] = f
    else:
        now_by, before_by = _figures_by(tenant_id, column, start, end), _figures_by(tenant_id, column, prev_start,
                                                                                    prev_end)
    keys = sorted((k for k in set(now_by) | set(before_by) if k not in (0, "")), key=str)
    names = dict(Community.objects.filter(tenant_id=tenant_id).values_list("pk", "name")) if by == "community" else {}
    out = []
    for key in keys:
        now, before = now_by.get(key, Figures()), before_by.get(key, Figures())
        decomposition = decompose(before, now)
        out.append({"key": key, "name": names.get(key, str(key)), "sales_fen": now.sales_fen,
                    "previous_sales_fen": before.sales_fen, "change_fen": now.sales_fen - before.sales_fen,
                    "change_display": _pct(decomposition.change_pct) if decomposition else "—",
                    "summary": summary_line(decomposition, before, now),
                    "factors": now.factors()})
    return sorted(out, key=lambda r: -abs(r["change_fen"]))


# -- the boards (moved here from communities.selectors and console.dashboard) -----------------------

def headline_figures(tenant_id: int, tz: str | None = None) -> dict[str, int]:
    now = timezone.now()
    day = now.astimezone(ZoneInfo(tz or tenant_tz(tenant_id))).date()
    members = member_selectors.members(tenant_id)
    return {
        "members": members.count(),
        "active_7d": members.filter(last_active_at__gte=now - dt.timedelta(days=7)).count(),
        "communities": community_selectors.communities(tenant_id).count(),
        "messages_today": DailyRollup.objects.filter(tenant_id=tenant_id, day=day).aggregate(
            n=Sum("messages"))["n"] or 0,
    }


def community_dashboard(tenant_id: int, community_id: int, *, days: int = 90, tz: str = "Asia/Shanghai"
                        ) -> dict[str, Any]:
    """Daily series for a community's board: members (the stored members-present count of
    :mod:`.presence`, kept from every membership write), joins and leaves (from the membership
    history, so manual adds and imports count), daily active members and messages (from the rollups)."""
    zone = ZoneInfo(tz)
    end = timezone.now().astimezone(zone).date()
    dates = _dates(end, days)
    ms = community_selectors.memberships(tenant_id, community_id=community_id)
    start = dt.datetime.combine(dates[0], dt.time.min, tzinfo=zone)
    joins = _per_day(ms.filter(joined_at__gte=start), "joined_at", zone)
    leaves = _per_day(ms.filter(left_at__gte=start), "left_at", zone)
    trend = sales_trend(tenant_id, days=days, scope=Scope(community_id=community_id))
    if tz == tenant_tz(tenant_id):  # the stored count is kept in the tenant's zone
        members = members_present(tenant_id, community_id, dates)
    else:
        members = members_per_day(ms, dates, zone)
    return {"dates": trend["dates"], "members": members, "daily_active": trend["daily_active"],
            "joins": [joins.get(d, 0) for d in dates], "leaves": [leaves.get(d, 0) for d in dates],
            "messages": trend["messages"]}


def _per_day(qs: QuerySet[Any], field: str, zone: ZoneInfo) -> Counter[dt.date]:
    """Rows per local day of ``field`` (the database groups; only the window's rows are read)."""
    out: Counter[dt.date] = Counter()
    for day, n in qs.annotate(day=TruncDate(field, tzinfo=zone)).values("day").annotate(n=Count("id")).values_list(
            "day", "n"):
        out[day] += n
    return out


def members_per_day(ms: QuerySet[Any], dates: list[dt.date], zone: ZoneInfo) -> list[int]:
    """Distinct members in the community at the end of each day: a member counts when one of their
    stays (a membership row, per group) covers the cut ``joined_at < cut <= left_at`` (or is open).

    Exact and cheap at scale. Relative to the window's first and last cut (``lo``, ``hi``) a stay
    either misses every cut (ended before ``lo``, starts at or after ``hi``), covers every cut
    (started before ``lo``, open or ending at or after ``hi``) or starts or ends inside the window.
    Members with a stay of the second kind are counted once (their ids read in one scan); only the stays of the
    third kind of the other members are swept in Python — merged per member (several groups,
    re-joins), each merged stay adds +1 from the first cut after it starts and −1 after the last cut
    it reaches."""
    cuts = [dt.datetime.combine(d + dt.timedelta(days=1), dt.time.min, tzinfo=zone) for d in dates]
    lo, hi = cuts[0], cuts[-1]
    throughout = ms.filter(Q(joined_at__lt=lo), Q(left_at__isnull=True) | Q(left_at__gte=hi))
    # the ids alone (one scan of the community's rows, whatever the planner knows): their number is
    # the constant part, and membership in the set drops their in-window stays below
    present = set(throughout.values_list("member_id", flat=True))
    stays: dict[int, list[tuple[dt.datetime, dt.datetime | None]]] = defaultdict(list)
    in_window = ms.filter(Q(joined_at__gte=lo, joined_at__lt=hi) | Q(left_at__gte=lo, left_at__lt=hi))
    for member_id, joined, left in in_window.values_list("member_id", "joined_at", "left_at"):
        if member_id not in present:
            stays[member_id].append((joined, left))
    still = len(present)
    delta = [0] * (len(cuts) + 1)
    for rows in stays.values():
        rows.sort(key=lambda r: r[0])
        merged: list[list[Any]] = []
        for joined, left in rows:
            if merged and (merged[-1][1] is None or joined <= merged[-1][1]):
                if merged[-1][1] is not None and (left is None or left > merged[-1][1]):
                    merged[-1][1] = left
                continue
            merged.append([joined, left])
        for joined, left in merged:
            first = bisect_right(cuts, joined)  # the first cut with joined < cut
            last = len(cuts) if left is None else bisect_right(cuts, left)  # cuts <= left are covered
            if first < last:
                delta[first] += 1
                delta[last] -= 1
    out, running = [], still
    for i in range(len(cuts)):
        running += delta[i]
        out.append(running)
    return out


# -- health ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Alert:
    rule: str
    level: str  # "red" | "amber"
    subject: str
    message: str
    community_id: int = 0
    group_id: int = 0


def health_alerts(tenant_id: int, *, end: dt.date | None = None, quiet_min_before: int = 10) -> list[Alert]:
    """Rules over the rollups: dead group (members but no message in 7 days), going quiet (messages
    in the last 7 days below half of the 7 before, at least ``quiet_min_before`` before), leave wave
    (more leaves than joins, 5+ leaves), sales drop (sales down 30%+ week over week)."""
    end = end or today(tenant_id)
    week0, week1 = end - dt.timedelta(days=6), end - dt.timedelta(days=13)
    per_group: dict[int, dict[str, int]] = defaultdict(lambda: {"now": 0, "before": 0, "joins": 0, "leaves": 0})
    for gid, day, msgs, joins, leaves in (DailyRollup.objects.filter(tenant_id=tenant_id, day__gte=week1, day__lte=end)
                                          .exclude(group_id=0)
                                          .values_list("group_id", "day", "messages", "joins", "leaves")):
        g = per_group[gid]
        g["now" if day >= week0 else "before"] += msgs
        if day >= week0:
            g["joins"] += joins
            g["leaves"] += leaves
    groups = {pk: (name, cid) for pk, name, cid in ChatGroup.objects.filter(tenant_id=tenant_id, is_active=True)
              .values_list("pk", "name", "community_id")}
    empty = {"now": 0, "before": 0, "joins": 0, "leaves": 0}
    # members (open memberships) are counted only for the groups without a message in 7 days: the
    # dead-group rule is the only one that needs them, and counting every group's scanned them all
    silent = [gid for gid in groups if per_group.get(gid, empty)["now"] == 0]
    members = dict(community_selectors.memberships(tenant_id, current=True).filter(group_id__in=silent)
                   .order_by().values_list("group_id").annotate(n=Count("pk"))) if silent else {}
    alerts = []
    for gid, (name, community_id) in sorted(groups.items()):
        g = per_group.get(gid, empty)
        n_members = members.get(gid, 0)
        if n_members and g["now"] == 0:
            alerts.append(Alert("dead_group", "red", name,
                                _("近 7 天没有消息 (%(n)s 位成员)") % {"n": n_members}, community_id, gid))
        elif g["before"] >= quiet_min_before and g["now"] * 2 < g["before"]:
            alerts.append(Alert("going_quiet", "amber", name,
                                _("近 7 天消息 %(now)s 条, 前 7 天 %(before)s 条") % g, community_id, gid))
        if g["leaves"] >= 5 and g["leaves"] > g["joins"]:
            alerts.append(Alert("leave_wave", "amber", name,
                                _("近 7 天退出 %(leaves)s 人, 加入 %(joins)s 人") % g, community_id, gid))
    # sales of the two weeks (what period_figures sums from the same rows), in one query
    sales = rollups(tenant_id, week1, end).aggregate(now=Sum("gmv_fen", filter=Q(day__gte=week0)),
                                                     before=Sum("gmv_fen", filter=Q(day__lt=week0)))
    now_fen, before_fen = sales["now"] or 0, sales["before"] or 0
    if before_fen and now_fen * 10 < before_fen * 7:
        alerts.append(Alert("sales_drop", "red", _("销售额"), _("近 7 天 ¥%(now).2f, 前 7 天 ¥%(before).2f") % {
            "now": now_fen / 100, "before": before_fen / 100}))
    return alerts


# -- funnels and cohorts --------------------------------------------------------------------------

FUNNEL_STEPS = ("clicked", "joined", "first_message", "first_order", "second_order")
FUNNEL_LABELS = {"clicked": gettext_lazy("点击邀请"), "joined": gettext_lazy("入群"),
                 "first_message": gettext_lazy("首次发言"), "first_order": gettext_lazy("首单"),
                 "second_order": gettext_lazy("第二单")}
FUNNEL_BY = ("campaign", "channel", "inviter_id", "live_session_id", "community_id")


def _journeys(tenant_id: int, start: dt.date | None, end: dt.date | None) -> QuerySet[MemberJourney]:
    qs = MemberJourney.objects.filter(tenant_id=tenant_id)
    zone = ZoneInfo(tenant_tz(tenant_id))
    entry = Q(clicked_at__isnull=False) | Q(joined_at__isnull=False)
    qs = qs.filter(entry)
    if start is not None:
        since = dt.datetime.combine(start, dt.time.min, tzinfo=zone)
        qs = qs.filter(Q(clicked_at__gte=since) | Q(clicked_at__isnull=True, joined_at__gte=since))
    if end is not None:
        until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
        qs = qs.filter(Q(clicked_at__lt=until) | Q(clicked_at__isnull=True, joined_at__lt=until))
    return qs


def _steps(j: MemberJourney) -> list[str]:
    """The steps a journey reached, in funnel order; a step counts only after the previous one."""
    reached = []
    chain = [("clicked", j.clicked_at or j.joined_at), ("joined", j.joined_at), ("first_message", j.first_message_at),
             ("first_order", j.first_order_at), ("second_order", j.second_order_at)]
    for step, when in chain:
        if when is None:
            break
        reached.append(step)
    return reached


def funnel(tenant_id: int, *, by: str | None = None, start: dt.date | None = None, end: dt.date | None = None
           ) -> list[dict[str, Any]]:
    """invite click → join → first message → first order → second order, for people who entered
    (clicked, or joined without a tracked click) in ``start``..``end``; one funnel per value of ``by``
    (or one overall). A member who joined without a click counts as having clicked."""
    if by is not None and by not in FUNNEL_BY:
        raise ValueError(by)
    # one grouped query (the steps of _steps as nested conditions), not every journey into Python
    reached = Q()
    counts_sql: dict[str, Any] = {}
    for step, column in zip(FUNNEL_STEPS, (None, "joined_at", "first_message_at", "first_order_at",
                                           "second_order_at"), strict=True):
        if column is not None:
            reached &= Q(**{f"{column}__isnull": False})
        counts_sql[f"n_{step}"] = Count("id", filter=reached) if column is not None else Count("id")
    qs = _journeys(tenant_id, start, end)
    rows = qs.values(by).annotate(**counts_sql) if by else [qs.aggregate(**counts_sql)]
    groups: dict[Any, Counter[str]] = defaultdict(Counter)
    for row in rows:
        if row["n_clicked"]:
            groups[row[by] if by else ""].update({step: row[f"n_{step}"] for step in FUNNEL_STEPS})
    names: dict[Any, str] = {}
    if by == "inviter_id":
        names = dict(Member.objects.filter(tenant_id=tenant_id, pk__in=list(groups)).values_list("pk", "display_name"))
    elif by == "community_id":
        names = dict(Community.objects.filter(tenant_id=tenant_id, pk__in=list(groups)).values_list("pk", "name"))
    out = []
    for key, counts in sorted(groups.items(), key=lambda kv: -kv[1]["clicked"]):
        steps = []
        previous = None
        for step in FUNNEL_STEPS:
            n = counts[step]
            steps.append({"step": step, "label": str(FUNNEL_LABELS[step]), "members": n,
                          "drop_off": (previous - n) if previous is not None else 0,
                          "rate": (n / previous) if previous else None})
            previous = n
        out.append({"key": key, "name": names.get(key, str(key) if key not in ("", 0) else _("未归因")),
                    "steps": steps})
    return out


def funnel_members(tenant_id: int, step: str, *, by: str | None = None, key: Any = None,
                   start: dt.date | None = None, end: dt.date | None = None) -> list[dict[str, Any]]:
    """The members who reached ``step`` (and the last step they reached) — for export."""
    if step not in FUNNEL_STEPS or (by is not None and by not in FUNNEL_BY):
        raise ValueError(step)
    qs = _journeys(tenant_id, start, end)
    if by is not None:
        qs = qs.filter(**{by: key})
    reached = {j.member_id: (j, _steps(j)) for j in qs.iterator()}
    ids = [mid for mid, (_j, steps) in reached.items() if step in steps]
    names = dict(Member.objects.filter(tenant_id=tenant_id, pk__in=ids).values_list("pk", "display_name"))
    return [{"member_id": mid, "display_name": names.get(mid, ""), "last_step": str(FUNNEL_LABELS[steps[-1]]),
             "joined_at": j.joined_at, "first_order_at": j.first_order_at}
            for mid in sorted(ids) for j, steps in [reached[mid]]]


def _period_start(day: dt.date, grain: str) -> dt.date:
    if grain == "week":
        return day - dt.timedelta(days=day.weekday())
    return day.replace(day=1)


def _periods_between(a: dt.date, b: dt.date, grain: str) -> int:
    if grain == "week":
        return (b - a).days // 7
    return (b.year - a.year) * 12 + b.month - a.month


def _period_bounds(first: dt.date, last: dt.date, grain: str) -> list[dt.date]:
    """The starts of every week/month from ``first``'s period to ``last``'s, plus the next one."""
    out = [_period_start(first, grain)]
    while out[-1] <= last:
        d = out[-1]
        out.append(d + dt.timedelta(days=7) if grain == "week" else (d + dt.timedelta(days=32)).replace(day=1))
    return out


def _case(column: str, bounds: list[Any]) -> tuple[str, list[Any]]:
    """``CASE WHEN column < b1 THEN 0 WHEN column < b2 THEN 1 … END`` — the index of the period a
    value falls in, computed by the database on both engines (no time-zone functions needed: the
    bounds are computed here, in the tenant's zone)."""
    parts, params = [], []
    for i, b in enumerate(bounds[1:]):
        parts.append(f"WHEN {column} < %s THEN {i}")
        params.append(b)
    return "CASE " + " ".join(parts) + " END", params


def cohorts(tenant_id: int, *, grain: str = "month", periods: int = 6) -> list[dict[str, Any]]:
    """Members by the week/month of their first join: how many, and for each later period the share
    still active and the revenue per member (paid GMV ÷ cohort size, fen).

    Two grouped queries: cohort sizes over the journeys (the week/month of a join time is a ``CASE``
    over bounds computed in the tenant's zone, so the same SQL runs on SQLite and PostgreSQL), and
    active members / GMV per (cohort, period) read from ``CohortCell`` (the member × week/month rollup
    ``MemberPeriod`` grouped by cohort, kept with it) — cohorts × periods rows, instead of every
    member-day row of the window joined to the journeys."""
    if grain not in ("week", "month"):
        raise ValueError(grain)
    zone = ZoneInfo(tenant_tz(tenant_id))
    journeys = MemberJourney.objects.filter(tenant_id=tenant_id, joined_at__isnull=False)
    span = journeys.aggregate(lo=Min("joined_at"), hi=Max("joined_at"))
    if span["lo"] is None:
        return []
    last_day = max(span["hi"].astimezone(zone).date(), today(tenant_id))
    starts = _period_bounds(span["lo"].astimezone(zone).date(), last_day, grain)
    ops = connection.ops
    instants = [ops.adapt_datetimefield_value(dt.datetime.combine(d, dt.time.min, tzinfo=zone)) for d in starts]
    jt = MemberJourney._meta.db_table
    cohort_sql, cohort_params = _case("j.joined_at", instants)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {cohort_sql} AS c, COUNT(*) FROM {jt} j "  # noqa: S608 (table names from the models, values bound)
            "WHERE j.tenant_id = %s AND j.joined_at IS NOT NULL GROUP BY c", [*cohort_params, tenant_id])
        sizes = {int(c): n for c, n in cursor.fetchall() if c is not None}
    index = {d: i for i, d in enumerate(starts[:-1])}
    cells: dict[tuple[int, int], tuple[int, int]] = {}
    for cohort, period, active, gmv in CohortCell.objects.filter(
            tenant_id=tenant_id, grain=grain, period__gte=starts[0], period__lt=starts[-1]).values_list(
            "cohort", "period", "active_members", "gmv_fen"):
        if cohort in index and period in index:
            cells[(index[cohort], index[period])] = (active, int(gmv))
    out = []
    for c in sorted(sizes):
        size = sizes[c]
        row = [cells.get((c, c + k), (0, 0)) for k in range(periods)]
        out.append({"cohort": starts[c].isoformat(), "size": size,
                    "retention": [n / size for n, _g in row],
                    "revenue_per_member_fen": [g / size for _n, g in row]})
    return out
