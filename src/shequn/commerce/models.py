"""Community commerce: catalog, orders, payments, refunds, order events, flash sales, group buys,
coupons, paid community tiers and live sessions.

Money is integer fen everywhere. Stock and money columns carry database CHECK constraints so that
even a buggy writer cannot drive them negative or refund more than was paid."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from shequn.core.models import TenantOwned


class ProductKind(models.TextChoices):
    GOODS = "goods", _("商品")
    TIER = "tier", _("付费社群等级")


class LiveSession(TenantOwned):
    """A live stream that orders and joins are attributed to."""

    title = models.CharField(_("标题"), max_length=200)
    platform = models.CharField(_("直播平台"), max_length=32, default="wechat_channels",
                                help_text=_("如 视频号 wechat_channels、抖音 douyin、portal"))
    host = models.ForeignKey("members.Member", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                             verbose_name=_("主播"))
    host_name = models.CharField(_("主播名称"), max_length=120, blank=True)
    community = models.ForeignKey("communities.Community", null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+", verbose_name=_("社群"))
    starts_at = models.DateTimeField(_("开始时间"))
    ends_at = models.DateTimeField(_("结束时间"), null=True, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("直播场次")
        verbose_name_plural = _("直播场次")

    def __str__(self) -> str:
        return self.title


class LiveJoin(TenantOwned):
    """A member who joined a community through a live session (公域 → 私域 conversion)."""

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="joins",
                                verbose_name=_("直播场次"))
    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("会员"))
    community = models.ForeignKey("communities.Community", on_delete=models.CASCADE, related_name="+",
                                  verbose_name=_("社群"))
    joined_at = models.DateTimeField(_("加入时间"))

    class Meta:
        verbose_name = _("直播入群")
        verbose_name_plural = _("直播入群")
        constraints = [models.UniqueConstraint(fields=["session", "member", "community"], name="live_join_once")]


class Product(TenantOwned):
    name = models.CharField(_("名称"), max_length=200)
    description = models.TextField(_("描述"), blank=True)
    kind = models.CharField(_("类型"), max_length=8, choices=ProductKind.choices, default=ProductKind.GOODS)
    images = models.JSONField(_("图片"), default=list, blank=True, help_text=_("图片地址列表"))
    is_active = models.BooleanField(_("上架"), default=True)
    visible_in = models.ManyToManyField("communities.Community", blank=True, related_name="+",
                                        verbose_name=_("可见社群"), help_text=_("留空表示所有人可见"))
    # paid community tier (kind = tier)
    tier_community = models.ForeignKey("communities.Community", null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="+", verbose_name=_("开通社群"))
    tier_code = models.CharField(_("等级代码"), max_length=32, blank=True)
    tier_rank = models.PositiveSmallIntegerField(_("等级序号"), default=0)
    tier_privileges = models.JSONField(_("权益"), default=dict, blank=True)
    tier_duration_days = models.PositiveIntegerField(_("有效天数"), null=True, blank=True,
                                                     help_text=_("留空表示永久"))
    # buy one, give one: a paid order of this product grants a share coupon of this template
    gift_coupon_template = models.ForeignKey("CouponTemplate", null=True, blank=True, on_delete=models.SET_NULL,
                                             related_name="+", verbose_name=_("买一赠一券"))
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("商品")
        verbose_name_plural = _("商品")
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="goods") | Q(tier_community__isnull=False), name="tier_product_has_community"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Sku(TenantOwned):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="skus", verbose_name=_("商品"))
    code = models.CharField(_("编码"), max_length=64)
    name = models.CharField(_("规格"), max_length=120, blank=True)
    price_fen = models.PositiveIntegerField(_("价格(分)"))
    stock = models.IntegerField(_("库存"), default=0)
    is_active = models.BooleanField(_("启用"), default=True)

    class Meta:
        verbose_name = _("SKU")
        verbose_name_plural = _("SKU")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "code"], name="sku_unique_code"),
            models.CheckConstraint(condition=Q(stock__gte=0), name="sku_stock_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.product.name} {self.name}".strip() if self.product_id else self.code


class MemberPrice(TenantOwned):
    """会员价: a lower price for members at or above a relationship level, or holders of a tier."""

    sku = models.ForeignKey(Sku, on_delete=models.CASCADE, related_name="member_prices", verbose_name=_("SKU"))
    min_relationship_level = models.PositiveSmallIntegerField(_("最低关系等级"), null=True, blank=True)
    tier_product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                     verbose_name=_("持有付费等级"))
    price_fen = models.PositiveIntegerField(_("会员价(分)"))

    class Meta:
        verbose_name = _("会员价")
        verbose_name_plural = _("会员价")
        constraints = [
            models.CheckConstraint(
                condition=Q(min_relationship_level__isnull=False) | Q(tier_product__isnull=False),
                name="member_price_has_rule",
            )
        ]


class OrderStatus(models.TextChoices):
    CREATED = "created", _("待支付")
    PAID = "paid", _("已支付")
    FULFILLED = "fulfilled", _("已发货")
    COMPLETED = "completed", _("已完成")
    CANCELLED = "cancelled", _("已取消")
    REFUND_REQUESTED = "refund_requested", _("退款中")
    PARTIALLY_REFUNDED = "partially_refunded", _("部分退款")
    REFUNDED = "refunded", _("已退款")


class Order(TenantOwned):
    member = models.ForeignKey("members.Member", on_delete=models.PROTECT, related_name="+", verbose_name=_("会员"))
    status = models.CharField(_("状态"), max_length=20, choices=OrderStatus.choices, default=OrderStatus.CREATED)
    goods_fen = models.PositiveIntegerField(_("商品金额(分)"))
    discount_fen = models.PositiveIntegerField(_("优惠(分)"), default=0)
    total_fen = models.PositiveIntegerField(_("应付(分)"))
    paid_fen = models.PositiveIntegerField(_("实付(分)"), default=0)
    refunded_fen = models.PositiveIntegerField(_("已退(分)"), default=0)
    attribution = models.JSONField(_("归因"), default=dict, blank=True)
    live_session = models.ForeignKey(LiveSession, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="orders", verbose_name=_("直播场次"))
    flash_sale = models.ForeignKey("FlashSale", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="orders", verbose_name=_("秒杀"))
    team = models.ForeignKey("GroupBuyTeam", null=True, blank=True, on_delete=models.PROTECT,
                             related_name="orders", verbose_name=_("拼团"))
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(_("支付截止"), null=True, blank=True)
    created_at = models.DateTimeField(_("下单时间"), auto_now_add=True, db_index=True)
    paid_at = models.DateTimeField(_("支付时间"), null=True, blank=True)
    fulfilled_at = models.DateTimeField(_("发货时间"), null=True, blank=True)
    completed_at = models.DateTimeField(_("完成时间"), null=True, blank=True)
    cancelled_at = models.DateTimeField(_("取消时间"), null=True, blank=True)
    cancel_reason = models.CharField(_("取消原因"), max_length=200, blank=True)
    stock_released = models.BooleanField(default=False)

    class Meta:
        verbose_name = _("订单")
        verbose_name_plural = _("订单")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "member", "idempotency_key"], name="order_idempotency",
                                    condition=Q(idempotency_key__isnull=False)),
            models.CheckConstraint(condition=Q(refunded_fen__lte=F("paid_fen")), name="order_refund_le_paid"),
            models.CheckConstraint(condition=Q(total_fen=F("goods_fen") - F("discount_fen")), name="order_total_sum"),
        ]
        indexes = [
            models.Index(fields=["status", "expires_at"], name="order_expiry_idx"),
            models.Index(fields=["tenant", "member", "status"], name="order_member_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk}"


class OrderLine(TenantOwned):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines", verbose_name=_("订单"))
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+", verbose_name=_("商品"))
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="+", verbose_name=_("SKU"))
    product_kind = models.CharField(_("类型"), max_length=8, choices=ProductKind.choices)
    name = models.CharField(_("名称"), max_length=240)
    quantity = models.PositiveIntegerField(_("数量"))
    list_price_fen = models.PositiveIntegerField(_("原价(分)"))
    unit_price_fen = models.PositiveIntegerField(_("成交单价(分)"))
    discount_fen = models.PositiveIntegerField(_("优惠分摊(分)"), default=0)
    amount_fen = models.PositiveIntegerField(_("实付金额(分)"))

    class Meta:
        verbose_name = _("订单明细")
        verbose_name_plural = _("订单明细")
        constraints = [models.CheckConstraint(condition=Q(quantity__gt=0), name="order_line_qty_positive")]


class Payment(TenantOwned):
    class Status(models.TextChoices):
        PENDING = "pending", _("待支付")
        SUCCEEDED = "succeeded", _("成功")
        FAILED = "failed", _("失败")
        CLOSED = "closed", _("已关闭")

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="payments", verbose_name=_("订单"))
    provider = models.CharField(_("渠道"), max_length=16)
    channel = models.CharField(_("方式"), max_length=16, blank=True)
    out_trade_no = models.CharField(_("商户单号"), max_length=32, unique=True)
    provider_txn_id = models.CharField(_("渠道流水号"), max_length=64, blank=True)
    amount_fen = models.PositiveIntegerField(_("金额(分)"))
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.PENDING)
    applied = models.BooleanField(_("已计入订单"), default=False,
                                  help_text=_("未计入的成功支付(重复支付、过期无货)会被自动全额退款"))
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)
    prepay = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    paid_at = models.DateTimeField(_("支付时间"), null=True, blank=True)
    note = models.CharField(_("说明"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("支付")
        verbose_name_plural = _("支付")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "order", "idempotency_key"], name="payment_idempotency",
                                    condition=Q(idempotency_key__isnull=False)),
        ]


class Refund(TenantOwned):
    class Status(models.TextChoices):
        PENDING = "pending", _("处理中")
        SUCCEEDED = "succeeded", _("成功")
        FAILED = "failed", _("失败")

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="refunds", verbose_name=_("订单"))
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds", verbose_name=_("支付"))
    order_line = models.ForeignKey(OrderLine, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                   verbose_name=_("订单明细"))
    out_refund_no = models.CharField(_("退款单号"), max_length=64, unique=True)
    provider_refund_id = models.CharField(_("渠道退款号"), max_length=64, blank=True)
    amount_fen = models.PositiveIntegerField(_("金额(分)"))
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(_("原因"), max_length=200, blank=True)
    prior_status = models.CharField(max_length=20, blank=True)
    idempotency_key = models.CharField(max_length=128)
    created_at = models.DateTimeField(_("申请时间"), auto_now_add=True)
    completed_at = models.DateTimeField(_("完成时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("退款")
        verbose_name_plural = _("退款")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "idempotency_key"], name="refund_idempotency"),
            models.CheckConstraint(condition=Q(amount_fen__gt=0), name="refund_amount_positive"),
        ]


class PaymentCallback(models.Model):
    """Every provider notification received, verified or not (no secrets, no PII)."""

    provider = models.CharField(max_length=16)
    tenant_id = models.BigIntegerField(null=True)
    out_trade_no = models.CharField(max_length=64, blank=True)
    kind = models.CharField(max_length=16, blank=True)
    body_sha256 = models.CharField(max_length=64)
    outcome = models.CharField(max_length=32)
    detail = models.CharField(max_length=300, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("支付回调")
        verbose_name_plural = _("支付回调")


class SandboxTransaction(models.Model):
    """The sandbox provider's own books (what a real provider would report in its bill)."""

    kind = models.CharField(max_length=8)  # pay | refund
    out_no = models.CharField(max_length=64, unique=True)
    out_trade_no = models.CharField(max_length=32)
    provider_id = models.CharField(max_length=64)
    amount_fen = models.PositiveIntegerField()
    status = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)


