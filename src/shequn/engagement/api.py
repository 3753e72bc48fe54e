"""REST endpoints of the engagement app (``/api/v1/engagement/``): check-ins, points, scores, lotteries,
red packets and the reply-to-everyone queue. Thin: every rule lives in services."""

import datetime as dt
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Router, Schema

from shequn.core.http import (
    ERRORS,
    MAX_FEN,
    ApiDatetime,
    BodyIn,
    Id,
    Limit,
    Quantity,
    idempotent,
    max_len,
    patch_changes,
    require,
)
from shequn.core.pagination import KeysetPagination, paginate

from . import selectors, services
from .models import Badge, ContentItem, Lottery, LotteryPrize, RedPacket

router = Router(tags=["engagement"])


class MemberRefIn(BodyIn):
    member_id: Id


class CheckInOut(Schema):
    created: bool
    day: dt.date
    current_streak: int
    longest_streak: int
    total_days: int
    points: int


class BalanceOut(Schema):
    balance: int
    earned_total: int
    spent_total: int


class PointsEntryOut(Schema):
    id: int
    delta: int
    balance_after: int
    kind: str
    reason: str
    created_at: dt.datetime


class LotteryEntryIn(BodyIn):
    member_id: Id
    tickets: Quantity = 1


class LotteryEntryOut(Schema):
    id: int
    member_id: int
    weight: int


class ClaimOut(Schema):
    id: int
    packet_id: int
    member_id: int
    amount: int


class TrackOut(Schema):
    id: int
    community_id: int | None
    group_id: int | None
    member_id: int
    member_name: str
    excerpt: str
    occurred_at: dt.datetime
    waiting_seconds: int


class ReplyIn(BodyIn):
    text: str = Field(min_length=1, max_length=4000)


class ReplyOut(Schema):
    id: int
    answered_at: dt.datetime | None
    reply_action_id: int | None


@router.post("/checkins", response={200: CheckInOut, **ERRORS}, summary="签到")
@idempotent
def check_in(request: HttpRequest, body: MemberRefIn) -> Any:
    p = require(request, "engagement.write")
    r = services.do_check_in(p.tenant_id, body.member_id, source="api")
    return CheckInOut(created=r.created, day=r.day, current_streak=r.current_streak, longest_streak=r.longest_streak,
                      total_days=r.total_days, points=r.points)


@router.get("/members/{member_id}/points", response={200: BalanceOut, **ERRORS}, summary="积分余额")
def points_balance(request: HttpRequest, member_id: Id) -> Any:
    p = require(request, "engagement.read")
    services.check_member(p.tenant_id, member_id)
    return selectors.points_balance(p.tenant_id, member_id)


@router.get("/members/{member_id}/points/history", response={200: list[PointsEntryOut], **ERRORS}, summary="积分流水")
@paginate(KeysetPagination)
def points_history(request: HttpRequest, member_id: Id) -> Any:
    p = require(request, "engagement.read")
    services.check_member(p.tenant_id, member_id)
    return selectors.points_history(p.tenant_id, member_id)


@router.get("/members/{member_id}/score", response={200: dict, **ERRORS}, summary="活跃分与等级说明")
def score(request: HttpRequest, member_id: Id) -> Any:
    p = require(request, "engagement.read")
    return selectors.explain_score(p.tenant_id, member_id)


@router.get("/lotteries/{lottery_id}", response={200: dict, **ERRORS},
            summary="抽奖公开记录 (承诺、快照、开奖后的种子与中奖者)")
def lottery_record(request: HttpRequest, lottery_id: Id) -> Any:
    p = require(request, "engagement.read")
    return selectors.lottery_public_record(selectors.get_lottery(p.tenant_id, lottery_id))


@router.post("/lotteries/{lottery_id}/entries", response={200: LotteryEntryOut, **ERRORS}, summary="参与抽奖")
@idempotent
def enter_lottery(request: HttpRequest, lottery_id: Id, body: LotteryEntryIn) -> Any:
    p = require(request, "engagement.write")
    e = services.do_enter_lottery(p.tenant_id, lottery_id, body.member_id, tickets=body.tickets)
    return LotteryEntryOut(id=e.pk, member_id=e.member_id, weight=e.weight)


@router.post("/red-packets/{packet_id}/claims", response={200: ClaimOut, **ERRORS}, summary="领红包")
@idempotent
def claim_red_packet(request: HttpRequest, packet_id: Id, body: MemberRefIn) -> Any:
    p = require(request, "engagement.write")
    c = services.do_claim_red_packet(p.tenant_id, packet_id, body.member_id)
    return ClaimOut(id=c.pk, packet_id=c.packet_id, member_id=c.member_id, amount=c.amount)


