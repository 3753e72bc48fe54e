"""Tenant-scoped reads of communities, groups, memberships and roles (the dashboards' queries are
``shequn.analytics.selectors``)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils.translation import gettext as _

from shequn.core.errors import NotFound
from shequn.members.services import export_rows

from .models import ChatGroup, Community, JoinRequest, Membership, RoleAssignment


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


def member_export_memberships(tenant_id: int, member_id: int) -> list[dict[str, Any]]:
    """The member's stays in communities, for their data export (declared in the wiring)."""
    return export_rows(Membership.objects.filter(tenant_id=tenant_id, member_id=member_id).order_by("pk"),
                       ["community__name", "group__name", "joined_at", "left_at", "join_source", "exit_reason"])


def member_export_roles(tenant_id: int, member_id: int) -> list[dict[str, Any]]:
    """The member's community roles, for their data export (declared in the wiring)."""
    return export_rows(RoleAssignment.objects.filter(tenant_id=tenant_id, member_id=member_id).order_by("pk"),
                       ["community__name", "role", "since", "until"])


def join_requests(tenant_id: int, *, status: str | None = None, community_id: int | None = None,
                  member_id: int | None = None) -> QuerySet[JoinRequest]:
    qs = JoinRequest.objects.filter(tenant_id=tenant_id)
    if status is not None:
        qs = qs.filter(status=status)
    if community_id is not None:
        qs = qs.filter(community_id=community_id)
    if member_id is not None:
        qs = qs.filter(member_id=member_id)
    return qs


def get_join_request(tenant_id: int, request_id: int) -> JoinRequest:
    obj = JoinRequest.objects.filter(tenant_id=tenant_id, pk=request_id).first()
    if obj is None:
        raise NotFound(_("入群申请不存在"), details={"request_id": request_id})
    return obj


def owned_groups(tenant_id: int, member_id: int) -> QuerySet[ChatGroup]:
    """The groups a partner opened under a community (``ChatGroup.owner``), active ones first."""
    return (ChatGroup.objects.filter(tenant_id=tenant_id, owner_id=member_id).select_related("community")
            .order_by("-is_active", "pk"))
