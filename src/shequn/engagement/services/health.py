"""Health alerts: dead groups and previously active members going quiet (one alert per key)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.activity.models import ActivityEvent
from shequn.communities.models import Community
from shequn.core import webhooks
from shequn.core.models import WebhookEventType

from ..models import HealthAlert, MemberScore
from ..selectors import engagement_config, tenant_time_zone
from ..streaks import local_day


def do_health_check(tenant_id: int, *, now: dt.datetime | None = None) -> int:
    """Dead groups (fewer than ``dead_group_min_messages`` member messages in ``dead_group_days``) and
    previously active members (level ≥ ``quiet_member_min_level``) silent for ``quiet_member_days``.
    One alert per key (community + local date / member + last active day)."""
    now = now or timezone.now()
    h = engagement_config(tenant_id)["health"]
    tz = tenant_time_zone(tenant_id)
    today = local_day(now, tz)
    made = 0
    since = now - dt.timedelta(days=int(h["dead_group_days"]))
    for c in Community.objects.filter(tenant_id=tenant_id).exclude(stage=Community.Stage.ARCHIVED):
        if c.created_at > since:
            continue
        n = ActivityEvent.objects.filter(tenant_id=tenant_id, community_id=c.pk, occurred_at__gte=since,
                                         kind__in=["message", "reply"]).count()
        if n < int(h["dead_group_min_messages"]):
            made += _alert(tenant_id, HealthAlert.Kind.DEAD_GROUP, f"dead:{c.pk}:{today.isoformat()}",
                           community_id=c.pk,
                           message=_("社群「%(c)s」近 %(d)d 天只有 %(n)d 条成员消息") % {
                               "c": c.name, "d": int(h["dead_group_days"]), "n": n},
                           data={"messages": n})
    quiet_day = today - dt.timedelta(days=int(h["quiet_member_days"]))
    for s in MemberScore.objects.filter(tenant_id=tenant_id, level__gte=int(h["quiet_member_min_level"]),
                                        last_active_day__lt=quiet_day).select_related("member"):
        made += _alert(tenant_id, HealthAlert.Kind.GOING_QUIET, f"quiet:{s.member_id}:{s.last_active_day}",
                       member_id=s.member_id,
                       message=_("活跃成员「%(m)s」(等级 %(l)d) 自 %(d)s 起没有动静") % {
                           "m": s.member.display_name, "l": s.level, "d": s.last_active_day},
                       data={"level": s.level})
    return made


def _alert(tenant_id: int, kind: str, key: str, *, message: str, data: dict[str, Any],
           community_id: int | None = None, member_id: int | None = None) -> int:
    if HealthAlert.objects.filter(tenant_id=tenant_id, key=key).exists():
        return 0
    try:
        with transaction.atomic():
            alert = HealthAlert.objects.create(tenant_id=tenant_id, kind=kind, key=key, community_id=community_id,
                                               member_id=member_id, message=message[:300], data=data)
            webhooks.emit(tenant_id, WebhookEventType.HEALTH_ALERT, f"health:{alert.pk}", {
                "alert_id": alert.pk, "kind": kind, "community_id": community_id, "member_id": member_id,
                "message": alert.message, "data": data})
    except IntegrityError:
        return 0
    return 1
