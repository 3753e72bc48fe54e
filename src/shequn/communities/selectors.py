"""Tenant-scoped reads of communities, groups, memberships, roles and the per-community dashboard."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.activity.models import ActivityEvent, EventKind
from shequn.core.errors import NotFound
from shequn.members.services import export_rows

from .models import ChatGroup, Community, Membership, RoleAssignment


def communities(tenant_id: int) -> QuerySet[Community]:
    return Community.objects.filter(tenant_id=tenant_id).annotate(
        member_count=Count("memberships__member", filter=Q(memberships__left_at__isnull=True), distinct=True)
    ).order_by("pk")


def get_community(tenant_id: int, community_id: int) -> Community:
    obj = Community.objects.filter(tenant_id=tenant_id, pk=community_id).first()
    if obj is None:
        raise NotFound(_("社群不存在"), details={"community_id": community_id})
    return obj


def groups(tenant_id: int, community_id: int | None = None) -> QuerySet[ChatGroup]:
    qs = ChatGroup.objects.filter(tenant_id=tenant_id)
    if community_id is not None:
        qs = qs.filter(community_id=community_id)
    return qs.annotate(
        member_count=Count("memberships", filter=Q(memberships__left_at__isnull=True))
    ).order_by("pk")


def get_group(tenant_id: int, group_id: int) -> ChatGroup:
    obj = ChatGroup.objects.filter(tenant_id=tenant_id, pk=group_id).first()
    if obj is None:
        raise NotFound(_("群不存在"), details={"group_id": group_id})
    return obj


def memberships(
    tenant_id: int, *, community_id: int | None = None, member_id: int | None = None, current: bool | None = None
) -> QuerySet[Membership]:
    qs = Membership.objects.filter(tenant_id=tenant_id)
    if community_id is not None:
        qs = qs.filter(community_id=community_id)
    if member_id is not None:
        qs = qs.filter(member_id=member_id)
    if current is True:
        qs = qs.filter(left_at__isnull=True)
    elif current is False:
        qs = qs.filter(left_at__isnull=False)
    return qs


def get_membership(tenant_id: int, membership_id: int) -> Membership:
    obj = Membership.objects.filter(tenant_id=tenant_id, pk=membership_id).first()
    if obj is None:
        raise NotFound(_("成员关系不存在"), details={"membership_id": membership_id})
    return obj


def roles(tenant_id: int, *, community_id: int | None = None, current: bool = True) -> QuerySet[RoleAssignment]:
    qs = RoleAssignment.objects.filter(tenant_id=tenant_id)
    if community_id is not None:
        qs = qs.filter(community_id=community_id)
    if current:
        qs = qs.filter(until__isnull=True)
    return qs


def get_role(tenant_id: int, role_id: int) -> RoleAssignment:
    obj = RoleAssignment.objects.filter(tenant_id=tenant_id, pk=role_id).first()
    if obj is None:
        raise NotFound(_("角色不存在"), details={"role_id": role_id})
    return obj


def role_holder_ids(tenant_id: int, community_id: int) -> set[int]:
    return set(roles(tenant_id, community_id=community_id).values_list("member_id", flat=True))


_ACTIVE_KINDS = (EventKind.MESSAGE, EventKind.REPLY, EventKind.REACTION, EventKind.CHECK_IN, EventKind.PURCHASE,
                 EventKind.LIVE_VIEW, EventKind.CONTENT_VIEW, EventKind.INVITE)


def community_dashboard(tenant_id: int, community_id: int, *, days: int = 90, tz: str = "Asia/Shanghai"
                        ) -> dict[str, Any]:
    """Daily series for the dashboard: members, daily active members, joins, leaves, messages.
    Days are calendar days in the tenant's time zone."""
    zone = ZoneInfo(tz)
    today = timezone.now().astimezone(zone).date()
    start = today - dt.timedelta(days=days - 1)
    start_dt = dt.datetime.combine(start, dt.time.min, tzinfo=zone)
    dates = [start + dt.timedelta(days=i) for i in range(days)]

    ms = list(memberships(tenant_id, community_id=community_id).values_list("member_id", "joined_at", "left_at"))
    joins = Counter(j.astimezone(zone).date() for _m, j, _l in ms if j >= start_dt)
    leaves = Counter(left.astimezone(zone).date() for _m, _j, left in ms if left and left >= start_dt)
    members_series = []
    for d in dates:
        end = dt.datetime.combine(d + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
        members_series.append(len({m for m, j, left in ms if j < end and (left is None or left >= end)}))

    events = ActivityEvent.objects.filter(tenant_id=tenant_id, community_id=community_id, occurred_at__gte=start_dt)
    dau_rows = (events.filter(kind__in=_ACTIVE_KINDS, member__isnull=False)
                .annotate(day=TruncDate("occurred_at", tzinfo=zone)).values("day")
                .annotate(n=Count("member_id", distinct=True)))
    msg_rows = (events.filter(kind__in=(EventKind.MESSAGE, EventKind.REPLY))
                .annotate(day=TruncDate("occurred_at", tzinfo=zone)).values("day").annotate(n=Count("id")))
    dau = {_as_date(r["day"]): r["n"] for r in dau_rows}
    msgs = {_as_date(r["day"]): r["n"] for r in msg_rows}
    return {
        "dates": [d.isoformat() for d in dates],
        "members": members_series,
        "daily_active": [dau.get(d, 0) for d in dates],
        "joins": [joins.get(d, 0) for d in dates],
        "leaves": [leaves.get(d, 0) for d in dates],
        "messages": [msgs.get(d, 0) for d in dates],
    }


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, str):
        return dt.date.fromisoformat(value[:10])
    assert isinstance(value, dt.date)
    return value


def member_export_memberships(tenant_id: int, member_id: int) -> list[dict[str, Any]]:
    """The member's stays in communities, for their data export (declared in the wiring)."""
    return export_rows(Membership.objects.filter(tenant_id=tenant_id, member_id=member_id).order_by("pk"),
                       ["community__name", "group__name", "joined_at", "left_at", "join_source", "exit_reason"])


def member_export_roles(tenant_id: int, member_id: int) -> list[dict[str, Any]]:
    """The member's community roles, for their data export (declared in the wiring)."""
    return export_rows(RoleAssignment.objects.filter(tenant_id=tenant_id, member_id=member_id).order_by("pk"),
                       ["community__name", "role", "since", "until"])