@router.get("/reply-queue", response={200: list[TrackOut], **ERRORS}, summary="待回复消息 (最早的在前)")
def reply_queue(request: HttpRequest, community_id: Id | None = None, limit: Limit = 100) -> Any:
    p = require(request, "engagement.read")
    now = timezone.now()
    rows = selectors.reply_queue(p.tenant_id, community_id=community_id, now=now)[: max(1, min(limit, 500))]
    return [TrackOut(id=t.pk, community_id=t.community_id, group_id=t.group_id, member_id=t.member_id,
                     member_name=t.member.display_name, excerpt=t.excerpt, occurred_at=t.occurred_at,
                     waiting_seconds=int((now - t.occurred_at).total_seconds())) for t in rows]


@router.post("/reply-queue/{track_id}/reply", response={200: ReplyOut, **ERRORS}, summary="一键回复")
@idempotent
def reply(request: HttpRequest, track_id: Id, body: ReplyIn) -> Any:
    p = require(request, "engagement.write")
    t = services.do_reply_from_queue(p, track_id, text=body.text)
    return ReplyOut(id=t.pk, answered_at=t.answered_at, reply_action_id=t.reply_action_id)


class WelcomeIn(BodyIn):
    community_id: Id
    platform: Literal["", "wecom", "telegram", "matrix"] = ""
    body: Annotated[str, Field(min_length=1, max_length=1500)]
    batch_seconds: Annotated[int, Field(ge=0, le=3600)] = 30
    active: bool = True


class WelcomeOut(Schema):
    id: int
    community_id: int
    platform: str
    body: str
    batch_seconds: int
    active: bool


def _welcome_out(w: Any) -> WelcomeOut:
    return WelcomeOut(id=w.pk, community_id=w.community_id, platform=w.platform, body=w.body,
                      batch_seconds=w.batch_seconds, active=w.active)


@router.get("/welcomes", response={200: list[WelcomeOut], **ERRORS}, summary="入群欢迎语")
def welcomes(request: HttpRequest, community_id: Id | None = None) -> Any:
    p = require(request, "engagement.read")
    return [_welcome_out(w) for w in selectors.welcome_messages(p.tenant_id, community_id=community_id)]


@router.post("/welcomes", response={200: WelcomeOut, **ERRORS},
             summary="设置入群欢迎语 (每个社群每个平台一条, 再次提交即修改)")
@idempotent
def save_welcome(request: HttpRequest, body: WelcomeIn) -> Any:
    p = require(request, "engagement.write")
    w = services.do_save_welcome(p, body.community_id, platform=body.platform, body=body.body,
                                 batch_seconds=body.batch_seconds, active=body.active)
    return _welcome_out(w)


class NoReplyOut(Schema):
    id: int
    no_reply_at: dt.datetime
    no_reply_by: str


@router.post("/reply-queue/{track_id}/no-reply", response={200: NoReplyOut, **ERRORS},
             summary="标记无需回复 (收到、谢谢)")
@idempotent
def mark_no_reply(request: HttpRequest, track_id: Id) -> Any:
    p = require(request, "engagement.write")
    return services.do_mark_no_reply_needed(p, track_id)


@router.get("/reply-stats", response={200: dict, **ERRORS}, summary="回复率与首次响应时间中位数")
def reply_stats(request: HttpRequest, days: Annotated[int, Field(ge=1, le=366)] = 30,
                community_id: Id | None = None) -> Any:
    p = require(request, "engagement.read")
    since = timezone.now() - dt.timedelta(days=max(1, min(days, 365)))
    return selectors.reply_stats(p.tenant_id, since=since, community_id=community_id)


# --- creating and ending campaigns -----------------------------------------------------------------


class PrizeIn(BodyIn):
    name: str = Field(min_length=1, max_length=max_len(LotteryPrize, "name"))
    stock: Quantity = 1


