"""Fission and distribution: invite links, attribution, bindings, one-level commission plans,
commissions (money lives in :mod:`shequn.ledger`), withdrawals, leaderboards, fission tasks, fraud
signals and merchant alliances."""

from __future__ import annotations

from django.db import models
from django.db.models import Value
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

from shequn.core.models import Tenant, TenantOwned


class BindingMode(models.TextChoices):
    PERMANENT = "permanent", _("永久绑定")
    DAYS = "days", _("N 天有效")
    LAST_CLICK = "last_click", _("最后点击")


class PayoutProviderName(models.TextChoices):
    """How approved withdrawals leave (:mod:`shequn.referrals.payouts`)."""

    WECHAT = "wechat", _("微信支付·商家转账到零钱")
    MANUAL = "manual", _("人工打款 (银行卡/支付宝转账, 员工登记流水号)")
    SANDBOX = "sandbox", _("沙箱 (仅演示, 不会真实打款)")


class ReferralPolicy(TenantOwned):
    """Per-tenant rules for binding, fraud handling and withdrawals (one row per tenant)."""

    binding_mode = models.CharField(_("绑定方式"), max_length=16, choices=BindingMode.choices,
                                    default=BindingMode.DAYS)
    binding_days = models.PositiveIntegerField(_("绑定有效天数"), default=30)
    protection_days = models.PositiveIntegerField(_("保护期(天)"), default=0,
                                                  help_text=_("保护期内不会被其他推荐人的链接改绑"))
    new_customer_only = models.BooleanField(_("仅新客可绑定"), default=False)
    fraud_blocking = models.BooleanField(_("风险信号直接冻结佣金"), default=False,
                                         help_text=_("关闭时仅标记待审核(共享办公网络等会误报)"))
    fraud_ip_threshold = models.PositiveIntegerField(_("同 IP 推荐下单阈值"), default=3)
    fraud_velocity_per_hour = models.PositiveIntegerField(_("每小时推荐成交上限"), default=30)
    fraud_refund_rate_pct = models.PositiveIntegerField(_("退款率阈值(%)"), default=25)
    withdrawal_min_fen = models.PositiveIntegerField(_("最低提现(分)"), default=100)
    withdrawal_fee_bps = models.PositiveIntegerField(_("提现手续费(万分之)"), default=0)
    withdrawal_fee_fixed_fen = models.PositiveIntegerField(_("每笔固定手续费(分)"), default=0)
    withdrawal_daily_cap_fen = models.PositiveBigIntegerField(_("每日提现上限(分)"), default=500_000)
    withdrawal_approval_above_fen = models.PositiveBigIntegerField(_("超过该金额需人工审核(分)"), default=50_000)
    payout_provider = models.CharField(_("打款渠道"), max_length=32, choices=PayoutProviderName.choices,
                                       default=PayoutProviderName.SANDBOX)

    class Meta:
        verbose_name = _("分销规则")
        verbose_name_plural = _("分销规则")
        constraints = [models.UniqueConstraint(fields=["tenant"], name="referral_policy_one_per_tenant")]

    def __str__(self) -> str:
        return str(_("分销规则"))


class LinkKind(models.TextChoices):
    MEMBER = "member", _("会员邀请链接")
    CHANNEL = "channel", _("渠道码")
    GROUP_LIVE = "group_live", _("群活码")