class OrderEvent(TenantOwned):
    """Append-only: what happened to an order, for other engines (referrals, analytics)."""

    class Kind(models.TextChoices):
        PAID = "paid", _("已支付")
        REFUNDED = "refunded", _("已退款")
        COMPLETED = "completed", _("已完成")
        CANCELLED = "cancelled", _("已取消")

    kind = models.CharField(_("类型"), max_length=16, choices=Kind.choices)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="events", verbose_name=_("订单"))
    amount_fen = models.PositiveIntegerField(_("金额(分)"))
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(_("时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("订单事件")
        verbose_name_plural = _("订单事件")


# --- flash sales --------------------------------------------------------------------------------


class FlashSale(TenantOwned):
    name = models.CharField(_("名称"), max_length=120)
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="+", verbose_name=_("SKU"))
    price_fen = models.PositiveIntegerField(_("秒杀价(分)"))
    initial_stock = models.PositiveIntegerField(_("活动库存"))
    stock = models.IntegerField(_("剩余库存"))
    per_member_limit = models.PositiveIntegerField(_("每人限购"), default=1)
    starts_at = models.DateTimeField(_("开始时间"))
    ends_at = models.DateTimeField(_("结束时间"))
    reservation_ttl_seconds = models.PositiveIntegerField(_("支付时限(秒)"), default=900)
    eligible_community = models.ForeignKey("communities.Community", null=True, blank=True, on_delete=models.PROTECT,
                                           related_name="+", verbose_name=_("限社群成员"))
    eligible_tier = models.ForeignKey(Product, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                      verbose_name=_("限付费等级"))
    min_relationship_level = models.PositiveSmallIntegerField(_("最低关系等级"), null=True, blank=True)
    use_redis_gate = models.BooleanField(_("Redis 闸门"), default=False,
                                         help_text=_("配置了 SHEQUN_REDIS_URL 时, 热门商品经 Redis 预扣"))

    class Meta:
        verbose_name = _("秒杀")
        verbose_name_plural = _("秒杀")
        constraints = [
            models.CheckConstraint(condition=Q(stock__gte=0), name="flash_stock_non_negative"),
            models.CheckConstraint(condition=Q(stock__lte=F("initial_stock")), name="flash_stock_le_initial"),
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="flash_window_valid"),
        ]

    def __str__(self) -> str:
        return self.name


