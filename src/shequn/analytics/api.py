"""REST API of the analytics app (``/api/v1/analytics/``): the same figures as the console — the
sales formula and its decomposition, trends, breakdowns (top movers), a community's board, funnels
(with the members at a step), cohorts, health alerts — and CSV/XLSX exports. Every read is scoped to
the caller's tenant (permission ``analytics.read``) and may be answered by the read replica
(``shequn.core.dbrouting``)."""

import csv
import datetime as dt
import io
from typing import Any, Literal

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema
from ninja.params import P, QueryEx
from openpyxl import Workbook

from shequn.communities import selectors as community_selectors
from shequn.core.dbrouting import replica_view
from shequn.core.errors import Invalid
from shequn.core.http import ERRORS, ApiDate, Id, require

from . import selectors
from .api_segments import router as segments_router

router = Router(tags=["analytics"])
# every operation here only reads: with a replica configured it may answer from it (bounded staleness)
router.add_decorator(replica_view)

Days = QueryEx[int, P(ge=1, le=366)]
Slice = Literal["community", "campaign", "channel"]
FunnelBy = Literal["campaign", "channel", "inviter_id", "live_session_id", "community_id"]
Step = Literal["clicked", "joined", "first_message", "first_order", "second_order"]
Grain = Literal["week", "month"]
Report = Literal["trend", "breakdown", "funnel", "funnel_members", "cohorts"]


class DashboardOut(Schema):
    dates: list[str]
    members: list[int]
    daily_active: list[int]
    joins: list[int]
    leaves: list[int]
    messages: list[int]


class FactorOut(Schema):
    key: str
    label: str
    help: str
    value: float | None
    previous: float | None
    change_pct: float | None
    contribution_fen: float | None


class FormulaOut(Schema):
    period: dict[str, str]
    previous_period: dict[str, str]
    figures: dict[str, int]
    previous_figures: dict[str, int]
    sales_fen: int
    previous_sales_fen: int
    product_fen: float | None
    identity_holds: bool
    repeat_rate: float | None
    change_fen: int
    summary: str
    decomposed: bool
    factors: list[FactorOut]


class TrendOut(Schema):
    dates: list[str]
    gmv_fen: list[int]
    orders: list[int]
    buyers: list[int]
    refund_fen: list[int]
    first_purchases: list[int]
    daily_active: list[int]
    messages: list[int]
    joins: list[int]
    leaves: list[int]
    visitors: list[int]


class BreakdownOut(Schema):
    key: str | int
    name: str
    sales_fen: int
    previous_sales_fen: int
    change_fen: int
    summary: str
    factors: dict[str, float | None]


class StepOut(Schema):
    step: str
    label: str
    members: int
    drop_off: int
    rate: float | None


class FunnelOut(Schema):
    key: str | int
    name: str
    steps: list[StepOut]


class CohortOut(Schema):
    cohort: str
    size: int
    retention: list[float]
    revenue_per_member_fen: list[float]


class AlertOut(Schema):
    rule: str
    level: str
    subject: str
    message: str
    community_id: int
    group_id: int


def _scope(community_id: int | None, campaign: str | None, channel: str | None) -> selectors.Scope:
    return selectors.Scope(community_id=community_id, campaign=campaign, channel=channel)


@router.get("/formula", response={200: FormulaOut, **ERRORS}, summary="销售公式与变化分解")
def formula(request: HttpRequest, days: Days = 30, community_id: Id | None = None,
            campaign: QueryEx[str | None, P(max_length=64)] = None,
            channel: QueryEx[str | None, P(max_length=64)] = None) -> Any:
    """销售额 = 流量 × 体验率 × 转化率 × 客单价 × 复购系数, for the last ``days`` days against the
    ``days`` before, with the LMDI contribution of each factor to the change (they add up to it)."""
    p = require(request, "analytics.read")
    return selectors.formula_panel(p.tenant_id, days=days, scope=_scope(community_id, campaign, channel))


@router.get("/trend", response={200: TrendOut, **ERRORS}, summary="每日趋势")
def trend(request: HttpRequest, days: Days = 90, community_id: Id | None = None) -> Any:
    p = require(request, "analytics.read")
    return selectors.sales_trend(p.tenant_id, days=days, scope=_scope(community_id, None, None))


@router.get("/breakdown", response={200: list[BreakdownOut], **ERRORS}, summary="按社群/活动/渠道拆分 (变化最大在前)")
def breakdown(request: HttpRequest, by: Slice = "community", days: Days = 30) -> Any:
    p = require(request, "analytics.read")
    return selectors.breakdown(p.tenant_id, by, days=days)


@router.get("/communities/{community_id}/dashboard", response={200: DashboardOut, **ERRORS}, summary="社群看板数据")
def community_dashboard(request: HttpRequest, community_id: Id, days: Days = 90) -> Any:
    p = require(request, "analytics.read")
    community_selectors.get_community(p.tenant_id, community_id)
    return selectors.community_dashboard(p.tenant_id, community_id, days=days, tz=selectors.tenant_tz(p.tenant_id))


@router.get("/funnel", response={200: list[FunnelOut], **ERRORS}, summary="转化漏斗")
def funnel(request: HttpRequest, by: FunnelBy | None = None, start: ApiDate | None = None,
           end: ApiDate | None = None) -> Any:
    p = require(request, "analytics.read")
    return selectors.funnel(p.tenant_id, by=by, start=start, end=end)


