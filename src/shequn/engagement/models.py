"""Engagement: scores, lifecycle/ladder suggestions, role recommendations, the reply-to-everyone queue,
check-ins and points, lotteries, red packets, the content SOP and health alerts."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from shequn.communities.models import CommunityRole
from shequn.core.models import TenantOwned
from shequn.members.models import LifecycleStage, RelationshipLevel


class EngagementSettings(TenantOwned):
    """Per-tenant overrides of :data:`shequn.engagement.selectors.DEFAULT_CONFIG` (weights, thresholds,
    reply SLA, quiet hours, no-sell cooldown...). Missing keys fall back to the defaults."""

    config = models.JSONField(_("配置"), default=dict, blank=True)
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    class Meta:
        verbose_name = _("活跃运营设置")
        verbose_name_plural = _("活跃运营设置")
        constraints = [models.UniqueConstraint(fields=["tenant"], name="eng_settings_one_per_tenant")]


# --- scores -----------------------------------------------------------------------------------------


class DailyScore(TenantOwned):
    """Points a member earned on one local calendar day; rebuilt from the activity stream (idempotent)."""

    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField(_("日期"))
    points = models.IntegerField(_("积分"), default=0)
    spoke = models.IntegerField(_("发言数"), default=0)

    class Meta:
        verbose_name = _("每日活跃")
        verbose_name_plural = _("每日活跃")
        constraints = [models.UniqueConstraint(fields=["member", "day"], name="eng_daily_unique")]
        indexes = [models.Index(fields=["tenant", "day"], name="eng_daily_tenant_day_idx")]


class MemberScore(TenantOwned):
    member = models.OneToOneField("members.Member", on_delete=models.CASCADE, related_name="+",
                                  verbose_name=_("会员"))
    score = models.FloatField(_("活跃分"), default=0)
    level = models.PositiveSmallIntegerField(_("活跃等级"), default=0)
    last_spoke_day = models.DateField(_("最近发言日"), null=True, blank=True)
    last_active_day = models.DateField(_("最近活跃日"), null=True, blank=True)
    computed_at = models.DateTimeField(_("计算时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("活跃分")
        verbose_name_plural = _("活跃分")
        indexes = [models.Index(fields=["tenant", "level"], name="eng_score_level_idx")]


# --- ladder and roles -------------------------------------------------------------------------------


class Decision(models.TextChoices):
    PENDING = "pending", _("待确认")
    ACCEPTED = "accepted", _("已接受")
    DISMISSED = "dismissed", _("已忽略")


class LadderSuggestion(TenantOwned):
    """"Move this member up the relationship ladder", with the evidence; an operator decides."""

    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("会员"))
    from_level = models.PositiveSmallIntegerField(_("当前等级"), choices=RelationshipLevel.choices)
    to_level = models.PositiveSmallIntegerField(_("建议等级"), choices=RelationshipLevel.choices)
    evidence = models.JSONField(_("依据"), default=dict)
    status = models.CharField(_("状态"), max_length=16, choices=Decision.choices, default=Decision.PENDING)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    decided_at = models.DateTimeField(_("处理时间"), null=True, blank=True)
    decided_by = models.CharField(_("处理人"), max_length=120, blank=True)

    class Meta:
        verbose_name = _("关系升级建议")
        verbose_name_plural = _("关系升级建议")
        constraints = [models.UniqueConstraint(fields=["member"], condition=Q(status="pending"),
                                               name="eng_ladder_one_pending")]


class RoleRecommendation(TenantOwned):
    community = models.ForeignKey("communities.Community", on_delete=models.CASCADE, related_name="+",
                                  verbose_name=_("社群"))
    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("会员"))
    role = models.CharField(_("角色"), max_length=16, choices=CommunityRole.choices)
    score = models.FloatField(_("得分"), default=0)
    reasons = models.JSONField(_("理由"), default=list)
    status = models.CharField(_("状态"), max_length=16, choices=Decision.choices, default=Decision.PENDING)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    decided_at = models.DateTimeField(_("处理时间"), null=True, blank=True)
    decided_by = models.CharField(_("处理人"), max_length=120, blank=True)

    class Meta:
        verbose_name = _("角色推荐")
        verbose_name_plural = _("角色推荐")
        constraints = [models.UniqueConstraint(fields=["community", "member", "role"], condition=Q(status="pending"),
                                               name="eng_rolerec_one_pending")]


# --- reply-to-everyone --------------------------------------------------------------------------------


class ChatStaff(TenantOwned):
    """A member account that speaks for the organisation in chats (staff, bot). Together with the
    community's role holders these are the "responders" of the reply queue."""

    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("会员"))
    label = models.CharField(_("说明"), max_length=80, blank=True)

    class Meta:
        verbose_name = _("群内员工账号")
        verbose_name_plural = _("群内员工账号")
        constraints = [models.UniqueConstraint(fields=["member"], name="eng_chatstaff_unique")]


