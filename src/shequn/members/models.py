"""Members: one person across platforms, with identities, tags, lifecycle and relationship level."""

from __future__ import annotations

from django.db import models
from django.db.models import Value
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

from shequn.core.models import Platform, TenantOwned


class LifecycleStage(models.TextChoices):
    NEW = "new", _("新成员")
    ACTIVE = "active", _("活跃")
    LURKING = "lurking", _("潜水")
    DORMANT = "dormant", _("沉睡")
    CHURNED = "churned", _("流失")


class RelationshipLevel(models.IntegerChoices):
    CUSTOMER = 0, _("普通客户")
    FAN = 1, _("粉丝")
    SUPER_FAN = 2, _("铁粉")
    PARTNER = 3, _("合伙人")
    SHAREHOLDER = 4, _("股东")


class Member(TenantOwned):
    display_name = models.CharField(_("昵称"), max_length=120)
    phone = models.CharField(_("手机号"), max_length=20, blank=True, db_index=True)
    email = models.EmailField(_("邮箱"), blank=True)
    source_channel = models.CharField(_("来源渠道"), max_length=64, blank=True)
    first_seen_at = models.DateTimeField(_("首次出现"))
    last_active_at = models.DateTimeField(_("最近活跃"), null=True, blank=True)
    lifecycle_stage = models.CharField(
        _("生命周期"), max_length=16, choices=LifecycleStage.choices, default=LifecycleStage.NEW
    )
    relationship_level = models.PositiveSmallIntegerField(
        _("关系等级"), choices=RelationshipLevel.choices, default=RelationshipLevel.CUSTOMER
    )
    consent_marketing = models.BooleanField(_("同意营销消息"), default=False)
    consent_data = models.BooleanField(_("同意数据处理"), default=True)
    note = models.TextField(_("备注"), blank=True)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("已合并到")
    )
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    erased_at = models.DateTimeField(_("个人信息删除时间"), null=True, blank=True,
                                     help_text=_("会员行使删除权后, 只保留匿名编号; 订单与账本金额不变"))

    class Meta:
        verbose_name = _("会员")
        verbose_name_plural = _("会员")
        indexes = [
            models.Index(fields=["tenant", "lifecycle_stage"], name="member_lifecycle_idx"),
            models.Index(fields=["tenant", "last_active_at"], name="member_last_active_idx"),
        ]

    def __str__(self) -> str:
        return self.display_name


class Identity(TenantOwned):
    """A member's account on one platform. ``(tenant, platform, external_id)`` is unique."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="identities",
                               verbose_name=_("会员"))
    platform = models.CharField(_("平台"), max_length=16, choices=Platform.choices)
    external_id = models.CharField(_("平台账号"), max_length=191)
    display_name = models.CharField(_("平台昵称"), max_length=120, blank=True)
    verified = models.BooleanField(_("已验证"), default=False)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("平台身份")
        verbose_name_plural = _("平台身份")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "platform", "external_id"], name="identity_unique")
        ]

    def __str__(self) -> str:
        return f"{self.platform}:{self.external_id}"


class Tag(TenantOwned):
    class Scope(models.TextChoices):
        ORGANISATION = "org", _("组织")
        COMMUNITY = "community", _("社群")
        PERSONAL = "personal", _("个人")

    name = models.CharField(_("标签"), max_length=64)
    scope = models.CharField(_("范围"), max_length=16, choices=Scope.choices, default=Scope.ORGANISATION)
    community = models.ForeignKey(
        "communities.Community", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        verbose_name=_("社群"),
    )
    owner = models.ForeignKey(
        "core.StaffMembership", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        verbose_name=_("所有者"),
    )
    color = models.CharField(_("颜色"), max_length=16, blank=True)

    class Meta:
        verbose_name = _("标签")
        verbose_name_plural = _("标签")
        constraints = [
            models.UniqueConstraint(
                "tenant", "scope", Coalesce("community", Value(0)), Coalesce("owner", Value(0)), "name",
                name="tag_unique",
            )
        ]

    def __str__(self) -> str:
        return self.name


class MemberTag(TenantOwned):
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="member_tags")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="member_tags", verbose_name=_("标签"))
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("会员标签")
        verbose_name_plural = _("会员标签")
        constraints = [models.UniqueConstraint(fields=["member", "tag"], name="member_tag_unique")]

    def __str__(self) -> str:
        return f"{self.tag.name}"