class LotteryRulesIn(BodyIn):
    """Who may enter (each optional): a community's members, a relationship level, joined before a
    date, a check-in streak, a purchase (since a date)."""

    community_id: Id | None = None
    min_level: Annotated[int, Field(ge=0, le=10)] | None = None
    joined_before: dt.date | None = Field(None, description="YYYY-MM-DD")
    min_streak: Annotated[int, Field(ge=0, le=3650)] | None = None
    purchased_since: dt.date | None = Field(None, description="YYYY-MM-DD")
    require_purchase: bool = False

    def as_rules(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.model_dump().items():
            if value is None or value is False:
                continue
            out[key] = value.isoformat() if isinstance(value, dt.date) else value
        return out


class LotteryIn(BodyIn):
    title: str = Field(min_length=1, max_length=max_len(Lottery, "title"))
    closes_at: ApiDatetime
    draw_at: ApiDatetime
    prizes: list[PrizeIn] = Field(min_length=1, max_length=50)
    rules: LotteryRulesIn = Field(default_factory=lambda: LotteryRulesIn.model_validate({}))
    entry_cost_points: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    max_tickets: Quantity = 1
    community_id: Id | None = None
    group_id: Id | None = Field(None, description="the group where the winners are announced")
    beacon: str = Field("", max_length=max_len(Lottery, "beacon"))


class LotteryOut(Schema):
    id: int
    title: str
    status: str
    closes_at: dt.datetime
    draw_at: dt.datetime
    seed_commitment: str


@router.post("/lotteries", response={200: LotteryOut, **ERRORS}, summary="创建抽奖 (公布种子承诺)")
@idempotent
def create_lottery(request: HttpRequest, body: LotteryIn) -> Any:
    p = require(request, "engagement.write")
    return services.do_create_lottery(
        p, title=body.title, closes_at=body.closes_at, draw_at=body.draw_at,
        prizes=[(x.name, x.stock) for x in body.prizes], rules=body.rules.as_rules(),
        entry_cost_points=body.entry_cost_points, max_tickets=body.max_tickets, community_id=body.community_id,
        group_id=body.group_id, beacon=body.beacon)


class LotteryPatch(BodyIn):
    """Fields to change (left out: unchanged) of an open lottery. ``prizes`` is the whole list (rank 1
    first); once someone entered, prizes only grow and the entry terms are fixed."""

    title: str | None = Field(None, min_length=1, max_length=max_len(Lottery, "title"))
    closes_at: ApiDatetime | None = None
    draw_at: ApiDatetime | None = None
    prizes: list[PrizeIn] | None = Field(None, min_length=1, max_length=50)
    rules: LotteryRulesIn | None = Field(None, description="the whole set of entry rules")
    entry_cost_points: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    max_tickets: Quantity | None = None
    community_id: Id | None = Field(None, description="null: any community")
    group_id: Id | None = Field(None, description="null: no announcement group")
    beacon: str | None = Field(None, max_length=max_len(Lottery, "beacon"))


@router.patch("/lotteries/{lottery_id}", response={200: LotteryOut, **ERRORS}, summary="修改抽奖 (含奖品)")
def update_lottery(request: HttpRequest, lottery_id: Id, body: LotteryPatch) -> Any:
    p = require(request, "engagement.write")
    changes = patch_changes(body, nullable=("community_id", "group_id"))
    if body.prizes is not None:
        changes["prizes"] = [(x.name, x.stock) for x in body.prizes]
    if body.rules is not None:
        changes["rules"] = body.rules.as_rules()
    return services.do_update_lottery(p, lottery_id, **changes)


@router.post("/lotteries/{lottery_id}/close", response={200: LotteryOut, **ERRORS}, summary="立即截止并公布快照承诺")
@idempotent
def close_lottery(request: HttpRequest, lottery_id: Id) -> Any:
    p = require(request, "engagement.write")
    return services.do_close_lottery(p.tenant_id, selectors.get_lottery(p.tenant_id, lottery_id).pk)


@router.post("/lotteries/{lottery_id}/draw", response={200: LotteryOut, **ERRORS}, summary="开奖")
@idempotent
def draw_lottery(request: HttpRequest, lottery_id: Id) -> Any:
    p = require(request, "engagement.write")
    return services.do_draw_lottery(p.tenant_id, selectors.get_lottery(p.tenant_id, lottery_id).pk)


@router.post("/lotteries/{lottery_id}/cancel", response={200: LotteryOut, **ERRORS}, summary="取消抽奖 (截止前)")
@idempotent
def cancel_lottery(request: HttpRequest, lottery_id: Id) -> Any:
    return services.do_cancel_lottery(require(request, "engagement.write"), lottery_id)


class RedPacketIn(BodyIn):
    title: str = Field("恭喜发财", min_length=1, max_length=max_len(RedPacket, "title"))
    currency: Literal["points", "cash"] = "points"
    mode: Literal["fixed", "random"] = "random"
    total: Annotated[int, Field(ge=1, le=MAX_FEN, description="points, or fen for cash")]
    count: Annotated[int, Field(ge=1, le=10_000)]
    expires_in_minutes: Annotated[int, Field(ge=1, le=43_200)] = 1440
    sender_member_id: Id | None = Field(None, description="empty: paid by the organisation")
    group_id: Id | None = None
    community_id: Id | None = None


class RedPacketOut(Schema):
    id: int
    title: str
    currency: str
    mode: str
    total: int
    count: int
    remaining_amount: int
    remaining_count: int
    status: str
    expires_at: dt.datetime


@router.post("/red-packets", response={200: RedPacketOut, **ERRORS}, summary="发红包")
@idempotent
def create_red_packet(request: HttpRequest, body: RedPacketIn) -> Any:
    p = require(request, "engagement.write")
    return services.do_create_red_packet(
        p, total=body.total, count=body.count, currency=body.currency, mode=body.mode,
        expires_in=dt.timedelta(minutes=body.expires_in_minutes), sender_member_id=body.sender_member_id,
        group_id=body.group_id, community_id=body.community_id, title=body.title)


class RedPacketPatch(BodyIn):
    """A sent packet changes only its greeting and expiry (its money never changes)."""

    title: str | None = Field(None, min_length=1, max_length=max_len(RedPacket, "title"))
    expires_at: ApiDatetime | None = Field(None, description="later than now, within 30 days of sending")


@router.patch("/red-packets/{packet_id}", response={200: RedPacketOut, **ERRORS}, summary="修改红包 (祝福语、过期时间)")
def update_red_packet(request: HttpRequest, packet_id: Id, body: RedPacketPatch) -> Any:
    return services.do_update_red_packet(require(request, "engagement.write"), packet_id, **patch_changes(body))


@router.post("/red-packets/{packet_id}/end", response={200: RedPacketOut, **ERRORS},
             summary="立即结束红包 (退回未领部分)")
@idempotent
def end_red_packet(request: HttpRequest, packet_id: Id) -> Any:
    return services.do_end_red_packet(require(request, "engagement.write"), packet_id)


class BadgeIn(BodyIn):
    code: str = Field(min_length=1, max_length=max_len(Badge, "code"), description="letters, digits, - and _")
    name: str = Field(min_length=1, max_length=max_len(Badge, "name"))
    rule: Literal["streak", "checkin_total", "level", "points_earned"]
    threshold: Annotated[int, Field(ge=1, le=1_000_000)]
    description: str = Field("", max_length=max_len(Badge, "description"))


class BadgeOut(Schema):
    id: int
    code: str
    name: str
    rule: str
    threshold: int


@router.post("/badges", response={200: BadgeOut, **ERRORS}, summary="创建徽章")
@idempotent
def create_badge(request: HttpRequest, body: BadgeIn) -> Any:
    return services.do_create_badge(require(request, "engagement.write"), **body.model_dump())


class BadgePatch(BodyIn):
    code: str | None = Field(None, min_length=1, max_length=max_len(Badge, "code"),
                             description="fixed once the badge was awarded")
    name: str | None = Field(None, min_length=1, max_length=max_len(Badge, "name"))
    rule: Literal["streak", "checkin_total", "level", "points_earned"] | None = None
    threshold: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    description: str | None = Field(None, max_length=max_len(Badge, "description"))


@router.patch("/badges/{badge_id}", response={200: BadgeOut, **ERRORS}, summary="修改徽章")
def update_badge(request: HttpRequest, badge_id: Id, body: BadgePatch) -> Any:
    return services.do_update_badge(require(request, "engagement.write"), badge_id, **patch_changes(body))


class PlatformTextsIn(BodyIn):
    wecom: str = Field("", max_length=10_000)
    telegram: str = Field("", max_length=10_000)
    matrix: str = Field("", max_length=10_000)


class ContentItemIn(BodyIn):
    title: str = Field(min_length=1, max_length=max_len(ContentItem, "title"))
    kind: Literal["text", "image", "link", "markdown"] = "text"
    body: str = Field("", max_length=10_000)
    url: str = Field("", max_length=max_len(ContentItem, "url"))
    image_url: str = Field("", max_length=max_len(ContentItem, "image_url"))
    is_sales: bool = False
    platform_texts: PlatformTextsIn = Field(default_factory=lambda: PlatformTextsIn.model_validate({}))


class ContentItemOut(Schema):
    id: int
    title: str
    kind: str
    is_sales: bool


@router.post("/content-items", response={200: ContentItemOut, **ERRORS}, summary="创建 SOP 内容")
@idempotent
def create_content_item(request: HttpRequest, body: ContentItemIn) -> Any:
    p = require(request, "engagement.write")
    data = body.model_dump()
    return services.do_create_content_item(p, platform_overrides=data.pop("platform_texts"), **data)


class ContentItemPatch(BodyIn):
    title: str | None = Field(None, min_length=1, max_length=max_len(ContentItem, "title"))
    kind: Literal["text", "image", "link", "markdown"] | None = None
    body: str | None = Field(None, max_length=10_000)
    url: str | None = Field(None, max_length=max_len(ContentItem, "url"))
    image_url: str | None = Field(None, max_length=max_len(ContentItem, "image_url"))
    is_sales: bool | None = None
    platform_texts: PlatformTextsIn | None = Field(None, description="the whole set of per-platform texts")


@router.patch("/content-items/{item_id}", response={200: ContentItemOut, **ERRORS}, summary="修改 SOP 内容")
def update_content_item(request: HttpRequest, item_id: Id, body: ContentItemPatch) -> Any:
    p = require(request, "engagement.write")
    changes = patch_changes(body, rename={"platform_texts": "platform_overrides"})
    if body.platform_texts is not None:
        changes["platform_overrides"] = body.platform_texts.model_dump()
    return services.do_update_content_item(p, item_id, **changes)


class ContentScheduleIn(BodyIn):
    content_id: Id
    kind: Literal["fixed", "recurring", "sequence"]
    community_id: Id | None = None
    group_id: Id | None = None
    run_at: ApiDatetime | None = None
    time_of_day: dt.time | None = Field(None, description="HH:MM (recurring and sequence)")
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] = Field(default_factory=list, max_length=7)
    day_offset: Annotated[int, Field(ge=0, le=365)] = Field(0, description="sequence: days after joining")
    respect_quiet_hours: bool = True
    audience_id: Id | None = Field(None, description="a saved segment (/analytics/segments): only its members")


