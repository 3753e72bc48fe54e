"""Platform connections, the outbound action outbox and human tasks for actions a platform lacks."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from shequn.core.models import Platform, TenantOwned


class ActionKind(models.TextChoices):
    SEND = "send", _("发送消息")
    WARN = "warn", _("警告")
    DELETE = "delete", _("删除/撤回消息")
    MUTE = "mute", _("禁言")
    UNMUTE = "unmute", _("解除禁言")
    KICK = "kick", _("移出群")
    BAN = "ban", _("封禁")
    UNBAN = "unban", _("解除封禁")
    ANNOUNCE = "announce", _("群公告/置顶")
    APPROVE_JOIN = "approve_join", _("通过入群申请")
    DECLINE_JOIN = "decline_join", _("拒绝入群申请")
    #: gate a public Matrix room of an approval/paid community: its join rule becomes ``knock``
    JOIN_RULE = "join_rule", _("入群改为需申请")
    #: revoke a Telegram invite link that lets people in without asking (made while the community was free)
    REVOKE_INVITE = "revoke_invite", _("作废邀请链接")


class OutboxAction(TenantOwned):
    """One outbound platform action, written in the transaction of the decision that caused it and
    delivered by the worker (retries, backoff, per-platform rate limits, dead letter)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("待发送")
        SENDING = "sending", _("发送中")
        DONE = "done", _("已完成")
        FAILED = "failed", _("失败")
        DEAD = "dead", _("死信")
        DELEGATED = "delegated", _("转人工")
        CANCELLED = "cancelled", _("已取消")

    kind = models.CharField(_("动作"), max_length=16, choices=ActionKind.choices)
    platform = models.CharField(_("平台"), max_length=16, choices=Platform.choices)
    connection = models.ForeignKey("Connection", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", verbose_name=_("连接"))
    group = models.ForeignKey("communities.ChatGroup", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", verbose_name=_("群"))
    target_member = models.ForeignKey("members.Member", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+", verbose_name=_("对象会员"))
    target_external_id = models.CharField(_("对象平台账号"), max_length=191, blank=True)
    message_external_id = models.CharField(_("消息 ID"), max_length=191, blank=True)
    payload = models.JSONField(_("内容"), default=dict, blank=True)
    idempotency_key = models.CharField(max_length=191)
    source = models.CharField(_("来源"), max_length=120, blank=True)
    reason = models.CharField(_("原因"), max_length=500, blank=True)
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("尝试次数"), default=0)
    next_attempt_at = models.DateTimeField(_("下次尝试"), null=True, blank=True)
    last_error = models.TextField(_("最近错误"), blank=True)
    lease_token = models.CharField(max_length=32, blank=True, editable=False)
    #: when the platform call of the current claim began — written (and committed) just before the
    #: call, for the kinds the platform cannot de-duplicate (``Profile.resend_safe``); cleared by each
    #: claim. A claimed row found without an outcome after a crash is re-sent when it is empty, and
    #: handed to a person when it is set (the platform may already have acted)
    attempt_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    result = models.JSONField(_("结果"), default=dict, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    done_at = models.DateTimeField(_("完成时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("待发动作")
        verbose_name_plural = _("待发动作 (Outbox)")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "idempotency_key"], name="outbox_unique_key"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="outbox_due_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"


class HumanTask(TenantOwned):
    """An action the platform cannot perform (e.g. kick in a WeCom customer group), handed to a person
    (the group owner or customer service) with a deadline. Never silently dropped."""

    class Status(models.TextChoices):
        OPEN = "open", _("待处理")
        DONE = "done", _("已完成")
        CANCELLED = "cancelled", _("已取消")

    action = models.OneToOneField(OutboxAction, on_delete=models.CASCADE, related_name="human_task",
                                  verbose_name=_("动作"))
    assignee_role = models.CharField(_("负责人角色"), max_length=16, default="owner")
    title = models.CharField(_("标题"), max_length=200)
    instructions = models.TextField(_("说明"), blank=True)
    due_at = models.DateTimeField(_("截止时间"))
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.OPEN)
    done_by = models.CharField(_("处理人"), max_length=120, blank=True)
    done_at = models.DateTimeField(_("处理时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("人工任务")
        verbose_name_plural = _("人工任务")

    def __str__(self) -> str:
        return self.title


class Connection(TenantOwned):
    """One bot / app account on one platform for one tenant.

    Secrets (bot token, access token, corp secret, AES key, …) are stored Fernet-encrypted in
    ``secrets_encrypted`` (see :mod:`shequn.connectors.secrets`) and never shown again in full:
    ``secret_hints`` keeps the last 4 characters of each for the console. ``config`` holds what is
    not secret (homeserver URL, bot user id, corp id, API base URL). ``state`` holds the resume point
    of inbound sync (Matrix ``next_batch``, Telegram update offset). ``hook_key`` is the unguessable
    part of the inbound webhook URL (``/hooks/<platform>/<hook_key>/``); it only routes, the
    platform's own signature/secret still authenticates every request."""

    platform = models.CharField(_("平台"), max_length=16, choices=Platform.choices)
    name = models.CharField(_("名称"), max_length=80)
    is_active = models.BooleanField(_("启用"), default=True)
    config = models.JSONField(_("配置"), default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True, editable=False)
    secret_hints = models.JSONField(_("密钥 (仅显示末四位)"), default=dict, blank=True, editable=False)
    hook_key = models.CharField(_("回调地址标识"), max_length=64, unique=True, editable=False)
    state = models.JSONField(_("同步状态"), default=dict, blank=True, editable=False)
    default_community = models.ForeignKey(
        "communities.Community", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("新群默认归属社群"),
        help_text=_("发现新群时自动映射到这个社群; 留空则等待手工映射"),
    )
    last_event_at = models.DateTimeField(_("最近事件 (平台时间)"), null=True, blank=True)
    last_received_at = models.DateTimeField(_("最近接收"), null=True, blank=True)
    events_received = models.PositiveBigIntegerField(_("累计事件"), default=0)
    error_count = models.PositiveIntegerField(_("错误次数"), default=0)
    last_error = models.CharField(_("最近错误"), max_length=500, blank=True)
    last_error_at = models.DateTimeField(_("最近错误时间"), null=True, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("平台连接")
        verbose_name_plural = _("平台连接")
        constraints = [models.UniqueConstraint(fields=["tenant", "platform", "name"], name="connection_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} [{self.platform}]"


class Room(TenantOwned):
    """A room / chat / customer group a connection has seen. Mapping it to a community creates the
    :class:`communities.ChatGroup` the activity stream and the outbox use. Per-room secrets (a WeCom
    group robot's webhook key) are encrypted like the connection's."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="rooms",
                                   verbose_name=_("连接"))
    external_id = models.CharField(_("平台群 ID"), max_length=191)
    name = models.CharField(_("群名"), max_length=200, blank=True)
    member_count = models.PositiveIntegerField(_("人数"), null=True, blank=True)
    group = models.ForeignKey("communities.ChatGroup", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", verbose_name=_("已映射的群"))
    bot_joined = models.BooleanField(_("机器人在群内"), default=True)
    secrets_encrypted = models.TextField(blank=True, editable=False)
    secret_hints = models.JSONField(default=dict, blank=True, editable=False)
    #: who the platform says is staff here, cached so inbound events can be marked ``sender_is_admin``
    #: (moderation exempts staff). Matrix: the last seen ``m.room.power_levels`` content (+ the v12
    #: creators), admin = power >= 50; Telegram: {"admins": [user ids]} from ``chat_member`` updates;
    #: WeCom: {"owner": userid, "admins": [userids]} from ``groupchat/get``.
    staff_state = models.JSONField(_("平台管理员"), default=dict, blank=True, editable=False)
    #: Matrix: ``m.room.encryption`` is in the room's state — the bot (no E2EE) reads nothing, so the
    #: room cannot be mapped (see docs/subsystems/connectors.md, "Encrypted rooms")
    encrypted = models.BooleanField(_("端到端加密"), default=False)
    #: parsed events of the room while it is not mapped, kept for HELD_WINDOW (at most HELD_MAX) and
    #: ingested when the room is mapped
    held_events = models.JSONField(default=list, blank=True, editable=False)
    discovered_at = models.DateTimeField(_("发现时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("发现的群")
        verbose_name_plural = _("发现的群")
        constraints = [models.UniqueConstraint(fields=["connection", "external_id"], name="room_unique_external")]

    def __str__(self) -> str:
        return self.name or self.external_id


class InboundEvent(TenantOwned):
    """A raw platform callback, stored after its signature was verified and before it is processed
    (WeCom must be answered within 5 s; processing runs in a task enqueued in the same transaction).
    ``(connection, dedupe_key)`` is unique: a platform retry of the same callback is stored once."""

    class Status(models.TextChoices):
        PENDING = "pending", _("待处理")
        DONE = "done", _("已处理")
        FAILED = "failed", _("处理失败")

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="+",
                                   verbose_name=_("连接"))
    platform = models.CharField(_("平台"), max_length=16, choices=Platform.choices)
    dedupe_key = models.CharField(_("去重键"), max_length=191)
    event_type = models.CharField(_("事件类型"), max_length=80, blank=True)
    body = models.JSONField(_("内容"), default=dict)
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.CharField(_("错误"), max_length=500, blank=True)
    received_at = models.DateTimeField(_("接收时间"), auto_now_add=True)
    processed_at = models.DateTimeField(_("处理时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("原始回调")
        verbose_name_plural = _("原始回调")
        constraints = [models.UniqueConstraint(fields=["connection", "dedupe_key"], name="inbound_unique_key")]
        indexes = [models.Index(fields=["status", "received_at"], name="inbound_status_idx")]


class RateBucket(models.Model):
    """A token bucket shared by every delivery worker (locked with SELECT … FOR UPDATE while a worker
    claims actions). ``key`` names the scope: ``conn:<id>`` (the bot account) or ``group:<id>``
    plus the limit's name. ``blocked_until`` is set when the platform answered 429 retry_after."""

    key = models.CharField(max_length=120, unique=True)
    tokens = models.FloatField()
    updated_at = models.DateTimeField()
    blocked_until = models.DateTimeField(null=True, blank=True)


class QrConfig(TenantOwned):
    """A WeCom 加入群聊 (join way) or 联系我 (contact way) QR configuration. ``state`` (≤ 30 chars) comes
    back on joins made through it, so referrals can attribute them."""

    class Kind(models.TextChoices):
        JOIN_WAY = "join_way", _("加入群聊")
        CONTACT_WAY = "contact_way", _("联系我")

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="+",
                                   verbose_name=_("连接"))
    kind = models.CharField(_("类型"), max_length=16, choices=Kind.choices)
    config_id = models.CharField(_("配置 ID"), max_length=64)
    state = models.CharField(_("渠道参数 state"), max_length=30, blank=True)
    remark = models.CharField(_("备注"), max_length=30, blank=True)
    qr_code = models.URLField(_("二维码地址"), max_length=500, blank=True)
    chat_ids = models.JSONField(_("群 ID 列表"), default=list, blank=True)
    users = models.JSONField(_("成员 userid 列表"), default=list, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("群活码/联系我")
        verbose_name_plural = _("群活码/联系我")
        constraints = [models.UniqueConstraint(fields=["connection", "config_id"], name="qrconfig_unique")]

    def __str__(self) -> str:
        return self.remark or self.config_id
