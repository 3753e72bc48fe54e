"""Referrals at /api/v1/referrals/: links (QR, poster), clicks/joins, bindings, plans, member
statements, withdrawals, leaderboards, reports and the fraud review queue. Handlers stay thin."""


from datetime import datetime
from typing import Annotated, Any, Literal

from django.http import HttpRequest, HttpResponse
from ninja import Field, Router, Schema

from shequn.core.errors import Invalid
from shequn.core.http import (
    ERRORS,
    BodyIn,
    Fen,
    Id,
    IpAddress,
    NonNegative,
    PositiveFen,
    idempotent,
    max_len,
    patch_changes,
    require,
)
from shequn.core.models import Tenant
from shequn.core.pagination import KeysetPagination, paginate
from shequn.members.selectors import check_member

from . import leaderboard, selectors, services
from .api_payouts import router as payouts_router
from .models import (
    Alliance,
    AllianceInvitation,
    CommissionPlan,
    CommissionRule,
    FissionTask,
    InviteLink,
    LinkEvent,
    Withdrawal,
    WithdrawalEvent,
)
from .posters import poster_png, qr_png

router = Router(tags=["referrals"])


class LinkIn(BodyIn):
    kind: Literal["member", "channel", "group_live"] = "member"
    member_id: Id | None = None
    community_id: Id | None = None
    campaign: str = Field("", max_length=max_len(InviteLink, "campaign"))
    channel: str = Field("", max_length=max_len(InviteLink, "channel"))
    label: str = Field("", max_length=max_len(InviteLink, "label"))
    group_ids: list[Id] | None = Field(None, max_length=200)


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


class ClickIn(BodyIn):
    member_id: Id | None = None
    ip: IpAddress | None = None
    device_id: str = Field("", max_length=max_len(LinkEvent, "device_id"))


class ClickOut(Schema):
    code: str
    group_id: int | None = None
    referrer_id: int | None = None
    refused: str = ""


class BindIn(BodyIn):
    member_id: Id
    referrer_id: Id


#: levels above 1 are accepted by the schema so that the service answers with the legal reason
Levels = Annotated[int, Field(ge=1, le=10, description="only 1 is allowed (one-level referral)")]


class RuleIn(BodyIn):
    product_kind: Literal["", "goods", "tier"] = ""
    product_id: str = Field("", max_length=max_len(CommissionRule, "product_id"))
    mode: Literal["percent", "fixed"] = "percent"
    rate_bps: int = Field(0, ge=0, le=10_000, description="basis points, 10000 = 100 %")
    fixed_fen: Fen = 0
    cap_fen: Fen | None = None
    level: Levels = 1


class PlanIn(BodyIn):
    name: str = Field(min_length=1, max_length=max_len(CommissionPlan, "name"))
    rules: list[RuleIn] = Field(max_length=100)
    levels: Levels = 1
    community_id: Id | None = None
    campaign: str = Field("", max_length=max_len(CommissionPlan, "campaign"))
    refund_window_days: int = Field(7, ge=0, le=180)
    self_purchase: bool = False
    cap_per_order_fen: Fen | None = None


class PlanOut(Schema):
    id: int
    name: str
    warnings: list[str]


class WithdrawIn(BodyIn):
    member_id: Id
    amount_fen: PositiveFen
    payee: str = Field("", max_length=max_len(Withdrawal, "payee"))
    request_id: str = Field(min_length=1, max_length=max_len(Withdrawal, "idempotency_key"))


class WithdrawalOut(Schema):
    id: int
    member_id: int
    out_no: str
    amount_fen: int
    fee_fen: int
    status: str
    requested_at: datetime


class RejectIn(BodyIn):
    reason: str = Field(min_length=1, max_length=max_len(WithdrawalEvent, "note"))


class SignalReviewIn(BodyIn):
    decision: Literal["cleared", "confirmed"]
    note: str = Field("", max_length=500)


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


@router.get("/links", response={200: list[LinkOut], **ERRORS})
@paginate(KeysetPagination)
def list_links(request: HttpRequest, member_id: Id | None = None) -> Any:
    p = require(request, "referrals.read")
    return selectors.links_for(p.tenant_id, member_id)


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
@idempotent
def link_click(request: HttpRequest, code: str, body: ClickIn) -> Any:
    p = require(request, "referrals.write")
    link = selectors.link_get(p.tenant_id, code)
    res = services.do_record_click(code, member_id=body.member_id, ip=body.ip, device_id=body.device_id, link=link)
    return {"code": code, "group_id": res.group.pk if res.group else None,
            "referrer_id": res.binding.referrer_id if res.binding else None, "refused": res.refused}


