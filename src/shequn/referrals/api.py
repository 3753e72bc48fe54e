"""Referrals at /api/v1/referrals/: links (QR, poster), clicks/joins, bindings, plans, member
statements, withdrawals, leaderboards, reports and the fraud review queue. Handlers stay thin."""


from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema

from shequn.core.http import ERRORS, Page, idempotent, paginate, require

from . import leaderboard, selectors, services
from .posters import poster_png, qr_png

router = Router(tags=["referrals"])


class LinkIn(Schema):
    kind: str = "member"
    member_id: int | None = None
    community_id: int | None = None
    campaign: str = ""
    channel: str = ""
    label: str = ""
    group_ids: list[int] | None = None


class LinkOut(Schema):
    id: int
    code: str
    kind: str
    member_id: int | None
    community_id: int | None
    campaign: str
    channel: str
    url: str

    @staticmethod
    def resolve_url(obj: Any) -> str:
        return selectors.link_url(obj)


class ClickIn(Schema):
    member_id: int | None = None
    ip: str | None = None
    device_id: str = ""


class ClickOut(Schema):
    code: str
    group_id: int | None = None
    referrer_id: int | None = None
    refused: str = ""


class BindIn(Schema):
    member_id: int
    referrer_id: int


class RuleIn(Schema):
    product_kind: str = ""
    product_id: str = ""
    mode: str = "percent"
    rate_bps: int = 0
    fixed_fen: int = 0
    cap_fen: int | None = None
    level: int = 1


class PlanIn(Schema):
    name: str
    rules: list[RuleIn]
    levels: int = 1
    community_id: int | None = None
    campaign: str = ""
    refund_window_days: int = 7
    self_purchase: bool = False
    cap_per_order_fen: int | None = None


class PlanOut(Schema):
    id: int
    name: str
    warnings: list[str]


class WithdrawIn(Schema):
    member_id: int
    amount_fen: int
    payee: str = ""
    request_id: str


class WithdrawalOut(Schema):
    id: int
    member_id: int
    out_no: str
    amount_fen: int
    fee_fen: int
    status: str
    requested_at: datetime


class RejectIn(Schema):
    reason: str


class ReviewIn(Schema):
    decision: str
    note: str = ""


class RowOut(Schema):
    rank: int
    member_id: int
    value: int


class RankOut(Schema):
    rank: int | None
    value: int
    gap_to_next: int | None
    total: int


class SignalOut(Schema):
    id: int
    kind: str
    referrer_id: int
    subject_member_id: int | None
    order_id: str
    blocking: bool
    status: str
    detail: dict[str, Any]
    created_at: datetime


@router.post("/links", response={200: LinkOut, **ERRORS})
@idempotent
def create_link(request: HttpRequest, body: LinkIn) -> Any:
    p = require(request, "referrals.write")
    return services.do_get_or_create_link(p, **body.model_dump())


@router.get("/links", response={200: Page[LinkOut], **ERRORS})
def list_links(request: HttpRequest, member_id: int | None = None, cursor: str | None = None,
               limit: int = 50) -> Any:
    p = require(request, "referrals.read")
    return paginate(selectors.links_for(p.tenant_id, member_id), cursor, limit)


@router.get("/links/{code}/qr.png", response={200: None, **ERRORS})
def link_qr(request: HttpRequest, code: str) -> HttpResponse:
    p = require(request, "referrals.read")
    link = selectors.link_get(p.tenant_id, code)
    return HttpResponse(qr_png(selectors.link_url(link)), content_type="image/png")


@router.get("/links/{code}/poster.png", response={200: None, **ERRORS})
def link_poster(request: HttpRequest, code: str) -> HttpResponse:
    p = require(request, "referrals.read")
    link = selectors.link_get(p.tenant_id, code)
    png = poster_png(url=selectors.link_url(link), member_name=link.member.display_name if link.member else "",
                     community_name=link.community.name if link.community else link.label or link.channel)
    return HttpResponse(png, content_type="image/png")


@router.post("/links/{code}/click", response={200: ClickOut, **ERRORS})
def link_click(request: HttpRequest, code: str, body: ClickIn) -> Any:
    p = require(request, "referrals.write")
    selectors.link_get(p.tenant_id, code)
    res = services.do_record_click(code, member_id=body.member_id, ip=body.ip, device_id=body.device_id)
    return {"code": code, "group_id": res.group.pk if res.group else None,
            "referrer_id": res.binding.referrer_id if res.binding else None, "refused": res.refused}


@router.post("/bindings", response={200: dict[str, Any], **ERRORS})
def bind(request: HttpRequest, body: BindIn) -> Any:
    p = require(request, "referrals.write")
    b = services.do_bind(p, member_id=body.member_id, referrer_id=body.referrer_id)
    return {"member_id": b.member_id, "referrer_id": b.referrer_id, "expires_at": b.expires_at}