class ReplyTrack(TenantOwned):
    """One member message waiting for (or having got) an answer from a responder."""

    event_id = models.BigIntegerField(_("事件"))
    community = models.ForeignKey("communities.Community", null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="+", verbose_name=_("社群"))
    group = models.ForeignKey("communities.ChatGroup", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", verbose_name=_("群"))
    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("会员"))
    platform_event_id = models.CharField(_("平台消息 ID"), max_length=191, blank=True)
    excerpt = models.CharField(_("内容摘要"), max_length=200, blank=True)
    occurred_at = models.DateTimeField(_("发送时间"))
    answered_at = models.DateTimeField(_("回复时间"), null=True, blank=True)
    answered_by = models.ForeignKey("members.Member", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+", verbose_name=_("回复人"))
    answered_by_label = models.CharField(_("回复人名称"), max_length=120, blank=True)
    reply_action_id = models.BigIntegerField(_("回复动作"), null=True, blank=True)
    #: staff marked it as needing no answer (收到、谢谢): out of the queue and of the reply rate
    no_reply_at = models.DateTimeField(_("标记无需回复"), null=True, blank=True)
    no_reply_by = models.CharField(_("标记人"), max_length=120, blank=True)

    class Meta:
        verbose_name = _("待回复消息")
        verbose_name_plural = _("待回复消息")
        constraints = [models.UniqueConstraint(fields=["tenant", "event_id"], name="eng_replytrack_event")]
        indexes = [
            models.Index(fields=["tenant", "community", "answered_at", "occurred_at"], name="eng_reply_queue_idx"),
            models.Index(fields=["tenant", "member", "answered_at"], name="eng_reply_member_idx"),
        ]


# --- check-ins and points -------------------------------------------------------------------------------


class CheckIn(TenantOwned):
    class Source(models.TextChoices):
        API = "api", "API"
        CHAT = "chat", _("群内关键词")
        PORTAL = "portal", _("会员页面")
        MAKEUP = "makeup", _("补签卡")

    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("会员"))
    day = models.DateField(_("签到日"))
    source = models.CharField(_("来源"), max_length=16, choices=Source.choices, default=Source.API)
    created_at = models.DateTimeField(_("时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("签到")
        verbose_name_plural = _("签到")
        constraints = [models.UniqueConstraint(fields=["member", "day"], name="eng_checkin_once_a_day")]


class CheckInStats(TenantOwned):
    member = models.OneToOneField("members.Member", on_delete=models.CASCADE, related_name="+",
                                  verbose_name=_("会员"))
    current_streak = models.PositiveIntegerField(_("连续签到"), default=0)
    longest_streak = models.PositiveIntegerField(_("最长连续"), default=0)
    total_days = models.PositiveIntegerField(_("累计签到"), default=0)
    last_day = models.DateField(_("最近签到日"), null=True, blank=True)
    makeup_cards = models.IntegerField(_("补签卡"), default=0)

    class Meta:
        verbose_name = _("签到统计")
        verbose_name_plural = _("签到统计")
        constraints = [models.CheckConstraint(condition=Q(makeup_cards__gte=0), name="eng_makeup_nonneg")]


class PointsAccount(TenantOwned):
    """A member's points balance. Changed only by :func:`do_points_earn` / :func:`do_points_spend`,
    always together with a :class:`PointsEntry`; the balance never goes negative (conditional UPDATE
    plus a CHECK constraint)."""

    member = models.OneToOneField("members.Member", on_delete=models.CASCADE, related_name="+",
                                  verbose_name=_("会员"))
    balance = models.BigIntegerField(_("余额"), default=0)
    earned_total = models.BigIntegerField(_("累计获得"), default=0)
    spent_total = models.BigIntegerField(_("累计消耗"), default=0)
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    class Meta:
        verbose_name = _("积分账户")
        verbose_name_plural = _("积分账户")
        constraints = [models.CheckConstraint(condition=Q(balance__gte=0), name="eng_points_nonneg")]


class PointsEntry(TenantOwned):
    """Append-only points ledger line."""

    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("会员"))
    delta = models.BigIntegerField(_("变动"))
    balance_after = models.BigIntegerField(_("变动后余额"))
    kind = models.CharField(_("类型"), max_length=32)
    reason = models.CharField(_("说明"), max_length=200, blank=True)
    idempotency_key = models.CharField(max_length=191)
    created_at = models.DateTimeField(_("时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("积分流水")
        verbose_name_plural = _("积分流水")
        constraints = [models.UniqueConstraint(fields=["tenant", "idempotency_key"], name="eng_points_entry_key")]
        indexes = [models.Index(fields=["tenant", "member", "id"], name="eng_points_member_idx")]


class Badge(TenantOwned):
    class Rule(models.TextChoices):
        STREAK = "streak", _("连续签到天数")
        CHECKIN_TOTAL = "checkin_total", _("累计签到天数")
        LEVEL = "level", _("活跃等级")
        POINTS_EARNED = "points_earned", _("累计获得积分")

    code = models.SlugField(_("代码"), max_length=64)
    name = models.CharField(_("名称"), max_length=64)
    description = models.CharField(_("说明"), max_length=200, blank=True)
    rule = models.CharField(_("规则"), max_length=16, choices=Rule.choices)
    threshold = models.PositiveIntegerField(_("门槛"))

    class Meta:
        verbose_name = _("徽章")
        verbose_name_plural = _("徽章")
        constraints = [models.UniqueConstraint(fields=["tenant", "code"], name="eng_badge_code")]

    def __str__(self) -> str:
        return self.name


class MemberBadge(TenantOwned):
    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("会员"))
    badge = models.ForeignKey(Badge, on_delete=models.CASCADE, related_name="+", verbose_name=_("徽章"))
    awarded_at = models.DateTimeField(_("获得时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("会员徽章")
        verbose_name_plural = _("会员徽章")
        constraints = [models.UniqueConstraint(fields=["member", "badge"], name="eng_member_badge_once")]


# --- lotteries -------------------------------------------------------------------------------------------


class Lottery(TenantOwned):
    class Status(models.TextChoices):
        OPEN = "open", _("报名中")
        CLOSED = "closed", _("已截止 (已公布承诺)")
        DRAWN = "drawn", _("已开奖")
        CANCELLED = "cancelled", _("已取消")

    title = models.CharField(_("标题"), max_length=120)
    community = models.ForeignKey("communities.Community", null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+", verbose_name=_("社群"))
    group = models.ForeignKey("communities.ChatGroup", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", verbose_name=_("公布中奖的群"))
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.OPEN)
    rules = models.JSONField(_("参与条件"), default=dict, blank=True)
    entry_cost_points = models.PositiveIntegerField(_("每注积分"), default=0)
    max_tickets = models.PositiveIntegerField(_("每人最多注数"), default=1)
    closes_at = models.DateTimeField(_("截止报名"))
    draw_at = models.DateTimeField(_("开奖时间"))
    seed_hex = models.CharField(max_length=64, editable=False)  # secret until the draw
    seed_commitment = models.CharField(_("种子承诺 SHA-256"), max_length=64)
    beacon = models.CharField(_("公共随机源轮次"), max_length=200, blank=True)
    beacon_value = models.CharField(_("公共随机源值"), max_length=200, blank=True)
    snapshot = models.JSONField(_("参与者快照"), null=True, blank=True)
    commitment = models.CharField(_("快照承诺 SHA-256"), max_length=64, blank=True)
    closed_at = models.DateTimeField(_("截止时间"), null=True, blank=True)
    drawn_at = models.DateTimeField(_("开奖于"), null=True, blank=True)
    result = models.JSONField(_("结果"), null=True, blank=True)
    created_by = models.CharField(_("创建人"), max_length=120, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("抽奖")
        verbose_name_plural = _("抽奖")
        indexes = [models.Index(fields=["status", "closes_at"], name="eng_lottery_due_idx")]

    def __str__(self) -> str:
        return self.title


class LotteryPrize(TenantOwned):
    lottery = models.ForeignKey(Lottery, on_delete=models.CASCADE, related_name="prizes", verbose_name=_("抽奖"))
    rank = models.PositiveSmallIntegerField(_("顺序"), default=1)
    name = models.CharField(_("奖品"), max_length=120)
    stock = models.PositiveIntegerField(_("数量"), default=1)

    class Meta:
        verbose_name = _("奖品")
        verbose_name_plural = _("奖品")
        ordering = ["rank", "id"]

    def __str__(self) -> str:
        return self.name


class LotteryEntry(TenantOwned):
    lottery = models.ForeignKey(Lottery, on_delete=models.CASCADE, related_name="entries", verbose_name=_("抽奖"))
    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("会员"))
    weight = models.PositiveIntegerField(_("注数"), default=1)
    created_at = models.DateTimeField(_("报名时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("抽奖报名")
        verbose_name_plural = _("抽奖报名")
        constraints = [
            models.UniqueConstraint(fields=["lottery", "member"], name="eng_lottery_entry_once"),
            models.CheckConstraint(condition=Q(weight__gte=1), name="eng_lottery_weight_pos"),
        ]


class LotteryWinner(TenantOwned):
    class Status(models.TextChoices):
        WON = "won", _("中奖")
        FORFEITED = "forfeited", _("放弃/失效")

    lottery = models.ForeignKey(Lottery, on_delete=models.CASCADE, related_name="winners", verbose_name=_("抽奖"))
    prize = models.ForeignKey(LotteryPrize, on_delete=models.CASCADE, related_name="+", verbose_name=_("奖品"))
    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("会员"))
    position = models.PositiveIntegerField(_("序位"))
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.WON)
    created_at = models.DateTimeField(_("时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("中奖者")
        verbose_name_plural = _("中奖者")
        constraints = [models.UniqueConstraint(fields=["lottery", "member"], name="eng_lottery_win_once")]


# --- red packets -----------------------------------------------------------------------------------------


class RedPacket(TenantOwned):
    class Currency(models.TextChoices):
        POINTS = "points", _("积分")
        CASH = "cash", _("现金 (分)")

    class Mode(models.TextChoices):
        FIXED = "fixed", _("普通 (均分)")
        RANDOM = "random", _("拼手气")

    class Status(models.TextChoices):
        OPEN = "open", _("可领取")
        FINISHED = "finished", _("已领完")
        EXPIRED = "expired", _("已过期")

    title = models.CharField(_("祝福语"), max_length=120, default="恭喜发财")
    community = models.ForeignKey("communities.Community", null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+", verbose_name=_("社群"))
    group = models.ForeignKey("communities.ChatGroup", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", verbose_name=_("群"))
    currency = models.CharField(_("币种"), max_length=8, choices=Currency.choices, default=Currency.POINTS)
    mode = models.CharField(_("类型"), max_length=8, choices=Mode.choices, default=Mode.RANDOM)
    total = models.BigIntegerField(_("总额"))
    count = models.PositiveIntegerField(_("个数"))
    remaining_amount = models.BigIntegerField(_("剩余金额"))
    remaining_count = models.PositiveIntegerField(_("剩余个数"))
    sender = models.ForeignKey("members.Member", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+", verbose_name=_("发送会员 (空 = 组织发放)"))
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.OPEN)
    expires_at = models.DateTimeField(_("过期时间"))
    refunded = models.BigIntegerField(_("已退回"), default=0)
    created_by = models.CharField(_("创建人"), max_length=120, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("红包")
        verbose_name_plural = _("红包")
        constraints = [
            models.CheckConstraint(condition=Q(remaining_amount__gte=F("remaining_count")), name="eng_rp_min_share"),
            models.CheckConstraint(condition=Q(remaining_amount__gte=0), name="eng_rp_amount_nonneg"),
            models.CheckConstraint(condition=Q(total__gte=F("count")), name="eng_rp_total_ge_count"),
        ]


class RedPacketClaim(TenantOwned):
    packet = models.ForeignKey(RedPacket, on_delete=models.CASCADE, related_name="claims", verbose_name=_("红包"))
    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("会员"))
    amount = models.BigIntegerField(_("金额"))
    claimed_at = models.DateTimeField(_("领取时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("红包领取")
        verbose_name_plural = _("红包领取")
        constraints = [
            models.UniqueConstraint(fields=["packet", "member"], name="eng_rp_claim_once"),
            models.CheckConstraint(condition=Q(amount__gte=1), name="eng_rp_claim_pos"),
        ]


# --- content SOP -----------------------------------------------------------------------------------------


class ContentItem(TenantOwned):
    class Kind(models.TextChoices):
        TEXT = "text", _("文本")
        IMAGE = "image", _("图片")
        LINK = "link", _("链接卡片")
        MARKDOWN = "markdown", "Markdown"

    title = models.CharField(_("标题"), max_length=120)
    kind = models.CharField(_("类型"), max_length=16, choices=Kind.choices, default=Kind.TEXT)
    body = models.TextField(_("正文"), blank=True)
    url = models.URLField(_("链接"), blank=True)
    image_url = models.URLField(_("图片地址"), blank=True)
    is_sales = models.BooleanField(_("销售内容"), default=False,
                                   help_text=_("销售内容不会发给入群未满冷却天数的成员"))
    platform_overrides = models.JSONField(_("分平台文案"), default=dict, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("内容")
        verbose_name_plural = _("内容库")

    def __str__(self) -> str:
        return self.title


class ContentSchedule(TenantOwned):
    class Kind(models.TextChoices):
        FIXED = "fixed", _("定时")
        RECURRING = "recurring", _("周期")
        SEQUENCE = "sequence", _("入群后第 N 天")

    content = models.ForeignKey(ContentItem, on_delete=models.CASCADE, related_name="schedules",
                                verbose_name=_("内容"))
    kind = models.CharField(_("类型"), max_length=16, choices=Kind.choices)
    community = models.ForeignKey("communities.Community", null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="+", verbose_name=_("社群"))
    group = models.ForeignKey("communities.ChatGroup", null=True, blank=True, on_delete=models.CASCADE,
                              related_name="+", verbose_name=_("群 (空 = 社群所有群)"))
    run_at = models.DateTimeField(_("发送时间 (定时)"), null=True, blank=True)
    time_of_day = models.TimeField(_("每日时间 (周期/序列)"), null=True, blank=True)
    weekdays = models.JSONField(_("星期 (0=周一, 空=每天)"), default=list, blank=True)
    day_offset = models.PositiveIntegerField(_("入群后第几天"), default=0)
    #: a segment (either or both set): the content goes to those members only — a direct message where
    #: the platform allows it and the member agreed to messages, else one post per group naming them
    segment_stage = models.CharField(_("目标人群: 生命周期"), max_length=16, choices=LifecycleStage.choices,
                                     blank=True)
    segment_tag = models.ForeignKey("members.Tag", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+", verbose_name=_("目标人群: 标签"))
    #: a saved segment of the analytics app (``members.audiences``): only its members get the content
    audience_id = models.BigIntegerField(_("目标人群: 已保存人群"), null=True, blank=True)
    respect_quiet_hours = models.BooleanField(_("遵守免打扰时段"), default=True)
    active = models.BooleanField(_("启用"), default=True)
    last_run_at = models.DateTimeField(_("上次运行"), null=True, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("内容排期")
        verbose_name_plural = _("内容排期")

    def __str__(self) -> str:
        return f"{self.content} ({self.get_kind_display()})"


class ContentDelivery(TenantOwned):
    class Status(models.TextChoices):
        QUEUED = "queued", _("已入发送队列")
        SKIPPED_COOLDOWN = "skipped_cooldown", _("冷却期内跳过 (销售内容)")
        NO_ROUTE = "no_route", _("无法送达 (不在群里, 也不能私信)")

    schedule = models.ForeignKey(ContentSchedule, on_delete=models.CASCADE, related_name="deliveries",
                                 verbose_name=_("排期"))
    key = models.CharField(max_length=191)
    group = models.ForeignKey("communities.ChatGroup", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", verbose_name=_("群"))
    member = models.ForeignKey("members.Member", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+", verbose_name=_("会员"))
    occurrence_at = models.DateTimeField(_("计划时间"))
    sent_at = models.DateTimeField(_("入队时间"), null=True, blank=True)
    status = models.CharField(_("状态"), max_length=20, choices=Status.choices, default=Status.QUEUED)
    direct = models.BooleanField(_("私信"), default=False)
    action_id = models.BigIntegerField(_("发送动作"), null=True, blank=True)
    replies = models.PositiveIntegerField(_("24 小时回复"), null=True, blank=True)
    reactions = models.PositiveIntegerField(_("24 小时表情"), null=True, blank=True)

    class Meta:
        verbose_name = _("内容发送")
        verbose_name_plural = _("内容发送")
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="eng_delivery_key")]


# --- health ----------------------------------------------------------------------------------------------


class HealthAlert(TenantOwned):
    class Kind(models.TextChoices):
        DEAD_GROUP = "dead_group", _("群不活跃")
        GOING_QUIET = "going_quiet", _("活跃成员沉默")

    kind = models.CharField(_("类型"), max_length=16, choices=Kind.choices)
    key = models.CharField(max_length=191)
    community = models.ForeignKey("communities.Community", null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="+", verbose_name=_("社群"))
    member = models.ForeignKey("members.Member", null=True, blank=True, on_delete=models.CASCADE,
                               related_name="+", verbose_name=_("会员"))
    message = models.CharField(_("说明"), max_length=300)
    data = models.JSONField(_("数据"), default=dict, blank=True)
    created_at = models.DateTimeField(_("时间"), auto_now_add=True)
    resolved_at = models.DateTimeField(_("已处理"), null=True, blank=True)

    class Meta:
        verbose_name = _("健康提醒")
        verbose_name_plural = _("健康提醒")
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="eng_alert_key")]


# --- welcome on join -------------------------------------------------------------------------------------


class WelcomeMessage(TenantOwned):
    """The welcome a community's groups post when members join, per platform (an empty platform = every
    platform without its own). ``body`` may use ``{name}``, ``{inviter}``, ``{community}``,
    ``{rules_link}`` and ``{portal_link}``. Joins close together in one group are welcomed in one message
    (at most one welcome per group per ``batch_seconds``), within the platform's welcome window."""

    class Platform(models.TextChoices):
        ALL = "", _("所有平台")
        WECOM = "wecom", _("企业微信")
        TELEGRAM = "telegram", _("Telegram")
        MATRIX = "matrix", _("Matrix")

    community = models.ForeignKey("communities.Community", on_delete=models.CASCADE, related_name="+",
                                  verbose_name=_("社群"))
    platform = models.CharField(_("平台"), max_length=16, choices=Platform.choices, default="", blank=True)
    body = models.TextField(_("欢迎语"), max_length=1500,
                            help_text=_("可用变量: {name} 新成员昵称, {inviter} 邀请人, {community} 社群名, "
                                        "{rules_link} 群规链接, {portal_link} 会员中心链接"))
    batch_seconds = models.PositiveIntegerField(_("合并间隔 (秒)"), default=30,
                                                help_text=_("同一个群在这段时间内再有人入群, 合并到下一条欢迎语"))
    active = models.BooleanField(_("启用"), default=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    class Meta:
        verbose_name = _("入群欢迎语")
        verbose_name_plural = _("入群欢迎语")
        constraints = [models.UniqueConstraint(fields=["tenant", "community", "platform"],
                                               name="eng_welcome_one_per_platform")]

    def __str__(self) -> str:
        return f"{self.community} · {self.get_platform_display()}"


class WelcomeJoin(TenantOwned):
    """One join waiting for, or covered by, a welcome (one row per join event)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("等待合并发送")
        QUEUED = "queued", _("已入发送队列")
        LATE = "late", _("超过平台欢迎时限, 未发送")

    welcome = models.ForeignKey(WelcomeMessage, on_delete=models.CASCADE, related_name="joins",
                                verbose_name=_("欢迎语"))
    group = models.ForeignKey("communities.ChatGroup", on_delete=models.CASCADE, related_name="+",
                              verbose_name=_("群"))
    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("会员"))
    event_id = models.BigIntegerField(_("入群事件"))
    joined_at = models.DateTimeField(_("入群时间"))
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.PENDING)
    action_id = models.BigIntegerField(_("发送动作"), null=True, blank=True)
    queued_at = models.DateTimeField(_("入队时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("入群欢迎记录")
        verbose_name_plural = _("入群欢迎记录")
        constraints = [models.UniqueConstraint(fields=["tenant", "event_id"], name="eng_welcome_join_event")]
        indexes = [models.Index(fields=["tenant", "group", "status"], name="eng_welcome_group_idx")]
