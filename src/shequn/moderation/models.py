"""Moderation engine: per-community policy, violations (the review queue), the member ladder
(strikes), moderator decisions that retrain the tenant's classifier, fingerprints for behaviour
checks and violation-rate alerts."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from shequn.core.models import TenantOwned


class Decision(models.TextChoices):
    ALLOW = "allow", _("放行")
    REVIEW = "review", _("进入审核队列")
    DELETE = "delete", _("删除")
    DELETE_WARN = "delete_warn", _("删除并警告 (按阶梯升级)")
    MUTE = "mute", _("禁言")
    KICK = "kick", _("移出群")
    BAN = "ban", _("封禁")


class FinalStep(models.TextChoices):
    KICK = "kick", _("移出群")
    BAN = "ban", _("封禁 (需两个独立信号)")


class ModerationPolicy(TenantOwned):
    """How one community enforces its rules. A community without a row uses the defaults below."""

    community = models.OneToOneField("communities.Community", on_delete=models.CASCADE,
                                      related_name="moderation_policy", verbose_name=_("社群"))
    enabled = models.BooleanField(_("启用自动审核"), default=True)
    dry_run = models.BooleanField(_("演练模式 (只记录, 不执行)"), default=False)
    rules_text = models.TextField(
        _("社群规则 (在默认规则包上追加)"), blank=True,
        help_text=_("例如: allow domain our-shop.example 或 category selling 推销 / term 2.0 代购"),
    )
    on_ad = models.CharField(_("判定为广告时"), max_length=16, choices=Decision.choices,
                             default=Decision.DELETE_WARN)
    on_review = models.CharField(_("疑似广告时"), max_length=16, choices=Decision.choices, default=Decision.REVIEW)
    warn_limit = models.PositiveSmallIntegerField(_("警告次数上限"), default=3)
    warn_window_days = models.PositiveSmallIntegerField(_("警告统计窗口 (天)"), default=7)
    mute_hours = models.PositiveIntegerField(_("禁言时长 (小时)"), default=24)
    final_step = models.CharField(_("禁言后再犯"), max_length=8, choices=FinalStep.choices, default=FinalStep.KICK)
    exempt_roles = models.JSONField(_("豁免角色"), default=list, blank=True,
                                    help_text=_("留空表示所有角色持有人都豁免; 例如 [\"owner\", \"cs\"]"))
    exempt_role_holders = models.BooleanField(_("豁免角色持有人"), default=True)
    exempt_staff = models.BooleanField(_("豁免管理员/员工"), default=True)
    notify_on_reversal = models.BooleanField(_("撤销处罚时通知成员"), default=True)
    warn_text = models.CharField(_("警告文案"), max_length=300, blank=True,
                                 help_text=_("留空使用默认文案; 可用 {category} {count} {limit}"))
    external_check = models.BooleanField(_("外部复核 (仅可否决)"), default=False)
    alert_rate = models.FloatField(_("广告率告警阈值 (%)"), default=5.0)
    report_threshold = models.PositiveSmallIntegerField(
        _("举报阈值"), default=3, help_text=_("同一条消息被这么多位成员举报后进入审核队列; 0 表示关闭"))
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    class Meta:
        verbose_name = _("审核策略")
        verbose_name_plural = _("审核策略")

    def __str__(self) -> str:
        return str(self.community)


class Violation(TenantOwned):
    """One judged message that was not plainly ok. The review queue is the rows in ``pending``."""

    class Status(models.TextChoices):
        PENDING = "pending", _("待审核")
        ACTIONED = "actioned", _("已处理")
        CONFIRMED = "confirmed", _("已确认")
        REVERSED = "reversed", _("已撤销")
        DRY_RUN = "dry_run", _("演练 (未执行)")
        EXEMPT = "exempt", _("豁免")
        ALLOWED = "allowed", _("放行")

    community = models.ForeignKey("communities.Community", null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="+", verbose_name=_("社群"))
    group = models.ForeignKey("communities.ChatGroup", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", verbose_name=_("群"))
    member = models.ForeignKey("members.Member", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+", verbose_name=_("会员"))
    # no database constraint: the event table is partitioned by month on PostgreSQL (its key is
    # (id, occurred_at)) and archived months are dropped
    event = models.ForeignKey("activity.ActivityEvent", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", verbose_name=_("消息事件"), db_constraint=False)
    platform = models.CharField(_("平台"), max_length=16, blank=True)
    message_external_id = models.CharField(_("消息 ID"), max_length=191, blank=True)
    text = models.TextField(_("消息内容"), blank=True)
    verdict = models.CharField(_("判定"), max_length=8)
    score = models.FloatField(_("分数"))
    category = models.CharField(_("类别"), max_length=32, blank=True)
    rule_id = models.CharField(_("主要规则"), max_length=120, blank=True)
    reasons = models.JSONField(_("依据"), default=list, blank=True)
    signals = models.PositiveSmallIntegerField(_("独立信号数"), default=0)
    text_hash = models.CharField(max_length=32, blank=True)
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.PENDING)
    actions = models.JSONField(_("动作"), default=list, blank=True,
                               help_text=_("[{kind, outbox_id, status}] 或演练时的计划动作"))
    ladder_step = models.CharField(_("阶梯"), max_length=16, blank=True)
    appeal_text = models.TextField(_("申诉内容"), blank=True)
    appealed_at = models.DateTimeField(_("申诉时间"), null=True, blank=True)
    reviewed_by = models.CharField(_("审核人"), max_length=120, blank=True)
    reviewed_at = models.DateTimeField(_("审核时间"), null=True, blank=True)
    review_note = models.CharField(_("审核备注"), max_length=500, blank=True)
    occurred_at = models.DateTimeField(_("消息时间"))
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("违规记录")
        verbose_name_plural = _("违规记录 (审核队列)")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "event"], condition=models.Q(event__isnull=False),
                                    name="violation_unique_event"),
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "created_at"], name="violation_queue_idx"),
            models.Index(fields=["tenant", "community", "occurred_at"], name="violation_comm_day_idx"),
            models.Index(fields=["tenant", "member", "occurred_at"], name="violation_member_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_status_display()} #{self.pk}"


class Strike(TenantOwned):
    """One rung of a member's ladder in a community (warn, mute, kick, ban). A reversal revokes the
    strikes of its violation, which restores the member's standing."""

    class Kind(models.TextChoices):
        WARN = "warn", _("警告")
        MUTE = "mute", _("禁言")
        KICK = "kick", _("移出")
        BAN = "ban", _("封禁")

    community = models.ForeignKey("communities.Community", on_delete=models.CASCADE, related_name="+",
                                  verbose_name=_("社群"))
    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+",
                               verbose_name=_("会员"))
    violation = models.ForeignKey(Violation, on_delete=models.CASCADE, related_name="strikes",
                                  verbose_name=_("违规"))
    kind = models.CharField(_("类型"), max_length=8, choices=Kind.choices)
    created_at = models.DateTimeField(_("时间"))
    until = models.DateTimeField(_("到期"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("撤销时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("处罚记录")
        verbose_name_plural = _("处罚记录")
        indexes = [models.Index(fields=["tenant", "community", "member", "created_at"], name="strike_ladder_idx")]


class TrainingExample(TenantOwned):
    """A moderator's decision on a message, fed to the tenant's classifier."""

    violation = models.ForeignKey(Violation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    text = models.TextField(_("规范化文本"))
    is_ad = models.BooleanField(_("是广告"))
    source = models.CharField(_("来源"), max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("训练样本")
        verbose_name_plural = _("训练样本")


class TenantModel(TenantOwned):
    """The tenant's classifier: shipped counts plus its moderators' decisions."""

    model_json = models.TextField()
    examples = models.PositiveIntegerField(default=0)
    trained_at = models.DateTimeField()

    class Meta:
        verbose_name = _("分类模型")
        verbose_name_plural = _("分类模型")
        constraints = [models.UniqueConstraint(fields=["tenant"], name="tenant_model_unique")]


class Fingerprint(TenantOwned):
    """A short-lived record of a judged message for flood and cross-group duplicate checks
    (pruned after a day)."""

    text_hash = models.CharField(max_length=32)
    member_id = models.BigIntegerField(null=True)
    group_id = models.BigIntegerField(null=True)
    at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "text_hash", "at"], name="fingerprint_hash_idx"),
            models.Index(fields=["tenant", "member_id", "at"], name="fingerprint_member_idx"),
        ]


class RateAlert(TenantOwned):
    """A community whose violation rate passed its policy threshold on a day (ad-group alert)."""

    community = models.ForeignKey("communities.Community", on_delete=models.CASCADE, related_name="+",
                                  verbose_name=_("社群"))
    day = models.DateField(_("日期"))
    messages = models.PositiveIntegerField(_("消息数"))
    violations = models.PositiveIntegerField(_("违规数"))
    rate = models.FloatField(_("违规率 (%)"))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("广告率告警")
        verbose_name_plural = _("广告率告警")
        constraints = [models.UniqueConstraint(fields=["tenant", "community", "day"], name="rate_alert_unique_day")]


class MemberReport(TenantOwned):
    """A member reporting a message. Enough distinct reporters put the message in the review queue."""

    event = models.ForeignKey("activity.ActivityEvent", on_delete=models.CASCADE, related_name="+",
                              verbose_name=_("消息事件"), db_constraint=False)  # partitioned: see above
    reporter = models.ForeignKey("members.Member", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+", verbose_name=_("举报人"))
    reason = models.CharField(_("理由"), max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("成员举报")
        verbose_name_plural = _("成员举报")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "event", "reporter"], name="report_unique_reporter"),
        ]