@router.post("/plans", response={200: PlanOut, **ERRORS})
@idempotent
def create_plan(request: HttpRequest, body: PlanIn) -> Any:
    p = require(request, "referrals.write")
    data = body.model_dump()
    plan, warnings = services.do_create_plan(p, **data)
    return {"id": plan.pk, "name": plan.name, "warnings": warnings}


@router.get("/members/{member_id}/statement", response={200: dict[str, Any], **ERRORS})
def statement(request: HttpRequest, member_id: int) -> Any:
    p = require(request, "referrals.read")
    st = selectors.member_statement(p.tenant_id, member_id)
    return st.__dict__


@router.post("/withdrawals", response={200: WithdrawalOut, **ERRORS})
def request_withdrawal(request: HttpRequest, body: WithdrawIn) -> Any:
    p = require(request, "finance.write")
    return services.do_request_withdrawal(p, member_id=body.member_id, amount_fen=body.amount_fen,
                                          idempotency_key=body.request_id, payee=body.payee)


@router.get("/withdrawals", response={200: Page[WithdrawalOut], **ERRORS})
def list_withdrawals(request: HttpRequest, status: str | None = None, cursor: str | None = None,
                     limit: int = 50) -> Any:
    p = require(request, "finance.read")
    return paginate(selectors.withdrawals_for(p.tenant_id, status), cursor, limit)


@router.post("/withdrawals/{withdrawal_id}/approve", response={200: WithdrawalOut, **ERRORS})
def approve_withdrawal(request: HttpRequest, withdrawal_id: int) -> Any:
    p = require(request, "finance.write")
    return services.do_approve_withdrawal(p, withdrawal_id)


@router.post("/withdrawals/{withdrawal_id}/reject", response={200: WithdrawalOut, **ERRORS})
def reject_withdrawal(request: HttpRequest, withdrawal_id: int, body: RejectIn) -> Any:
    p = require(request, "finance.write")
    return services.do_reject_withdrawal(p, withdrawal_id, reason=body.reason)


@router.get("/leaderboards/{metric}", response={200: list[RowOut], **ERRORS})
def leaderboard_top(request: HttpRequest, metric: str, scope: str = "all", period: str = "all",
                    n: int = 100) -> Any:
    p = require(request, "referrals.read")
    _check_board(metric, period)
    return [r.__dict__ for r in leaderboard.top(p.tenant_id, metric, scope, period, min(max(n, 1), 500))]


@router.get("/leaderboards/{metric}/members/{member_id}", response={200: RankOut, **ERRORS})
def leaderboard_rank(request: HttpRequest, metric: str, member_id: int, scope: str = "all",
                     period: str = "all") -> Any:
    p = require(request, "referrals.read")
    _check_board(metric, period)
    selectors.check_member(p.tenant_id, member_id)
    return leaderboard.my_rank(p.tenant_id, metric, member_id, scope, period).__dict__


def _check_board(metric: str, period: str) -> None:
    from shequn.core.errors import Invalid

    if metric not in leaderboard.METRICS:
        raise Invalid(f"未知的榜单: {metric}", details={"field": "path.metric", "allowed": leaderboard.METRICS})
    if period not in leaderboard.PERIODS:
        raise Invalid(f"未知的周期: {period}", details={"field": "query.period", "allowed": leaderboard.PERIODS})


@router.get("/reports/kfactor", response={200: list[dict[str, Any]], **ERRORS})
def kfactor(request: HttpRequest) -> Any:
    p = require(request, "referrals.read")
    return selectors.kfactor_report(p.tenant_id)


@router.get("/reports/top-referrers", response={200: list[dict[str, Any]], **ERRORS})
def top_referrers(request: HttpRequest, n: int = 20, metric: str = "referrals") -> Any:
    p = require(request, "referrals.read")
    _check_board(metric, "all")
    return selectors.top_referrers(p.tenant_id, min(max(n, 1), 100), metric)


@router.get("/fraud-signals", response={200: Page[SignalOut], **ERRORS})
def fraud_signals(request: HttpRequest, cursor: str | None = None, limit: int = 50) -> Any:
    p = require(request, "referrals.read")
    return paginate(selectors.open_signals(p.tenant_id), cursor, limit)


@router.post("/fraud-signals/{signal_id}/review", response={200: SignalOut, **ERRORS})
def review_signal(request: HttpRequest, signal_id: int, body: ReviewIn) -> Any:
    p = require(request, "referrals.write")
    return services.do_review_signal(p, signal_id, decision=body.decision, note=body.note)