@router.post("/bindings", response={200: dict[str, Any], **ERRORS})
@idempotent
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


class RuleOut(Schema):
    product_kind: str
    product_id: str
    mode: str
    rate_bps: int
    fixed_fen: int
    cap_fen: int | None


class PlanDetailOut(Schema):
    id: int
    name: str
    community_id: int | None
    campaign: str
    refund_window_days: int
    self_purchase: bool
    cap_per_order_fen: int | None
    priority: int
    is_active: bool
    rules: list[RuleOut]
    warnings: list[str]


def _plan_out(plan: CommissionPlan) -> dict[str, Any]:
    return {**{k: getattr(plan, k) for k in ("id", "name", "community_id", "campaign", "refund_window_days",
                                              "self_purchase", "cap_per_order_fen", "priority", "is_active")},
            "rules": list(plan.rules.all()), "warnings": selectors.plan_warnings(plan)}


@router.get("/plans", response={200: list[PlanDetailOut], **ERRORS}, summary="佣金方案列表")
@paginate(KeysetPagination, item=_plan_out)
def list_plans(request: HttpRequest, active: bool | None = None) -> Any:
    p = require(request, "referrals.read")
    qs = selectors.plans(p.tenant_id)
    if active is not None:
        qs = qs.filter(is_active=active)
    return qs


class PlanPatch(BodyIn):
    """Fields to change (left out: unchanged); ``rules`` replaces the whole list. The same checks as
    creation; commissions already earned keep the rule snapshot of their order."""

    name: str | None = Field(None, min_length=1, max_length=max_len(CommissionPlan, "name"))
    community_id: Id | None = Field(None, description="null: every community")
    campaign: str | None = Field(None, max_length=max_len(CommissionPlan, "campaign"))
    refund_window_days: Annotated[int, Field(ge=0, le=180)] | None = None
    self_purchase: bool | None = None
    cap_per_order_fen: Fen | None = Field(None, description="null: no cap")
    is_active: bool | None = None
    rules: list[RuleIn] | None = Field(None, max_length=100)


@router.patch("/plans/{plan_id}", response={200: PlanDetailOut, **ERRORS}, summary="修改佣金方案")
def update_plan(request: HttpRequest, plan_id: Id, body: PlanPatch) -> Any:
    p = require(request, "referrals.write")
    plan, _warnings = services.do_change_plan(p, plan_id, **patch_changes(body, nullable=("community_id",
                                                                                          "cap_per_order_fen")))
    return _plan_out(plan)


@router.post("/plans/{plan_id}/pause", response={200: PlanDetailOut, **ERRORS}, summary="暂停佣金方案")
@idempotent
def pause_plan(request: HttpRequest, plan_id: Id) -> Any:
    return _plan_out(services.do_set_plan_active(require(request, "referrals.write"), plan_id, active=False))


@router.post("/plans/{plan_id}/resume", response={200: PlanDetailOut, **ERRORS}, summary="恢复佣金方案")
@idempotent
def resume_plan(request: HttpRequest, plan_id: Id) -> Any:
    return _plan_out(services.do_set_plan_active(require(request, "referrals.write"), plan_id, active=True))


class FissionTaskIn(BodyIn):
    name: str = Field(min_length=1, max_length=max_len(FissionTask, "name"))
    threshold: Annotated[int, Field(ge=1, le=10_000)] = Field(description="valid (paying) invitees needed")
    reward_kind: Literal["points", "coupon", "gift", "cash"]
    reward_value: NonNegative = Field(0, description="points; a coupon template id; cash in fen; 0 for a gift")
    reward_note: str = Field("", max_length=max_len(FissionTask, "reward_note"))
    community_id: Id | None = None
    campaign: str = Field("", max_length=max_len(FissionTask, "campaign"))


class FissionTaskOut(Schema):
    id: int
    name: str
    threshold: int
    reward_kind: str
    reward_value: int
    reward_note: str
    community_id: int | None
    campaign: str
    is_active: bool


@router.post("/fission-tasks", response={200: FissionTaskOut, **ERRORS}, summary="创建裂变任务")
@idempotent
def create_fission_task(request: HttpRequest, body: FissionTaskIn) -> Any:
    return services.do_create_fission_task(require(request, "referrals.write"), **body.model_dump())