class InviteLink(TenantOwned):
    code = models.CharField(_("短码"), max_length=16, unique=True)
    kind = models.CharField(_("类型"), max_length=16, choices=LinkKind.choices, default=LinkKind.MEMBER)
    member = models.ForeignKey("members.Member", null=True, blank=True, on_delete=models.CASCADE,
                               related_name="+", verbose_name=_("推荐人"))
    community = models.ForeignKey("communities.Community", null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="+", verbose_name=_("社群"))
    campaign = models.CharField(_("活动"), max_length=64, blank=True)
    channel = models.CharField(_("渠道"), max_length=64, blank=True, help_text=_("如: 门店收银台、直播间"))
    label = models.CharField(_("名称"), max_length=120, blank=True)
    group_ids = models.JSONField(_("群活码轮转的群"), default=list, blank=True,
                                 help_text=_("留空则使用社群下所有启用的群"))
    is_active = models.BooleanField(_("启用"), default=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("邀请链接")
        verbose_name_plural = _("邀请链接")
        constraints = [
            models.UniqueConstraint(
                "tenant", "kind", Coalesce("member", Value(0)), Coalesce("community", Value(0)), "campaign",
                "channel", name="invite_link_unique_scope",
            )
        ]

    def __str__(self) -> str:
        return self.label or self.code


class LinkEventKind(models.TextChoices):
    CLICK = "click", _("点击")
    JOIN = "join", _("入群")
    PURCHASE = "purchase", _("购买")


class LinkEvent(TenantOwned):
    """Attribution: every click, join and purchase through a link. Append-only."""

    link = models.ForeignKey(InviteLink, on_delete=models.CASCADE, related_name="events", verbose_name=_("链接"))
    kind = models.CharField(_("类型"), max_length=16, choices=LinkEventKind.choices)
    member = models.ForeignKey("members.Member", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+", verbose_name=_("会员"))
    group = models.ForeignKey("communities.ChatGroup", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", verbose_name=_("群"))
    ip = models.GenericIPAddressField(_("IP"), null=True, blank=True)
    device_id = models.CharField(_("设备"), max_length=128, blank=True)
    order_id = models.CharField(_("订单"), max_length=64, blank=True)
    amount_fen = models.BigIntegerField(_("金额(分)"), default=0)
    occurred_at = models.DateTimeField(_("时间"), db_index=True)

    class Meta:
        verbose_name = _("链接归因")
        verbose_name_plural = _("链接归因")
        indexes = [
            models.Index(fields=["tenant", "link", "kind"], name="linkevent_link_kind_idx"),
            models.Index(fields=["tenant", "member", "kind"], name="linkevent_member_idx"),
            models.Index(fields=["tenant", "ip"], name="linkevent_ip_idx"),
        ]


class ReferralBinding(TenantOwned):
    """Who is whose referrer (one level). One row per referee; re-binding updates it (audited)."""

    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+",
                               verbose_name=_("被推荐人"))
    referrer = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+",
                                 verbose_name=_("推荐人"))
    link = models.ForeignKey(InviteLink, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                             verbose_name=_("来源链接"))
    bound_at = models.DateTimeField(_("绑定时间"))
    expires_at = models.DateTimeField(_("到期时间"), null=True, blank=True)
    protected_until = models.DateTimeField(_("保护期至"), null=True, blank=True)

    class Meta:
        verbose_name = _("推荐关系")
        verbose_name_plural = _("推荐关系")
        constraints = [models.UniqueConstraint(fields=["tenant", "member"], name="binding_one_per_member")]
        indexes = [models.Index(fields=["tenant", "referrer"], name="binding_referrer_idx")]


class BuyerStat(TenantOwned):
    """What referrals knows about a buyer's purchases (from order events): first paid order etc."""

    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+")
    paid_orders = models.PositiveIntegerField(default=0)
    first_paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "member"], name="buyerstat_one_per_member")]