@router.get("/cohorts", response={200: list[CohortOut], **ERRORS}, summary="入群同期群: 留存与人均收入")
def cohorts(request: HttpRequest, grain: Grain = "month", periods: QueryEx[int, P(ge=1, le=52)] = 6) -> Any:
    p = require(request, "analytics.read")
    return selectors.cohorts(p.tenant_id, grain=grain, periods=periods)


@router.get("/alerts", response={200: list[AlertOut], **ERRORS}, summary="健康提醒")
def alerts(request: HttpRequest) -> Any:
    p = require(request, "analytics.read")
    return [a.__dict__ for a in selectors.health_alerts(p.tenant_id)]


# -- exports ----------------------------------------------------------------------------------------

def report_rows(tenant_id: int, report: str, *, days: int = 90, by: str | None = None, step: str | None = None,
                key: str | None = None, grain: str = "month") -> tuple[list[str], list[list[Any]]]:
    """Header and rows of a report, as the exports write them (money in 元)."""
    if report == "trend":
        t = selectors.sales_trend(tenant_id, days=days)
        header = ["日期", "成交额(元)", "订单数", "买家数", "退款(元)", "首单", "活跃成员", "消息", "加入", "退出",
                  "链接访客"]
        return header, [[d, t["gmv_fen"][i] / 100, t["orders"][i], t["buyers"][i], t["refund_fen"][i] / 100,
                         t["first_purchases"][i], t["daily_active"][i], t["messages"][i], t["joins"][i],
                         t["leaves"][i], t["visitors"][i]] for i, d in enumerate(t["dates"])]
    if report == "breakdown":
        rows = selectors.breakdown(tenant_id, by or "community", days=min(days, 183))
        return (["名称", "本期销售额(元)", "上期销售额(元)", "变化(元)", "说明"],
                [[r["name"], r["sales_fen"] / 100, r["previous_sales_fen"] / 100, r["change_fen"] / 100, r["summary"]]
                 for r in rows])
    if report == "funnel":
        out = []
        for f in selectors.funnel(tenant_id, by=by):
            out += [[f["name"], s["label"], s["members"], s["drop_off"]] for s in f["steps"]]
        return ["分组", "步骤", "人数", "流失"], out
    if report == "funnel_members":
        members = selectors.funnel_members(tenant_id, step or "joined", by=by, key=_key(by, key))
        return (["会员 ID", "昵称", "到达的最后一步", "入群时间", "首单时间"],
                [[m["member_id"], m["display_name"], m["last_step"], _fmt(m["joined_at"]),
                  _fmt(m["first_order_at"])] for m in members])
    rows_c = selectors.cohorts(tenant_id, grain=grain)
    return (["同期群", "人数", "各期留存", "各期人均收入(元)"],
            [[c["cohort"], c["size"], " / ".join(f"{r * 100:.0f}%" for r in c["retention"]),
              " / ".join(f"{v / 100:.2f}" for v in c["revenue_per_member_fen"])] for c in rows_c])


def _key(by: str | None, key: str | None) -> Any:
    if by in ("inviter_id", "live_session_id", "community_id"):
        return int(key) if key and key.isdigit() else 0
    return key or ""


def _fmt(value: dt.datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M") if value else ""


def render_file(name: str, header: list[str], rows: list[list[Any]], fmt: str) -> HttpResponse:
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    if fmt == "xlsx":
        wb = Workbook(write_only=True)
        ws = wb.create_sheet(name[:31])
        ws.append(header)
        for row in rows:
            ws.append(row)
        buf = io.BytesIO()
        wb.save(buf)
        resp = HttpResponse(buf.getvalue(),
                            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    else:
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(rows)
        resp = HttpResponse(text.getvalue().encode("utf-8-sig"), content_type="text/csv; charset=utf-8")
    resp["Content-Disposition"] = f'attachment; filename="analytics-{name}-{stamp}.{fmt}"'
    return resp


class ExportQuery(Schema):
    report: Report
    format: Literal["csv", "xlsx"] = "csv"
    days: int = Field(90, ge=1, le=366)
    by: Slice | FunnelBy | None = None
    step: Step | None = None
    key: str | None = Field(None, max_length=64)
    grain: Grain = "month"


@router.get("/export", response={200: None, **ERRORS}, summary="导出报表 (CSV / XLSX)")
def export(request: HttpRequest, q: Query[ExportQuery]) -> HttpResponse:
    """``trend``, ``breakdown`` (by community/campaign/channel), ``funnel`` and ``funnel_members`` (the
    members who reached ``step``, optionally for one ``by``=``key`` group), ``cohorts``; money in 元."""
    p = require(request, "analytics.read")
    report, by = q.report, q.by
    if by is not None and by not in (selectors.SLICES if report == "breakdown" else selectors.FUNNEL_BY):
        raise Invalid(_("这个报表不能按 %(by)s 拆分") % {"by": by}, details=[{"field": "query.by", "message": by}])
    header, rows = report_rows(p.tenant_id, report, days=q.days, by=by, step=q.step, key=q.key, grain=q.grain)
    return render_file(report, header, rows, q.format)


# the segments (reads and writes, on the primary) sit beside the read-only figures, not under them:
# a child router would inherit the replica decorator
reads = router
router = Router(tags=["analytics"])
router.add_router("", reads)
router.add_router("/segments", segments_router)