class FissionTaskPatch(BodyIn):
    """Fields to change; once a reward was granted the threshold and the reward are fixed.
    ``is_active`` false pauses the task."""

    name: str | None = Field(None, min_length=1, max_length=max_len(FissionTask, "name"))
    threshold: Annotated[int, Field(ge=1, le=10_000)] | None = None
    reward_kind: Literal["points", "coupon", "gift", "cash"] | None = None
    reward_value: NonNegative | None = None
    reward_note: str | None = Field(None, max_length=max_len(FissionTask, "reward_note"))
    community_id: Id | None = Field(None, description="null: every community")
    campaign: str | None = Field(None, max_length=max_len(FissionTask, "campaign"))
    is_active: bool | None = None


@router.patch("/fission-tasks/{task_id}", response={200: FissionTaskOut, **ERRORS}, summary="修改裂变任务")
def update_fission_task(request: HttpRequest, task_id: Id, body: FissionTaskPatch) -> Any:
    return services.do_update_fission_task(require(request, "referrals.write"), task_id,
                                           **patch_changes(body, nullable=("community_id",)))


@router.post("/fission-tasks/{task_id}/pause", response={200: FissionTaskOut, **ERRORS}, summary="暂停裂变任务")
@idempotent
def pause_fission_task(request: HttpRequest, task_id: Id) -> Any:
    return services.do_set_fission_task_active(require(request, "referrals.write"), task_id, active=False)


@router.post("/fission-tasks/{task_id}/resume", response={200: FissionTaskOut, **ERRORS}, summary="恢复裂变任务")
@idempotent
def resume_fission_task(request: HttpRequest, task_id: Id) -> Any:
    return services.do_set_fission_task_active(require(request, "referrals.write"), task_id, active=True)


class AllianceIn(BodyIn):
    name: str = Field(min_length=1, max_length=max_len(Alliance, "name"))


class AllianceOut(Schema):
    id: int
    name: str
    owner_tenant_id: int


class InviteIn(BodyIn):
    tenant_slug: str = Field(min_length=1, max_length=max_len(Tenant, "slug"),
                             description="the invited merchant's organisation code")


class InvitationOut(Schema):
    id: int
    alliance_id: int
    alliance_name: str
    inviter_id: int
    invitee_id: int
    status: str
    created_at: datetime


def _invitation_out(inv: AllianceInvitation) -> dict[str, Any]:
    return {"id": inv.pk, "alliance_id": inv.alliance_id, "alliance_name": inv.alliance.name,
            "inviter_id": inv.inviter_id, "invitee_id": inv.invitee_id, "status": inv.status,
            "created_at": inv.created_at}


@router.post("/alliances", response={200: AllianceOut, **ERRORS}, summary="发起商家联盟")
@idempotent
def create_alliance(request: HttpRequest, body: AllianceIn) -> Any:
    return services.do_create_alliance(require(request, "referrals.write"), name=body.name)


@router.get("/alliances", response={200: list[AllianceOut], **ERRORS}, summary="我加入的商家联盟")
def list_alliances(request: HttpRequest) -> Any:
    p = require(request, "referrals.read")
    return list(Alliance.objects.filter(members__tenant_id=p.tenant_id, members__is_active=True).order_by("pk"))


@router.post("/alliances/{alliance_id}/invitations", response={200: InvitationOut, **ERRORS},
             summary="邀请商家加入联盟 (按组织代码)")
@idempotent
def invite_to_alliance(request: HttpRequest, alliance_id: Id, body: InviteIn) -> Any:
    p = require(request, "referrals.write")
    return _invitation_out(services.do_invite_to_alliance(p, alliance_id, tenant_slug=body.tenant_slug))


@router.get("/alliance-invitations", response={200: list[InvitationOut], **ERRORS}, summary="收到的联盟邀请")
def received_invitations(request: HttpRequest) -> Any:
    p = require(request, "referrals.read")
    qs = AllianceInvitation.objects.filter(invitee_id=p.tenant_id).select_related("alliance").order_by("-pk")
    return [_invitation_out(inv) for inv in qs[:200]]


@router.post("/alliance-invitations/{invitation_id}/accept", response={200: InvitationOut, **ERRORS},
             summary="接受联盟邀请 (加入联盟)")
@idempotent
def accept_invitation(request: HttpRequest, invitation_id: Id) -> Any:
    p = require(request, "referrals.write")
    return _invitation_out(services.do_respond_to_alliance_invitation(p, invitation_id, accept=True))


@router.post("/alliance-invitations/{invitation_id}/decline", response={200: InvitationOut, **ERRORS},
             summary="拒绝联盟邀请")
