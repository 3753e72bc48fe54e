"""The activity stream: one append-only table for everything members do, on every platform."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from shequn.core.models import Platform, TenantOwned


class EventKind(models.TextChoices):
    MESSAGE = "message", _("消息")
    REPLY = "reply", _("回复")
    REACTION = "reaction", _("表情回应")
    EDIT = "edit", _("编辑")
    DELETE = "delete", _("撤回/删除")
    JOIN = "join", _("入群")
    LEAVE = "leave", _("退群")
    CHECK_IN = "check_in", _("签到")
    PURCHASE = "purchase", _("购买")
    INVITE = "invite", _("邀请")
    LIVE_VIEW = "live_view", _("观看直播")
    CONTENT_VIEW = "content_view", _("浏览内容")
    OTHER = "other", _("其他")


class ActivityEvent(TenantOwned):
    """Append-only. ``(tenant, platform, platform_event_id)`` is unique, so ingest de-duplicates.

    On PostgreSQL the table is partitioned by month on ``occurred_at`` (migration 0004): its primary key
    is ``(id, occurred_at)`` there and the uniqueness of the event key is kept by :class:`EventKey`
    (a unique index across partitions would have to include ``occurred_at``). Rows pointing at an event
    (moderation) do so without a database constraint."""

    member = models.ForeignKey("members.Member", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+", verbose_name=_("会员"), db_index=False)
    community = models.ForeignKey("communities.Community", null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+", verbose_name=_("社群"), db_index=False)
    group = models.ForeignKey("communities.ChatGroup", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", verbose_name=_("群"), db_index=False)
    platform = models.CharField(_("平台"), max_length=16, choices=Platform.choices)
    platform_event_id = models.CharField(_("平台事件 ID"), max_length=191)
    kind = models.CharField(_("类型"), max_length=16, choices=EventKind.choices)
    occurred_at = models.DateTimeField(_("发生时间"))
    received_at = models.DateTimeField(_("接收时间"))
    payload = models.JSONField(_("内容"), default=dict, blank=True)

    class Meta:
        verbose_name = _("活动事件")
        verbose_name_plural = _("活动事件")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "platform", "platform_event_id"], name="activity_unique_event")
        ]
        indexes = [
            models.Index(fields=["tenant", "member", "occurred_at"], name="activity_member_time_idx"),
            models.Index(fields=["tenant", "community", "occurred_at"], name="activity_comm_time_idx"),
        ]



class EventKey(models.Model):
    """The de-duplication key of every stored event, one row per ``(tenant, platform, platform_event_id)``:
    the uniqueness the partitioned event table cannot enforce across months (PostgreSQL; ingest inserts
    the key and the event in one statement). Unused on SQLite, where the event table's own unique
    constraint does the job. Archiving a month deletes its keys with it."""

    tenant = models.ForeignKey("core.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False)
    platform = models.CharField(max_length=16)
    platform_event_id = models.CharField(max_length=191)
    occurred_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "platform", "platform_event_id"], name="activity_event_key")
        ]
        indexes = [models.Index(fields=["occurred_at"], name="activity_event_key_time_idx")]