class FlashReservation(TenantOwned):
    """The per-member row: unique (flash sale, member) is the limit, inserted before the decrement."""

    class Status(models.TextChoices):
        RESERVED = "reserved", _("已锁定")
        PAID = "paid", _("已支付")
        RELEASED = "released", _("已释放")

    flash_sale = models.ForeignKey(FlashSale, on_delete=models.CASCADE, related_name="reservations")
    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+")
    quantity = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RESERVED)
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    gate_id = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("秒杀资格")
        verbose_name_plural = _("秒杀资格")
        constraints = [models.UniqueConstraint(fields=["flash_sale", "member"], name="flash_one_per_member")]


# --- group buys ----------------------------------------------------------------------------------


class GroupBuy(TenantOwned):
    name = models.CharField(_("名称"), max_length=120)
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="+", verbose_name=_("SKU"))
    price_fen = models.PositiveIntegerField(_("拼团价(分)"))
    team_size = models.PositiveSmallIntegerField(_("成团人数"))
    time_limit_minutes = models.PositiveIntegerField(_("成团时限(分钟)"), default=1440)
    starts_at = models.DateTimeField(_("开始时间"))
    ends_at = models.DateTimeField(_("结束时间"))
    leader_reward_template = models.ForeignKey("CouponTemplate", null=True, blank=True, on_delete=models.SET_NULL,
                                               related_name="+", verbose_name=_("团长奖励券"))
    is_active = models.BooleanField(_("启用"), default=True)

    class Meta:
        verbose_name = _("拼团")
        verbose_name_plural = _("拼团")
        constraints = [models.CheckConstraint(condition=Q(team_size__gte=2), name="group_buy_team_size")]

    def __str__(self) -> str:
        return self.name