class CommissionPlan(TenantOwned):
    name = models.CharField(_("名称"), max_length=120)
    community = models.ForeignKey("communities.Community", null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="+", verbose_name=_("社群"))
    campaign = models.CharField(_("活动"), max_length=64, blank=True)
    levels = models.PositiveSmallIntegerField(_("分佣层级"), default=1, editable=False)
    refund_window_days = models.PositiveSmallIntegerField(
        _("冻结期(天)"), default=7, help_text=_("退款期结束后佣金才可提现; 0 = 即时到账(有退款追回风险)"))
    self_purchase = models.BooleanField(_("自购返佣"), default=False)
    cap_per_order_fen = models.PositiveBigIntegerField(_("每单佣金上限(分)"), null=True, blank=True)
    priority = models.IntegerField(_("优先级"), default=0)
    is_active = models.BooleanField(_("启用"), default=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("佣金方案")
        verbose_name_plural = _("佣金方案")
        constraints = [models.CheckConstraint(condition=models.Q(levels=1), name="plan_one_level_only")]

    def __str__(self) -> str:
        return self.name


class RateMode(models.TextChoices):
    PERCENT = "percent", _("按比例")
    FIXED = "fixed", _("固定金额")


class CommissionRule(TenantOwned):
    plan = models.ForeignKey(CommissionPlan, on_delete=models.CASCADE, related_name="rules", verbose_name=_("方案"))
    level = models.PositiveSmallIntegerField(_("层级"), default=1, editable=False)
    product_kind = models.CharField(_("商品类型"), max_length=16, blank=True,
                                    choices=[("", _("全部")), ("goods", _("商品")), ("tier", _("会员/入群费"))])
    product_id = models.CharField(_("商品"), max_length=64, blank=True, help_text=_("留空 = 该类型全部商品"))
    mode = models.CharField(_("方式"), max_length=16, choices=RateMode.choices, default=RateMode.PERCENT)
    rate_bps = models.PositiveIntegerField(_("比例(万分之)"), default=0, help_text=_("10000 = 100%"))
    fixed_fen = models.PositiveBigIntegerField(_("每件固定佣金(分)"), default=0)
    cap_fen = models.PositiveBigIntegerField(_("每行上限(分)"), null=True, blank=True)

    class Meta:
        verbose_name = _("佣金规则")
        verbose_name_plural = _("佣金规则")
        constraints = [
            models.CheckConstraint(condition=models.Q(level=1), name="rule_one_level_only"),
            models.CheckConstraint(condition=models.Q(rate_bps__lte=10000), name="rule_rate_at_most_100pct"),
        ]


class CommissionState(models.TextChoices):
    FROZEN = "frozen", _("冻结中")
    HELD = "held", _("风控审核中")
    AVAILABLE = "available", _("可提现")
    WITHDRAWN = "withdrawn", _("已提现")
    VOID = "void", _("已作废")
    CLAWED_BACK = "clawed_back", _("已追回")


class Commission(TenantOwned):
    """One referrer's commission on one order line. ``tenant`` is the earner's tenant; an alliance
    commission has ``payer_tenant`` = the merchant whose product was sold."""

    event_id = models.CharField(_("订单事件"), max_length=64)
    order_id = models.CharField(_("订单"), max_length=64, db_index=True)
    order_line_id = models.CharField(_("订单行"), max_length=64)
    product_id = models.CharField(_("商品"), max_length=64, blank=True)
    product_kind = models.CharField(_("商品类型"), max_length=16, blank=True)
    referrer = models.ForeignKey("members.Member", on_delete=models.PROTECT, related_name="+",
                                 verbose_name=_("推荐人"))
    buyer_id = models.BigIntegerField(_("买家"))
    buyer_name = models.CharField(_("买家昵称"), max_length=120, blank=True)
    payer_tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+", verbose_name=_("出资商家"))
    plan = models.ForeignKey(CommissionPlan, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                             verbose_name=_("方案"))
    plan_snapshot = models.JSONField(_("方案快照"), default=dict)
    community_id_snapshot = models.BigIntegerField(null=True, blank=True)
    campaign = models.CharField(_("活动"), max_length=64, blank=True)
    invite_code = models.CharField(_("邀请码"), max_length=16, blank=True)
    base_fen = models.BigIntegerField(_("计佣金额(分)"))
    amount_fen = models.BigIntegerField(_("佣金(分)"))
    reversed_fen = models.BigIntegerField(_("已退回(分)"), default=0)
    withdrawn_fen = models.BigIntegerField(_("已提现(分)"), default=0)
    state = models.CharField(_("状态"), max_length=16, choices=CommissionState.choices, db_index=True)
    paid_at = models.DateTimeField(_("支付时间"))
    thaw_at = models.DateTimeField(_("解冻时间"), db_index=True)
    available_at = models.DateTimeField(_("到账时间"), null=True, blank=True)
    alliance = models.ForeignKey("Alliance", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                 verbose_name=_("联盟"))
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("佣金")
        verbose_name_plural = _("佣金")
        constraints = [models.UniqueConstraint(fields=["payer_tenant", "order_line_id"],
                                               name="commission_one_per_order_line")]
        indexes = [models.Index(fields=["tenant", "referrer", "created_at"], name="commission_referrer_idx")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.amount_fen / 100:.2f}"


class ProcessedOrderEvent(TenantOwned):
    """Order events already handled (idempotency on ``event_id``)."""

    event_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=16)
    processed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "event_id"], name="order_event_once")]


class WithdrawalStatus(models.TextChoices):
    REQUESTED = "requested", _("已申请")
    APPROVED = "approved", _("已审核")
    PROCESSING = "processing", _("打款中")
    PAID = "paid", _("已打款")
    FAILED = "failed", _("打款失败")
    REJECTED = "rejected", _("已驳回")
    REVERSED = "reversed", _("已退回余额")


