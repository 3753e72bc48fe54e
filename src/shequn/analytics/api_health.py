"""``/api/v1/analytics/health…`` and ``/api/v1/analytics/reach…``: community health (figures per group
or community, the notices and their settings) and the reach of fission (K-factor per campaign, the
referral forest, top referrers by network reach, one member's network). Mounted by
``analytics.api``; every read is scoped to the caller's tenant (``analytics.read``); the settings
are changed through ``health.do_save_settings`` (``analytics.write``)."""

import datetime as dt
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from ninja.params import P, QueryEx

from shequn.core.http import ERRORS, BodyIn, Id, require
from shequn.core.pagination import KeysetPagination, RankPagination, paginate
from shequn.members import selectors as member_selectors

from . import health, reach

router = Router(tags=["analytics"])

HealthBy = Literal["group", "community"]
NoticeState = Literal["open", "resolved"]
Rule = Literal["dead_group", "going_quiet", "leave_wave", "sales_drop", "ad_wave", "unanswered_backlog"]


class HealthFiguresOut(Schema):
    target_id: int
    community_id: int
    name: str
    members: int
    active_rate: float | None
    silent_share: float | None
    questions: int
    answered: int
    response_rate: float | None
    median_first_response_s: float | None
    messages: int
    ads: int
    ad_rate: float | None
    joins: int
    leaves: int
    balance: int
    computed_at: dt.datetime = Field(description="when these figures were computed (stored every 5 minutes)")


class NoticeOut(Schema):
    id: int
    rule: str
    severity: str
    community_id: int
    group_id: int
    subject: str
    message: str
    opened_at: dt.datetime
    last_seen_at: dt.datetime
    resolved_at: dt.datetime | None


class NoticeQuery(Schema):
    state: NoticeState | None = None
    rule: Rule | None = None


class SettingsOut(Schema):
    ad_wave_minutes: int
    ad_wave_threshold: int
    backlog_minutes: int
    backlog_threshold: int
    quiet_min_before: int
    notify_console: bool
    notify_owner: bool
    staff_group_id: int
    notify_webhook: bool


class SettingsIn(BodyIn):
    ad_wave_minutes: int | None = Field(None, ge=5, le=1440)
    ad_wave_threshold: int | None = Field(None, ge=1, le=10_000)
    backlog_minutes: int | None = Field(None, ge=1, le=10_080)
    backlog_threshold: int | None = Field(None, ge=1, le=10_000)
    quiet_min_before: int | None = Field(None, ge=1, le=100_000)
    notify_console: bool | None = None
    notify_owner: bool | None = None
    staff_group_id: int | None = Field(None, ge=0, le=2**63 - 1)
    notify_webhook: bool | None = None


class CampaignReachOut(Schema):
    campaign: str
    sharers: int
    referred: int
    k_factor: float | None


class GenerationOut(Schema):
    depth: int
    members: int


class ReachOut(Schema):
    roots: int
    referred: int
    inviters: int
    max_depth: int
    generations: list[GenerationOut]
    viral_coefficient: float | None
    k_factor: float | None
    computed_at: dt.datetime | None


class ReferrerOut(Schema):
    member_id: int
    name: str
    direct: int
    second: int
    reach: int
    depth: int


class MemberReachOut(Schema):
    member_id: int
    referred_by: int | None
    direct: int
    reach: int
    depth: int
    generations: list[GenerationOut]




@router.get("/health", response={200: list[HealthFiguresOut], **ERRORS}, summary="社群健康指标 (按群/社群)")
def health_figures(request: HttpRequest, by: HealthBy = "group", days: QueryEx[int, P(ge=1, le=90)] = 7) -> Any:
    """Active rate, silent share, response rate and median first response, ad rate, joins/leaves.
    ``days`` is 7, 30 or 90 (another value: 422 naming ``days``): the figures stored by the 5-minute
    refresh are returned (``computed_at`` says when each was computed); targets not stored yet are
    computed live."""
    p = require(request, "analytics.read")
    return health.health_figures(p.tenant_id, by=by, days=days)


@router.get("/health/notices", response={200: list[NoticeOut], **ERRORS}, summary="健康提醒")
@paginate(KeysetPagination, default_limit=100)
def health_notices(request: HttpRequest, q: Query[NoticeQuery]) -> Any:
    p = require(request, "analytics.read")
    return health.notices(p.tenant_id, state=q.state, rule=q.rule)


@router.get("/health/settings", response={200: SettingsOut, **ERRORS}, summary="健康提醒设置")
def health_settings(request: HttpRequest) -> Any:
    p = require(request, "analytics.read")
    return health.get_settings(p.tenant_id)


@router.patch("/health/settings", response={200: SettingsOut, **ERRORS}, summary="修改健康提醒设置")
def change_health_settings(request: HttpRequest, payload: SettingsIn) -> Any:
    p = require(request, "analytics.write")
    return health.do_save_settings(p.tenant_id, payload.model_dump(exclude_none=True))


@router.get("/reach", response={200: ReachOut, **ERRORS}, summary="裂变传播: 推荐树与病毒系数")
def reach_summary(request: HttpRequest) -> Any:
    p = require(request, "analytics.read")
    return reach.summary(p.tenant_id)


@router.get("/reach/campaigns", response={200: list[CampaignReachOut], **ERRORS}, summary="各活动 K 因子")
@paginate(RankPagination)
def reach_campaigns(request: HttpRequest) -> Any:
    p = require(request, "analytics.read")
    return reach.kfactor_by_campaign(p.tenant_id)


@router.get("/reach/referrers", response={200: list[ReferrerOut], **ERRORS}, summary="推荐达人 (按传播人数)")
@paginate(RankPagination)
def reach_referrers(request: HttpRequest) -> Any:
    p = require(request, "analytics.read")
    return lambda offset, count: reach.top_referrers(p.tenant_id, limit=count, offset=offset)


@router.get("/reach/member", response={200: MemberReachOut, **ERRORS}, summary="会员的传播网络")
def reach_member(request: HttpRequest, member_id: Id) -> Any:
    p = require(request, "analytics.read")
    member_selectors.get_member(p.tenant_id, member_id)  # 404 for another tenant's member
    return reach.member_reach(p.tenant_id, member_id)