class ContentScheduleOut(Schema):
    id: int
    content_id: int
    kind: str
    community_id: int | None
    group_id: int | None
    run_at: dt.datetime | None
    time_of_day: dt.time | None
    weekdays: list[int]
    day_offset: int
    audience_id: int | None
    active: bool


@router.post("/content-schedules", response={200: ContentScheduleOut, **ERRORS}, summary="创建 SOP 排期")
@idempotent
def create_content_schedule(request: HttpRequest, body: ContentScheduleIn) -> Any:
    return services.do_create_content_schedule(require(request, "engagement.write"), **body.model_dump())


class ContentSchedulePatch(BodyIn):
    """Fields to change of an SOP item; ``active`` false pauses it. The kind is fixed once it sent."""

    content_id: Id | None = None
    kind: Literal["fixed", "recurring", "sequence"] | None = None
    community_id: Id | None = None
    group_id: Id | None = None
    run_at: ApiDatetime | None = None
    time_of_day: dt.time | None = Field(None, description="HH:MM (recurring and sequence)")
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] | None = Field(None, max_length=7)
    day_offset: Annotated[int, Field(ge=0, le=365)] | None = None
    respect_quiet_hours: bool | None = None
    active: bool | None = None


@router.patch("/content-schedules/{schedule_id}", response={200: ContentScheduleOut, **ERRORS},
              summary="修改、暂停或恢复 SOP 排期")
def update_content_schedule(request: HttpRequest, schedule_id: Id, body: ContentSchedulePatch) -> Any:
    changes = patch_changes(body, nullable=("community_id", "group_id", "run_at", "time_of_day"))
    return services.do_update_content_schedule(require(request, "engagement.write"), schedule_id, **changes)


@router.post("/content-schedules/{schedule_id}/pause", response={200: ContentScheduleOut, **ERRORS},
             summary="暂停 SOP 排期")
@idempotent
def pause_schedule(request: HttpRequest, schedule_id: Id) -> Any:
    return services.do_set_schedule_active(require(request, "engagement.write"), schedule_id, active=False)


@router.post("/content-schedules/{schedule_id}/resume", response={200: ContentScheduleOut, **ERRORS},
             summary="恢复 SOP 排期")
@idempotent
def resume_schedule(request: HttpRequest, schedule_id: Id) -> Any:
    return services.do_set_schedule_active(require(request, "engagement.write"), schedule_id, active=True)
