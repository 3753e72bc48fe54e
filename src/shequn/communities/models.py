"""Communities (社群), their chat groups on each platform, memberships and role assignments."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from shequn.core.models import Platform, TenantOwned


class Community(TenantOwned):
    class Purpose(models.TextChoices):
        SHARING = "sharing", _("分享型")
        SALES = "sales", _("销售型")
        ENABLING = "enabling", _("赋能型")

    class Category(models.TextChoices):
        PRODUCT = "product", _("产品型")
        KNOWLEDGE = "knowledge", _("知识型")
        RELATIONSHIP = "relationship", _("关系型")
        IDOL = "idol", _("偶像型")
        INTEREST = "interest", _("兴趣型")

    class EntryThreshold(models.TextChoices):
        FREE = "free", _("免费")
        APPROVAL = "approval", _("审核")
        PAID = "paid", _("付费")

    class Stage(models.TextChoices):
        PLANNING = "planning", _("筹备")
        SEEDING = "seeding", _("种子期")
        GROWING = "growing", _("成长期")
        MATURE = "mature", _("成熟期")
        DECLINING = "declining", _("衰退期")
        ARCHIVED = "archived", _("已归档")

    name = models.CharField(_("名称"), max_length=120)
    theme = models.CharField(_("主题"), max_length=200, blank=True)
    audience = models.CharField(_("定位: 人群"), max_length=200, blank=True)
    needs = models.CharField(_("定位: 需求"), max_length=200, blank=True)
    purpose = models.CharField(_("类型"), max_length=16, choices=Purpose.choices, default=Purpose.SHARING)
    category = models.CharField(_("类别"), max_length=16, choices=Category.choices, default=Category.INTEREST)
    rules = models.TextField(_("群规"), blank=True)
    announcement = models.TextField(_("群公告"), blank=True)
    entry_threshold = models.CharField(
        _("入群门槛"), max_length=16, choices=EntryThreshold.choices, default=EntryThreshold.FREE
    )
    stage = models.CharField(_("阶段"), max_length=16, choices=Stage.choices, default=Stage.SEEDING)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("社群")
        verbose_name_plural = _("社群")
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="community_unique_name")]

    def __str__(self) -> str:
        return self.name


class ChatGroup(TenantOwned):
    """One room on one platform; a community spans several."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="groups",
                                  verbose_name=_("社群"))
    platform = models.CharField(_("平台"), max_length=16, choices=Platform.choices)
    external_id = models.CharField(_("平台群 ID"), max_length=191)
    name = models.CharField(_("群名"), max_length=120)
    capacity = models.PositiveIntegerField(_("容量"), default=500)
    is_active = models.BooleanField(_("启用"), default=True)
    #: a partner's own group (the tier privilege ``may_create_groups``): members who join through the
    #: owner's invite links land here (see ``services.do_open_partner_group``)
    owner = models.ForeignKey("members.Member", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="owned_groups", verbose_name=_("群主 (合伙人)"))
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("群")
        verbose_name_plural = _("群")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "platform", "external_id"], name="group_unique_external")
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.platform}]"


class JoinSource(models.TextChoices):
    INVITE_LINK = "invite_link", _("邀请链接")
    QR = "qr", _("二维码")
    LIVE = "live", _("直播")
    IMPORT = "import", _("导入")
    MANUAL = "manual", _("手工")
    PLATFORM = "platform", _("平台事件")
    PURCHASE = "purchase", _("付费入群")