@idempotent
def decline_invitation(request: HttpRequest, invitation_id: Id) -> Any:
    p = require(request, "referrals.write")
    return _invitation_out(services.do_respond_to_alliance_invitation(p, invitation_id, accept=False))


@router.get("/members/{member_id}/statement", response={200: dict[str, Any], **ERRORS})
def statement(request: HttpRequest, member_id: Id) -> Any:
    p = require(request, "referrals.read")
    st = selectors.member_statement(p.tenant_id, member_id)
    return st.__dict__


@router.post("/withdrawals", response={200: WithdrawalOut, **ERRORS})
@idempotent
def request_withdrawal(request: HttpRequest, body: WithdrawIn) -> Any:
    p = require(request, "finance.write")
    return services.do_request_withdrawal(p, member_id=body.member_id, amount_fen=body.amount_fen,
                                          idempotency_key=body.request_id, payee=body.payee)


@router.get("/withdrawals", response={200: list[WithdrawalOut], **ERRORS})
@paginate(KeysetPagination)
def list_withdrawals(request: HttpRequest, status: str | None = None) -> Any:
    p = require(request, "finance.read")
    return selectors.withdrawals_for(p.tenant_id, status)


@router.post("/withdrawals/{withdrawal_id}/approve", response={200: WithdrawalOut, **ERRORS})
@idempotent
def approve_withdrawal(request: HttpRequest, withdrawal_id: Id) -> Any:
    p = require(request, "finance.write")
    return services.do_approve_withdrawal(p, withdrawal_id)


@router.post("/withdrawals/{withdrawal_id}/reject", response={200: WithdrawalOut, **ERRORS})
@idempotent
def reject_withdrawal(request: HttpRequest, withdrawal_id: Id, body: RejectIn) -> Any:
    p = require(request, "finance.write")
    return services.do_reject_withdrawal(p, withdrawal_id, reason=body.reason)


@router.get("/leaderboards/{metric}", response={200: list[RowOut], **ERRORS})
def leaderboard_top(request: HttpRequest, metric: str, scope: str = "all", period: str = "all",
                    n: Annotated[int, Field(ge=1, le=500)] = 100) -> Any:
    p = require(request, "referrals.read")
    _check_board(metric, period)
    return [r.__dict__ for r in leaderboard.top(p.tenant_id, metric, scope, period, min(max(n, 1), 500))]


@router.get("/leaderboards/{metric}/members/{member_id}", response={200: RankOut, **ERRORS})
def leaderboard_rank(request: HttpRequest, metric: str, member_id: Id, scope: str = "all",
                     period: str = "all") -> Any:
    p = require(request, "referrals.read")
    _check_board(metric, period)
    check_member(p.tenant_id, member_id)
    return leaderboard.my_rank(p.tenant_id, metric, member_id, scope, period).__dict__


def _check_board(metric: str, period: str) -> None:
    if metric not in leaderboard.METRICS:
        raise Invalid(f"未知的榜单: {metric}", details={"field": "path.metric", "allowed": leaderboard.METRICS})
    if period not in leaderboard.PERIODS:
        raise Invalid(f"未知的周期: {period}", details={"field": "query.period", "allowed": leaderboard.PERIODS})


@router.get("/reports/kfactor", response={200: list[dict[str, Any]], **ERRORS})
def kfactor(request: HttpRequest) -> Any:
    p = require(request, "referrals.read")
    return selectors.kfactor_report(p.tenant_id)


@router.get("/reports/top-referrers", response={200: list[dict[str, Any]], **ERRORS})
def top_referrers(request: HttpRequest, n: Annotated[int, Field(ge=1, le=100)] = 20, metric: str = "referrals") -> Any:
    p = require(request, "referrals.read")
    _check_board(metric, "all")
    return selectors.top_referrers(p.tenant_id, min(max(n, 1), 100), metric)


@router.get("/fraud-signals", response={200: list[SignalOut], **ERRORS})
@paginate(KeysetPagination)
def fraud_signals(request: HttpRequest) -> Any:
    p = require(request, "referrals.read")
    return selectors.open_signals(p.tenant_id)


@router.post("/fraud-signals/{signal_id}/review", response={200: SignalOut, **ERRORS})
@idempotent
def review_signal(request: HttpRequest, signal_id: Id, body: SignalReviewIn) -> Any:
    p = require(request, "referrals.write")
    return services.do_review_signal(p, signal_id, decision=body.decision, note=body.note)


# --- payouts: provider, WeChat Pay merchant configuration, reconcile / manual transfers ----------

router.add_router("/payouts", payouts_router)
