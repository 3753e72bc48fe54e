"""Writers for communities, groups, memberships and role assignments."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import Conflict, Invalid
from shequn.core.models import Platform
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.models import Member

from .models import ChatGroup, Community, CommunityRole, JoinSource, Membership, RoleAssignment

COMMUNITY_FIELDS = {"name", "theme", "audience", "needs", "purpose", "category", "rules", "announcement",
                    "entry_threshold", "stage"}
_CHOICES = {"purpose": Community.Purpose, "category": Community.Category,
            "entry_threshold": Community.EntryThreshold, "stage": Community.Stage}


def check_community_fields(data: dict[str, Any]) -> dict[str, Any]:
    unknown = set(data) - COMMUNITY_FIELDS
    if unknown:
        raise Invalid(_("未知的字段: %(f)s") % {"f": ", ".join(sorted(unknown))}, details={"field": sorted(unknown)[0]})
    if "name" in data and not str(data["name"]).strip():
        raise Invalid(_("社群名称不能为空"), details={"field": "name"})
    for key, choices in _CHOICES.items():
        if key in data and data[key] not in choices.values:
            raise Invalid(_("%(f)s 的取值无效: %(v)s") % {"f": key, "v": data[key]}, details={"field": key})
    return data


@transaction.atomic
def do_create_community(principal: Principal, **data: Any) -> Community:
    check_community_fields(data)
    if "name" not in data:
        raise Invalid(_("社群名称不能为空"), details={"field": "name"})
    if Community.objects.filter(tenant_id=principal.tenant_id, name=data["name"]).exists():
        raise Conflict(_("已有同名社群: %(n)s") % {"n": data["name"]}, details={"field": "name"})
    community = Community.objects.create(tenant_id=principal.tenant_id, **data)
    do_audit(principal, "community.create", "Community", community.pk, data={"name": community.name})
    return community


@transaction.atomic
def do_update_community(principal: Principal, community: Community, **data: Any) -> Community:
    check_community_fields(data)
    if "name" in data and Community.objects.filter(tenant_id=principal.tenant_id, name=data["name"]).exclude(
        pk=community.pk
    ).exists():
        raise Conflict(_("已有同名社群: %(n)s") % {"n": data["name"]}, details={"field": "name"})
    for key, value in data.items():
        setattr(community, key, value)
    community.save()
    do_audit(principal, "community.update", "Community", community.pk, data={"fields": sorted(data)})
    return community


@transaction.atomic
def do_add_group(
    principal: Principal, community: Community, *, platform: str, external_id: str, name: str, capacity: int = 500
) -> ChatGroup:
    if platform not in Platform.values:
        raise Invalid(_("未知的平台: %(v)s") % {"v": platform}, details={"field": "platform"})
    if not str(external_id).strip():
        raise Invalid(_("平台群 ID 不能为空"), details={"field": "external_id"})
    if capacity < 1:
        raise Invalid(_("容量必须大于 0"), details={"field": "capacity"})
    try:
        with transaction.atomic():
            group = ChatGroup.objects.create(
                tenant_id=principal.tenant_id, community=community, platform=platform,
                external_id=str(external_id).strip(), name=name or str(external_id), capacity=capacity,
            )
    except IntegrityError as exc:
        raise Conflict(_("该平台群已登记"), details={"field": "external_id"}) from exc
    do_audit(principal, "group.create", "ChatGroup", group.pk, data={"platform": platform})
    return group


@transaction.atomic
def do_join(
    principal: Principal, member: Member, community: Community, *, group: ChatGroup | None = None,
    source: str = JoinSource.MANUAL, inviter: Member | None = None, joined_at: dt.datetime | None = None,
) -> Membership:
    """Open a membership (idempotent: an open one for the same community/group is returned)."""
    if source not in JoinSource.values:
        raise Invalid(_("未知的加入方式"), details={"field": "join_source"})
    if group is not None and group.community_id != community.pk:
        raise Invalid(_("该群不属于此社群"), details={"field": "group_id"})
    if inviter is not None and inviter.pk == member.pk:
        raise Invalid(_("不能邀请自己"), details={"field": "inviter_id"})
    existing = Membership.objects.filter(tenant_id=principal.tenant_id, member=member, community=community,
                                         group=group, left_at__isnull=True).first()
    if existing is not None:
        return existing
    membership = Membership.objects.create(
        tenant_id=principal.tenant_id, member=member, community=community, group=group,
        joined_at=joined_at or timezone.now(), join_source=source, inviter=inviter,
    )
    do_audit(principal, "membership.join", "Membership", membership.pk,
             data={"community": community.pk, "member": member.pk, "source": source})
    return membership


@transaction.atomic
def do_leave(principal: Principal, membership: Membership, *, reason: str = "", left_at: dt.datetime | None = None
             ) -> Membership:
    if membership.left_at is not None:
        raise Conflict(_("该成员已离开"), details={"field": "membership_id"})
    membership.left_at = left_at or timezone.now()
    membership.exit_reason = reason[:200]
    membership.save(update_fields=["left_at", "exit_reason"])
    do_audit(principal, "membership.leave", "Membership", membership.pk, reason=reason)
    return membership


@transaction.atomic
def do_assign_role(
    principal: Principal, community: Community, member: Member, *, role: str, reward_note: str = "",
    since: dt.datetime | None = None,
) -> RoleAssignment:
    if role not in CommunityRole.values:
        raise Invalid(_("未知的角色: %(r)s") % {"r": role}, details={"field": "role"})
    open_role = RoleAssignment.objects.filter(tenant_id=principal.tenant_id, community=community, member=member,
                                              role=role, until__isnull=True).first()
    if open_role is not None:
        raise Conflict(_("该会员已担任此角色"), details={"field": "role"})
    assignment = RoleAssignment.objects.create(
        tenant_id=principal.tenant_id, community=community, member=member, role=role,
        since=since or timezone.now(), assigned_by=principal.label, reward_note=reward_note[:200],
    )
    do_audit(principal, "role.assign", "RoleAssignment", assignment.pk,
             data={"community": community.pk, "member": member.pk, "role": role})
    return assignment


@transaction.atomic
def do_end_role(principal: Principal, assignment: RoleAssignment, *, reason: str = "") -> RoleAssignment:
    if assignment.until is not None:
        raise Conflict(_("该角色已结束"), details={"field": "role_id"})
    assignment.until = timezone.now()
    assignment.save(update_fields=["until"])
    do_audit(principal, "role.end", "RoleAssignment", assignment.pk, reason=reason)
    return assignment