class GroupBuyTeam(TenantOwned):
    class Status(models.TextChoices):
        OPEN = "open", _("拼团中")
        SUCCEEDED = "succeeded", _("已成团")
        FAILED = "failed", _("未成团")

    group_buy = models.ForeignKey(GroupBuy, on_delete=models.PROTECT, related_name="teams", verbose_name=_("拼团"))
    leader = models.ForeignKey("members.Member", on_delete=models.PROTECT, related_name="+", verbose_name=_("团长"))
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.OPEN)
    share_token = models.CharField(_("分享码"), max_length=32, unique=True)
    expires_at = models.DateTimeField(_("截止时间"))
    created_at = models.DateTimeField(_("开团时间"), auto_now_add=True)
    closed_at = models.DateTimeField(_("结束时间"), null=True, blank=True)
    leader_rewarded = models.BooleanField(_("已发团长奖励"), default=False)

    class Meta:
        verbose_name = _("团")
        verbose_name_plural = _("团")


class GroupBuyParticipant(TenantOwned):
    team = models.ForeignKey(GroupBuyTeam, on_delete=models.CASCADE, related_name="participants")
    member = models.ForeignKey("members.Member", on_delete=models.PROTECT, related_name="+", verbose_name=_("会员"))
    order = models.OneToOneField(Order, on_delete=models.PROTECT, related_name="+", verbose_name=_("订单"))
    is_leader = models.BooleanField(_("团长"), default=False)
    joined_at = models.DateTimeField(_("参团时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("参团")
        verbose_name_plural = _("参团")
        constraints = [models.UniqueConstraint(fields=["team", "member"], name="team_member_once")]


# --- coupons -------------------------------------------------------------------------------------


class CouponTemplate(TenantOwned):
    class Kind(models.TextChoices):
        FIXED = "fixed", _("立减")
        PERCENT = "percent", _("折扣")
        THRESHOLD = "threshold", _("满减")

    name = models.CharField(_("名称"), max_length=120)
    kind = models.CharField(_("类型"), max_length=16, choices=Kind.choices)
    amount_fen = models.PositiveIntegerField(_("减免(分)"), default=0)
    percent_off = models.PositiveSmallIntegerField(_("折扣(%)"), default=0)
    threshold_fen = models.PositiveIntegerField(_("门槛(分)"), default=0)
    valid_from = models.DateTimeField(_("生效时间"))
    valid_until = models.DateTimeField(_("失效时间"))
    per_member_limit = models.PositiveIntegerField(_("每人限领"), default=1)
    total_quantity = models.PositiveIntegerField(_("发放总量"), null=True, blank=True)
    issued = models.PositiveIntegerField(_("已发放"), default=0)
    stackable = models.BooleanField(_("可叠加"), default=False)
    is_share = models.BooleanField(_("分享券(买一赠一)"), default=False)
    new_customers_only = models.BooleanField(_("仅限新客"), default=False)
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                verbose_name=_("限定商品"))

    class Meta:
        verbose_name = _("优惠券")
        verbose_name_plural = _("优惠券")
        constraints = [
            models.CheckConstraint(condition=Q(percent_off__lte=100), name="coupon_percent_le_100"),
            models.CheckConstraint(
                condition=Q(total_quantity__isnull=True) | Q(issued__lte=F("total_quantity")), name="coupon_issued_le"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Coupon(TenantOwned):
    class Status(models.TextChoices):
        UNCLAIMED = "unclaimed", _("待领取")
        AVAILABLE = "available", _("可用")
        USED = "used", _("已使用")
        VOID = "void", _("已作废")

    template = models.ForeignKey(CouponTemplate, on_delete=models.PROTECT, related_name="coupons",
                                 verbose_name=_("券模板"))
    owner = models.ForeignKey("members.Member", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                              verbose_name=_("持有人"))
    giver = models.ForeignKey("members.Member", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                              verbose_name=_("赠送人"))
    source_order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                     verbose_name=_("来源订单"))
    share_token = models.CharField(_("分享码"), max_length=32, null=True, blank=True, unique=True)
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.AVAILABLE)
    used_order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="coupons",
                                   verbose_name=_("使用订单"))
    claimed_at = models.DateTimeField(_("领取时间"), null=True, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("用户券")
        verbose_name_plural = _("用户券")
        constraints = [
            models.UniqueConstraint(fields=["source_order", "template"], name="coupon_one_gift_per_order",
                                    condition=Q(source_order__isnull=False)),
        ]


# --- paid community tiers ------------------------------------------------------------------------


class TierGrant(TenantOwned):
    """One period of a member holding a paid tier. Rows are never deleted: the table is the history."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("有效")
        EXPIRED = "expired", _("已过期")
        REVOKED = "revoked", _("已撤销")

    member = models.ForeignKey("members.Member", on_delete=models.PROTECT, related_name="+", verbose_name=_("会员"))
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+", verbose_name=_("等级"))
    community = models.ForeignKey("communities.Community", on_delete=models.PROTECT, related_name="+",
                                  verbose_name=_("社群"))
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="+", verbose_name=_("订单"))
    order_line = models.OneToOneField(OrderLine, on_delete=models.PROTECT, related_name="+")
    privileges = models.JSONField(_("权益"), default=dict)
    starts_at = models.DateTimeField(_("开始"))
    expires_at = models.DateTimeField(_("到期"), null=True, blank=True)
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    ended_at = models.DateTimeField(_("结束时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("付费等级记录")
        verbose_name_plural = _("付费等级记录")
        indexes = [models.Index(fields=["tenant", "member", "status"], name="tier_member_idx")]



class TierInvitation(TenantOwned):
    """An invitation of a member to a paid tier (e.g. a segment of repeat buyers invited to the partner
    tier). One row per member and tier: inviting again is a no-op. Written by
    ``commerce.services.tiers.do_invite_to_tier``."""

    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("会员"))
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+", verbose_name=_("等级"))
    source = models.CharField(_("来源"), max_length=80, blank=True, help_text=_("例如 人群:复购未入伙"))
    invited_at = models.DateTimeField(_("邀请时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("等级邀请")
        verbose_name_plural = _("等级邀请")
        constraints = [models.UniqueConstraint(fields=["tenant", "member", "product"], name="tier_invitation_unique")]