class Withdrawal(TenantOwned):
    member = models.ForeignKey("members.Member", on_delete=models.PROTECT, related_name="+", verbose_name=_("会员"))
    idempotency_key = models.CharField(_("幂等键"), max_length=128)
    out_no = models.CharField(_("商户单号"), max_length=64, unique=True)
    amount_fen = models.BigIntegerField(_("提现金额(分)"))
    fee_fen = models.BigIntegerField(_("手续费(分)"), default=0)
    payee = models.CharField(_("收款账号(openid)"), max_length=128, blank=True)
    status = models.CharField(_("状态"), max_length=16, choices=WithdrawalStatus.choices, db_index=True)
    provider = models.CharField(_("打款渠道"), max_length=32)
    provider_ref = models.CharField(_("渠道单号"), max_length=128, blank=True)
    failure_reason = models.CharField(_("失败原因"), max_length=255, blank=True)
    requested_at = models.DateTimeField(_("申请时间"), db_index=True)
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    class Meta:
        verbose_name = _("提现")
        verbose_name_plural = _("提现")
        constraints = [models.UniqueConstraint(fields=["tenant", "idempotency_key"], name="withdrawal_idem")]

    def __str__(self) -> str:
        return f"{self.out_no} {self.amount_fen / 100:.2f}"


class WithdrawalEvent(TenantOwned):
    """The status trail of a withdrawal. Append-only."""

    withdrawal = models.ForeignKey(Withdrawal, on_delete=models.CASCADE, related_name="trail")
    from_status = models.CharField(_("原状态"), max_length=16, blank=True)
    to_status = models.CharField(_("新状态"), max_length=16)
    actor = models.CharField(_("操作者"), max_length=120, blank=True)
    note = models.CharField(_("说明"), max_length=255, blank=True)
    at = models.DateTimeField(_("时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("提现记录")
        verbose_name_plural = _("提现记录")


class LeaderboardEntry(TenantOwned):
    """SQL leaderboard (source of truth; Redis sorted sets mirror it when configured)."""

    board = models.CharField(max_length=96)  # "<metric>|<scope>", e.g. "referrals|community:3"
    period = models.CharField(max_length=16)  # "all", "d2026-11-23", "w2026-48", "m2026-11"
    member_id = models.BigIntegerField()
    value = models.BigIntegerField(default=0)
    reached_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "board", "period", "member_id"],
                                               name="leaderboard_unique")]
        indexes = [models.Index("tenant", "board", "period", models.F("value").desc(), "reached_at",
                                name="leaderboard_rank_idx")]


class RewardKind(models.TextChoices):
    POINTS = "points", _("积分")
    COUPON = "coupon", _("优惠券")
    GIFT = "gift", _("礼品")
    CASH = "cash", _("现金(入账本)")


class FissionTask(TenantOwned):
    name = models.CharField(_("名称"), max_length=120)
    community = models.ForeignKey("communities.Community", null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="+", verbose_name=_("社群"))
    campaign = models.CharField(_("活动"), max_length=64, blank=True)
    threshold = models.PositiveIntegerField(_("有效邀请人数"))
    reward_kind = models.CharField(_("奖励"), max_length=16, choices=RewardKind.choices)
    reward_value = models.BigIntegerField(_("奖励数值"), default=0, help_text=_("积分数 / 现金分 / 券模板 ID"))
    reward_note = models.CharField(_("奖励说明"), max_length=200, blank=True)
    is_active = models.BooleanField(_("启用"), default=True)

    class Meta:
        verbose_name = _("裂变任务")
        verbose_name_plural = _("裂变任务")

    def __str__(self) -> str:
        return self.name