class Membership(TenantOwned):
    """One stay of a member in a community (and optionally one group). A re-join is a new row, so the
    table is the full history; the current state is the rows with ``left_at`` null."""

    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="memberships",
                               verbose_name=_("会员"))
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="memberships",
                                  verbose_name=_("社群"))
    group = models.ForeignKey(ChatGroup, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="memberships", verbose_name=_("群"))
    joined_at = models.DateTimeField(_("加入时间"))
    left_at = models.DateTimeField(_("离开时间"), null=True, blank=True)
    join_source = models.CharField(_("加入方式"), max_length=16, choices=JoinSource.choices,
                                   default=JoinSource.MANUAL)
    inviter = models.ForeignKey("members.Member", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+", verbose_name=_("邀请人"))
    exit_reason = models.CharField(_("退出原因"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("成员关系")
        verbose_name_plural = _("成员关系")
        indexes = [
            models.Index(fields=["tenant", "community", "joined_at"], name="membership_comm_idx"),
            models.Index(fields=["tenant", "member"], name="membership_member_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["member", "community", "group"],
                condition=models.Q(left_at__isnull=True, group__isnull=False), name="membership_one_open_group",
            ),
            models.UniqueConstraint(
                fields=["member", "community"],
                condition=models.Q(left_at__isnull=True, group__isnull=True), name="membership_one_open",
            ),
        ]


class CommunityRole(models.TextChoices):
    OWNER = "owner", _("群主")
    ADVOCATE = "advocate", _("拥护者")
    CUSTOMER_SERVICE = "cs", _("客服")
    CONTENT_CREATOR = "content", _("内容输出者")
    GUEST_EXPERT = "guest", _("嘉宾")


class RoleAssignment(TenantOwned):
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="roles",
                                  verbose_name=_("社群"))
    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="roles",
                               verbose_name=_("会员"))
    role = models.CharField(_("角色"), max_length=16, choices=CommunityRole.choices)
    since = models.DateTimeField(_("起始"))
    until = models.DateTimeField(_("结束"), null=True, blank=True)
    assigned_by = models.CharField(_("指派人"), max_length=120, blank=True)
    reward_note = models.CharField(_("奖励说明"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("角色")
        verbose_name_plural = _("角色")
        indexes = [models.Index(fields=["tenant", "community", "role"], name="role_comm_idx")]


class JoinRequest(TenantOwned):
    """A way in that needs a decision: a member asks to enter a community through the portal, or a
    platform asks on their behalf (a Telegram ``chat_join_request``, a Matrix knock). The community's
    entry threshold decides (``services.do_request_join``): free → approved at once, paid → approved
    when the member holds a paid tier of the community, approval → pending in the console's queue
    (入群申请) until staff decide. A platform request's decision goes back to the platform through
    the outbox (``approve_join`` / ``decline_join``). Written only by ``communities.services``."""

    class Status(models.TextChoices):
        PENDING = "pending", _("待审核")
        APPROVED = "approved", _("已通过")
        REJECTED = "rejected", _("已拒绝")

    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+",
                               verbose_name=_("会员"))
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="join_requests",
                                  verbose_name=_("社群"))
    #: the platform group asked for (a platform request); null for a portal request
    group = models.ForeignKey(ChatGroup, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                              verbose_name=_("群"))
    via = models.CharField(_("来源"), max_length=16, choices=Platform.choices, default=Platform.PORTAL)
    invite_code = models.CharField(_("邀请码"), max_length=32, blank=True)
    message = models.CharField(_("申请说明"), max_length=200, blank=True)
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.PENDING)
    decided_by = models.CharField(_("审核人"), max_length=120, blank=True)
    decision_note = models.CharField(_("审核说明"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("申请时间"), auto_now_add=True)
    decided_at = models.DateTimeField(_("审核时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("入群申请")
        verbose_name_plural = _("入群申请")
        indexes = [models.Index(fields=["tenant", "status", "created_at"], name="joinrequest_queue_idx")]
        constraints = [
            models.UniqueConstraint(fields=["member", "community"],
                                    condition=models.Q(status="pending", group__isnull=True),
                                    name="joinrequest_one_pending_portal"),
            models.UniqueConstraint(fields=["member", "group"],
                                    condition=models.Q(status="pending", group__isnull=False),
                                    name="joinrequest_one_pending_group"),
        ]

    def __str__(self) -> str:
        # names, not ids: this is what the console shows in titles, breadcrumbs and confirmations
        return f"{self.member} → {self.community}"
