"""Tenants (organisations), staff roles, API keys, the audit log and idempotency records.

Every row of tenant data in shequn carries ``tenant``; :class:`TenantOwned` is the abstract base.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Platform(models.TextChoices):
    WECOM = "wecom", _("企业微信")
    TELEGRAM = "telegram", "Telegram"
    MATRIX = "matrix", "Matrix"
    PORTAL = "portal", _("会员页面")
    MANUAL = "manual", _("手工录入")


#: the slug of the tenant ``shequn demo`` seeds (the demo and ``portal_link --demo`` find it by this)
DEMO_SLUG = "demo"


class Tenant(models.Model):
    """An organisation: a merchant, brand, club or merchant alliance member."""

    class Kind(models.TextChoices):
        MERCHANT = "merchant", _("商家")
        BRAND = "brand", _("品牌")
        CLUB = "club", _("俱乐部")
        KNOWLEDGE = "knowledge", _("知识付费")
        OTHER = "other", _("其他")

    slug = models.SlugField(_("标识"), unique=True, max_length=64)
    name = models.CharField(_("名称"), max_length=120)
    kind = models.CharField(_("类型"), max_length=16, choices=Kind.choices, default=Kind.MERCHANT)
    time_zone = models.CharField(_("时区"), max_length=64, default="Asia/Shanghai")
    settings = models.JSONField(_("设置"), default=dict, blank=True)
    is_active = models.BooleanField(_("启用"), default=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("组织")
        verbose_name_plural = _("组织")

    def __str__(self) -> str:
        return self.name


class TenantOwned(models.Model):
    """Abstract base: the row belongs to exactly one tenant."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, verbose_name=_("组织"), related_name="+")

    class Meta:
        abstract = True

    def __str__(self) -> str:
        # the console never shows "MemberTag object (195)": a model without its own label shows
        # its Chinese name and number
        return f"{self._meta.verbose_name} #{self.pk}"


class StaffRole(models.TextChoices):
    OWNER = "owner", _("所有者")
    OPERATOR = "operator", _("运营")
    CUSTOMER_SERVICE = "cs", _("客服")
    CONTENT = "content", _("内容")
    FINANCE = "finance", _("财务")
    READONLY = "readonly", _("只读")


