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
        return f"{self.stream}/{self.subscriber} #{self.pk}"