class FissionReward(TenantOwned):
    task = models.ForeignKey(FissionTask, on_delete=models.CASCADE, related_name="rewards")
    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+")
    granted_at = models.DateTimeField(auto_now_add=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = _("裂变奖励")
        verbose_name_plural = _("裂变奖励")
        constraints = [models.UniqueConstraint(fields=["task", "member"], name="fission_reward_once")]


class GiftShipment(TenantOwned):
    """The fulfilment of a fission **gift** reward: a physical gift waits for the member's address,
    is shipped by staff (who and when, carrier and tracking number) and may be cancelled. One per
    reward; written only by :mod:`shequn.referrals.services.fission`."""

    class Status(models.TextChoices):
        AWAITING_ADDRESS = "awaiting_address", _("待填写地址")
        TO_SHIP = "to_ship", _("待发货")
        SHIPPED = "shipped", _("已发货")
        CANCELLED = "cancelled", _("已取消")

    reward = models.OneToOneField(FissionReward, on_delete=models.CASCADE, related_name="shipment",
                                  verbose_name=_("裂变奖励"))
    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("会员"))
    gift = models.CharField(_("礼品"), max_length=120)
    status = models.CharField(_("状态"), max_length=20, choices=Status.choices, default=Status.AWAITING_ADDRESS)
    recipient = models.CharField(_("收件人"), max_length=60, blank=True)
    phone = models.CharField(_("收件电话"), max_length=20, blank=True)
    address = models.CharField(_("收件地址"), max_length=300, blank=True)
    carrier = models.CharField(_("快递公司"), max_length=40, blank=True)
    tracking_no = models.CharField(_("快递单号"), max_length=60, blank=True)
    shipped_by = models.CharField(_("发货人"), max_length=120, blank=True)
    shipped_at = models.DateTimeField(_("发货时间"), null=True, blank=True)
    note = models.CharField(_("备注"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    class Meta:
        verbose_name = _("礼品发货")
        verbose_name_plural = _("礼品发货")
        indexes = [models.Index(fields=["tenant", "status"], name="gift_shipment_status_idx")]

    def __str__(self) -> str:
        return f"{self.gift} → {self.member}"


class FraudKind(models.TextChoices):
    SAME_PHONE = "same_phone", _("同手机号")
    IP_CLUSTER = "ip_cluster", _("同 IP 聚集")
    DEVICE_CLUSTER = "device_cluster", _("同设备聚集")
    VELOCITY = "velocity", _("成交速度异常")
    REREGISTRATION = "reregistration", _("重复注册")
    EXISTING_CUSTOMER = "existing_customer", _("老客户")
    REFUND_RATE = "refund_rate", _("退款率过高")


class FraudStatus(models.TextChoices):
    OPEN = "open", _("待审核")
    CLEARED = "cleared", _("已放行")
    CONFIRMED = "confirmed", _("确认作弊")


class FraudSignal(TenantOwned):
    kind = models.CharField(_("信号"), max_length=24, choices=FraudKind.choices)
    referrer = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+",
                                 verbose_name=_("推荐人"))
    subject_member_id = models.BigIntegerField(_("相关会员"), null=True, blank=True)
    commission = models.ForeignKey(Commission, null=True, blank=True, on_delete=models.CASCADE,
                                   related_name="signals", verbose_name=_("佣金"))
    order_id = models.CharField(_("订单"), max_length=64, blank=True)
    detail = models.JSONField(_("详情"), default=dict, blank=True)
    blocking = models.BooleanField(_("已冻结佣金"), default=False)
    status = models.CharField(_("状态"), max_length=16, choices=FraudStatus.choices, default=FraudStatus.OPEN)
    reviewed_by = models.CharField(_("审核人"), max_length=120, blank=True)
    reviewed_at = models.DateTimeField(_("审核时间"), null=True, blank=True)
    created_at = models.DateTimeField(_("时间"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("风险信号")
        verbose_name_plural = _("风险信号")


class Alliance(models.Model):
    """A merchant alliance (商家联盟): tenants that distribute each other's products."""

    name = models.CharField(_("名称"), max_length=120)
    owner_tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+", verbose_name=_("发起商家"))
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("商家联盟")
        verbose_name_plural = _("商家联盟")

    def __str__(self) -> str:
        return self.name


class AllianceMember(models.Model):
    alliance = models.ForeignKey(Alliance, on_delete=models.CASCADE, related_name="members")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", verbose_name=_("商家"))
    joined_at = models.DateTimeField(_("加入时间"), auto_now_add=True)
    is_active = models.BooleanField(_("有效"), default=True)

    class Meta:
        verbose_name = _("联盟成员")
        verbose_name_plural = _("联盟成员")
        constraints = [models.UniqueConstraint(fields=["alliance", "tenant"], name="alliance_member_once")]


class AllianceInvitation(models.Model):
    """A member merchant invites another merchant (named by its organisation code); the invited
    merchant accepts or declines. Joining an alliance is only by accepting an invitation."""

    class Status(models.TextChoices):
        PENDING = "pending", _("待接受")
        ACCEPTED = "accepted", _("已接受")
        DECLINED = "declined", _("已拒绝")

    alliance = models.ForeignKey(Alliance, on_delete=models.CASCADE, related_name="invitations",
                                 verbose_name=_("商家联盟"))
    inviter = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", verbose_name=_("邀请方"))
    invitee = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", verbose_name=_("被邀请商家"))
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(_("邀请时间"), auto_now_add=True)
    responded_at = models.DateTimeField(_("答复时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("联盟邀请")
        verbose_name_plural = _("联盟邀请")
        constraints = [models.UniqueConstraint(fields=["alliance", "invitee"], condition=models.Q(status="pending"),
                                               name="alliance_invitation_one_pending")]


class AllianceListing(models.Model):
    """A product that ``tenant`` (the seller) lets alliance members distribute, and what it pays."""

    alliance = models.ForeignKey(Alliance, on_delete=models.CASCADE, related_name="listings")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", verbose_name=_("商家"))
    product_id = models.CharField(_("商品"), max_length=64)
    title = models.CharField(_("商品名称"), max_length=120, blank=True)
    mode = models.CharField(_("方式"), max_length=16, choices=RateMode.choices, default=RateMode.PERCENT)
    rate_bps = models.PositiveIntegerField(_("比例(万分之)"), default=1000)
    fixed_fen = models.PositiveBigIntegerField(_("每件固定佣金(分)"), default=0)
    refund_window_days = models.PositiveSmallIntegerField(_("冻结期(天)"), default=7)
    is_active = models.BooleanField(_("启用"), default=True)

    class Meta:
        verbose_name = _("联盟商品")
        verbose_name_plural = _("联盟商品")
        constraints = [
            models.UniqueConstraint(fields=["alliance", "tenant", "product_id"], name="alliance_listing_once"),
            models.CheckConstraint(condition=models.Q(rate_bps__lte=10000), name="alliance_rate_at_most_100pct"),
        ]


class AllianceStatement(models.Model):
    """What ``payer`` owes ``payee`` for alliance commissions created in [period_start, period_end)."""

    alliance = models.ForeignKey(Alliance, on_delete=models.PROTECT, related_name="statements")
    payer = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+", verbose_name=_("付款商家"))
    payee = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+", verbose_name=_("收款商家"))
    period_start = models.DateTimeField(_("起"))
    period_end = models.DateTimeField(_("止"))
    total_fen = models.BigIntegerField(_("合计(分)"))
    created_at = models.DateTimeField(_("生成时间"), auto_now_add=True)
    settled_at = models.DateTimeField(_("结清时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("联盟结算单")
        verbose_name_plural = _("联盟结算单")
        constraints = [models.UniqueConstraint(fields=["alliance", "payer", "payee", "period_start", "period_end"],
                                               name="alliance_statement_once")]


class AllianceStatementLine(models.Model):
    statement = models.ForeignKey(AllianceStatement, on_delete=models.CASCADE, related_name="lines")
    commission = models.ForeignKey(Commission, on_delete=models.PROTECT, related_name="+")
    amount_fen = models.BigIntegerField(_("金额(分)"))
    payer_transaction = models.ForeignKey("ledger.Transaction", on_delete=models.PROTECT, related_name="+")
    payee_transaction = models.ForeignKey("ledger.Transaction", on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["statement", "payer_transaction"],
                                               name="statement_line_once")]


class WeChatPayConfig(TenantOwned):
    """A tenant's WeChat Pay merchant credentials for merchant transfers (商家转账到零钱), in WeChat
    Pay's public-key mode (no platform-certificate download). The merchant private key and the APIv3
    key are encrypted at rest (:mod:`shequn.core.fieldcrypt`, like connector secrets) and never
    shown again; ``secret_hints`` keeps their last characters for the console."""

    mchid = models.CharField(_("商户号"), max_length=32)
    appid = models.CharField(_("AppID (公众号/小程序)"), max_length=32)
    cert_serial_no = models.CharField(_("商户 API 证书序列号"), max_length=64)
    public_key_id = models.CharField(_("微信支付公钥 ID"), max_length=64)
    public_key = models.TextField(_("微信支付公钥 (PEM)"))
    secrets_encrypted = models.TextField(_("密钥(加密)"), editable=False, blank=True)
    secret_hints = models.JSONField(_("密钥提示"), default=dict, editable=False, blank=True)
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    class Meta:
        verbose_name = _("微信支付商户配置")
        verbose_name_plural = _("微信支付商户配置")
        constraints = [models.UniqueConstraint(fields=["tenant"], name="wechatpay_config_one_per_tenant")]

    def __str__(self) -> str:
        return str(_("微信支付商户 %(m)s") % {"m": self.mchid})