class StaffMembership(TenantOwned):
    """A console user's role in one tenant."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_memberships",
        verbose_name=_("账号"),
    )
    role = models.CharField(_("角色"), max_length=16, choices=StaffRole.choices)
    display_name = models.CharField(_("显示名"), max_length=64, blank=True)
    is_active = models.BooleanField(_("启用"), default=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("员工")
        verbose_name_plural = _("员工")
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="staff_unique_per_tenant")]

    def __str__(self) -> str:
        return f"{self.display_name or self.user} ({self.get_role_display()})"


class ApiKey(TenantOwned):
    """An integration key. Only a SHA-256 hash is stored; the secret is shown once at creation."""

    name = models.CharField(_("名称"), max_length=80)
    prefix = models.CharField(_("前缀"), max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    scopes = models.JSONField(_("权限范围"), default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("最近使用"), null=True, blank=True)
    expires_at = models.DateTimeField(_("过期时间"), null=True, blank=True,
                                      help_text=_("过期后密钥不再可用; 留空表示不过期"))
    revoked_at = models.DateTimeField(_("吊销时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("API 密钥")
        verbose_name_plural = _("API 密钥")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class AuditLog(TenantOwned):
    """Who (staff, system, rule, API key) did what to which object, when and why. Append-only."""

    class ActorType(models.TextChoices):
        STAFF = "staff", _("员工")
        SYSTEM = "system", _("系统")
        RULE = "rule", _("规则")
        API_KEY = "api_key", _("API 密钥")
        MEMBER = "member", _("会员")

    actor_type = models.CharField(_("操作者类型"), max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(_("操作者"), max_length=64, blank=True)
    actor_label = models.CharField(_("操作者名称"), max_length=120, blank=True)
    action = models.CharField(_("动作"), max_length=64, db_index=True)
    object_type = models.CharField(_("对象类型"), max_length=64)
    object_id = models.CharField(_("对象"), max_length=64)
    reason = models.TextField(_("原因"), blank=True)
    data = models.JSONField(_("详情"), default=dict, blank=True)
    created_at = models.DateTimeField(_("时间"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("审计日志")
        verbose_name_plural = _("审计日志")
        indexes = [models.Index(fields=["tenant", "object_type", "object_id"], name="audit_object_idx")]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}#{self.object_id}"


class IdempotencyRecord(TenantOwned):
    """The stored answer to a POST carrying an ``Idempotency-Key`` header."""

    key = models.CharField(max_length=128)
    scope = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    response = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "scope", "key"], name="idempotency_unique_key")
        ]


class DeliveryFailure(TenantOwned):
    """A stream subscriber that raised on some items (:mod:`shequn.core.streams`).

    One row per failing (stream, subscriber, items): the subscriber's transaction was rolled back
    alone, the other subscribers went on. ``retry_stream_deliveries`` re-runs only this subscriber for
    only these items at ``next_attempt_at`` (exponential backoff); after ``MAX_ATTEMPTS`` failures the
    row is dead-lettered: no more automatic retries, shown to staff with the reason in the console
    until someone retries it or marks it resolved."""

    class State(models.TextChoices):
        PENDING = "pending", _("待重试")
        DEAD = "dead", _("死信")
        RESOLVED = "resolved", _("已解决")

    stream = models.CharField(_("事件流"), max_length=32)
    subscriber = models.CharField(_("订阅者"), max_length=64)
    refs = models.JSONField(_("事件编号"), default=list)
    error = models.TextField(_("原因"))
    attempts = models.PositiveIntegerField(_("尝试次数"), default=1)
    state = models.CharField(_("状态"), max_length=16, choices=State.choices, default=State.PENDING)
    next_attempt_at = models.DateTimeField(_("下次重试"), null=True, blank=True)
    created_at = models.DateTimeField(_("首次失败"), auto_now_add=True)
    updated_at = models.DateTimeField(_("最近尝试"), auto_now=True)
    resolved_at = models.DateTimeField(_("解决时间"), null=True, blank=True)
    resolved_by = models.CharField(_("解决方式"), max_length=120, blank=True)

    class Meta:
        verbose_name = _("事件投递失败")
        verbose_name_plural = _("事件投递失败")
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="delivery_due_idx"),
            models.Index(fields=["tenant", "stream", "state"], name="delivery_open_idx"),
        ]

    def __str__(self) -> str:
        # what an operator reads in titles and confirmations: no stream or subscriber code names
        return f"{self._meta.verbose_name} #{self.pk}"


class ThrottleHit(models.Model):
    """One counted attempt (a failed sign-in, a code request) for the database throttle backend
    (:mod:`shequn.core.throttle`; Redis counts instead when configured). Not tenant data: sign-in
    happens before a tenant is known. ``key`` is an HMAC of the account or address, never either in
    clear. Rows older than a day are deleted as new ones arrive."""

    scope = models.CharField(max_length=32)
    key = models.CharField(max_length=64)
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["scope", "key", "at"], name="throttle_key_idx")]


class StaffSecurity(models.Model):
    """Per console login: when "sign out everywhere" was last used. A staff session that began
    before ``sessions_valid_after`` is ended at its next request."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+",
                                verbose_name=_("账号"))
    sessions_valid_after = models.DateTimeField(_("会话失效时间"), null=True, blank=True)


# -- outgoing webhooks (:mod:`shequn.core.webhooks`) -----------------------------------------------


class WebhookEventType(models.TextChoices):
    ORDER_PAID = "order.paid", _("订单已支付")
    ORDER_REFUNDED = "order.refunded", _("订单已退款")
    MEMBER_JOINED = "member.joined", _("成员入群")
    MEMBER_LEFT = "member.left", _("成员退群")
    COMMISSION_AVAILABLE = "commission.available", _("佣金可提现")
    WITHDRAWAL_PAID = "withdrawal.paid", _("提现已到账")
    VIOLATION = "violation.created", _("违规记录")
    HEALTH_ALERT = "health.alert", _("社群健康预警")


