"""``/api/v1/analytics/health…`` and ``/api/v1/analytics/reach…``: community health (figures per group
or community, the notices and their settings) and the reach of fission (K-factor per campaign, the
referral forest, top referrers by network reach, one member's network). Mounted by
``analytics.api``; every read is scoped to the caller's tenant (``analytics.read``); the settings
are changed through ``health.do_save_settings`` (``analytics.write``)."""

import base64
import datetime as dt
from typing import Any, Literal

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema
from ninja.params import P, QueryEx

from shequn.core.errors import Invalid
from shequn.core.http import ERRORS, BodyIn, Id, Page, paginate, require
from shequn.members import selectors as member_selectors

from . import health, reach

router = Router(tags=["analytics"])

HealthBy = Literal["group", "community"]
NoticeState = Literal["open", "resolved"]
Rule = Literal["dead_group", "going_quiet", "leave_wave", "sales_drop", "ad_wave", "unanswered_backlog"]


class HealthOut(Schema):
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
    cursor: str | None = None
    limit: int = Field(100, ge=1, le=500)


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


class PageQuery(Schema):
    cursor: str | None = None
    limit: int = Field(50, ge=1, le=500)


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        value = int(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(_("无效的分页游标"), details=[{"field": "query.cursor", "message": "bad cursor"}]) from exc
    if value < 0:
        raise Invalid(_("无效的分页游标"), details=[{"field": "query.cursor", "message": "bad cursor"}])
    return value


def _page(rows: list[Any], offset: int, limit: int) -> dict[str, Any]:
    """An offset page of a computed ranking: ``rows`` holds up to ``limit + 1`` rows from ``offset``."""
    more = len(rows) > limit
    nxt = base64.urlsafe_b64encode(str(offset + limit).encode()).decode().rstrip("=") if more else None
    return {"items": rows[:limit], "next_cursor": nxt}


@router.get("/health", response={200: list[HealthOut], **ERRORS}, summary="社群健康指标 (按群/社群)")
def health_figures(request: HttpRequest, by: HealthBy = "group", days: QueryEx[int, P(ge=1, le=90)] = 7) -> Any:
    """Active rate, silent share, response rate and median first response, ad rate, joins/leaves."""
    p = require(request, "analytics.read")
    return health.health_figures(p.tenant_id, by=by, days=days)


@router.get("/health/notices", response={200: Page[NoticeOut], **ERRORS}, summary="健康提醒")
def health_notices(request: HttpRequest, q: Query[NoticeQuery]) -> Any:
    p = require(request, "analytics.read")
    return paginate(health.notices(p.tenant_id, state=q.state, rule=q.rule), q.cursor, q.limit)


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


@router.get("/reach/campaigns", response={200: Page[CampaignReachOut], **ERRORS}, summary="各活动 K 因子")
def reach_campaigns(request: HttpRequest, q: Query[PageQuery]) -> Any:
    p = require(request, "analytics.read")
    offset = _offset(q.cursor)
    return _page(reach.kfactor_by_campaign(p.tenant_id)[offset:offset + q.limit + 1], offset, q.limit)


@router.get("/reach/referrers", response={200: Page[ReferrerOut], **ERRORS}, summary="推荐达人 (按传播人数)")
def reach_referrers(request: HttpRequest, q: Query[PageQuery]) -> Any:
    p = require(request, "analytics.read")
    offset = _offset(q.cursor)
    return _page(reach.top_referrers(p.tenant_id, limit=q.limit + 1, offset=offset), offset, q.limit)


@router.get("/reach/member", response={200: MemberReachOut, **ERRORS}, summary="会员的传播网络")
def reach_member(request: HttpRequest, member_id: Id) -> Any:
    p = require(request, "analytics.read")
    member_selectors.get_member(p.tenant_id, member_id)  # 404 for another tenant's member
    return reach.member_reach(p.tenant_id, member_id)