class WebhookEndpoint(TenantOwned):
    """A URL of another system that receives the tenant's events, signed with the endpoint's secret
    (encrypted at rest; shown once when created or rotated). Disabled by the platform after a
    delivery exhausted its retries with no success since (``disabled_reason`` says why)."""

    url = models.URLField(_("接收地址"), max_length=500)
    description = models.CharField(_("说明"), max_length=120, blank=True)
    event_types = models.JSONField(_("订阅的事件"), default=list)
    secret_encrypted = models.TextField(_("签名密钥(加密)"), editable=False)
    secret_hint = models.CharField(_("签名密钥"), max_length=16, editable=False, blank=True)
    is_active = models.BooleanField(_("启用"), default=True)
    disabled_at = models.DateTimeField(_("停用时间"), null=True, blank=True)
    disabled_reason = models.CharField(_("停用原因"), max_length=255, blank=True)
    consecutive_failures = models.PositiveIntegerField(_("连续失败次数"), default=0)
    last_success_at = models.DateTimeField(_("最近成功"), null=True, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    class Meta:
        verbose_name = _("Webhook 端点")
        verbose_name_plural = _("Webhook 端点")
        indexes = [models.Index(fields=["tenant", "is_active"], name="webhook_endpoint_active_idx")]

    def __str__(self) -> str:
        return self.description or self.url


class WebhookEvent(TenantOwned):
    """One business fact to announce (the body every subscribed endpoint receives). ``key`` makes the
    emission idempotent: a replayed order event or activity batch announces nothing twice."""

    type = models.CharField(_("事件类型"), max_length=32, choices=WebhookEventType.choices)
    key = models.CharField(_("来源"), max_length=120)
    data = models.JSONField(_("内容"), default=dict)
    created_at = models.DateTimeField(_("发生时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("Webhook 事件")
        verbose_name_plural = _("Webhook 事件")
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="webhook_event_unique_key")]

    def __str__(self) -> str:
        return f"{self.get_type_display()} #{self.pk}"


class WebhookDelivery(TenantOwned):
    """One event sent to one endpoint (a replay is a new row pointing at the original): the delivery
    log. Pending rows are sent by ``core.tasks.deliver_webhooks`` outside any transaction and retried
    with exponential backoff; after ``webhooks.MAX_ATTEMPTS`` failed attempts the row is given up."""

    class State(models.TextChoices):
        PENDING = "pending", _("待发送")
        SUCCEEDED = "succeeded", _("已送达")
        FAILED = "failed", _("已放弃")

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries",
                                 verbose_name=_("端点"))
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries",
                              verbose_name=_("事件"))
    replay_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                  verbose_name=_("重放自"))
    state = models.CharField(_("状态"), max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(_("尝试次数"), default=0)
    next_attempt_at = models.DateTimeField(_("下次发送"), null=True, blank=True)
    last_status_code = models.PositiveIntegerField(_("响应状态码"), null=True, blank=True)
    last_error = models.CharField(_("失败原因"), max_length=500, blank=True)
    response_excerpt = models.CharField(_("响应内容(节选)"), max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(_("耗时(毫秒)"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("送达时间"), null=True, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    updated_at = models.DateTimeField(_("最近尝试"), auto_now=True)

    class Meta:
        verbose_name = _("Webhook 投递记录")
        verbose_name_plural = _("Webhook 投递记录")
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="webhook_delivery_due_idx"),
            models.Index(fields=["tenant", "endpoint", "-created_at"], name="webhook_delivery_log_idx"),
        ]
        constraints = [models.UniqueConstraint(fields=["endpoint", "event"], condition=models.Q(replay_of=None),
                                               name="webhook_delivery_once")]

    def __str__(self) -> str:
        return f"{self.event.get_type_display()} → {self.endpoint} #{self.pk}"
