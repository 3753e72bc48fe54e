"""REST API of the communities app (``/api/v1/communities/``): communities, their chat groups,
membership history, role assignments, the join-request queue (entry thresholds) and partners' own
groups (the per-community dashboard series moved to
``/api/v1/analytics/communities/{id}/dashboard``)."""


import datetime as dt
from typing import Any, Literal

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema, Status

from shequn.core.errors import Conflict, Invalid
from shequn.core.http import ERRORS, ApiDatetime, BodyIn, Id, idempotent, require
from shequn.core.pagination import KeysetPagination, paginate
from shequn.members.selectors import get_member

from . import selectors
from .models import ChatGroup, Community, CommunityRole, JoinRequest, JoinSource, Membership, RoleAssignment
from .services import (
    do_add_group,
    do_assign_role,
    do_create_community,
    do_decide_join,
    do_end_role,
    do_join,
    do_leave,
    do_open_partner_group,
    do_update_community,
)

router = Router(tags=["communities"])

Purpose = Literal["sharing", "sales", "enabling"]
Category = Literal["product", "knowledge", "relationship", "idol", "interest"]
Threshold = Literal["free", "approval", "paid"]
Stage = Literal["planning", "seeding", "growing", "mature", "declining", "archived"]
RoleName = Literal["owner", "advocate", "cs", "content", "guest"]
JoinSourceName = Literal["invite_link", "qr", "live", "import", "manual", "platform", "purchase"]
PlatformName = Literal["wecom", "telegram", "matrix", "portal", "manual"]
for _lit, _choices in ((Purpose, Community.Purpose), (Category, Community.Category),
                       (Threshold, Community.EntryThreshold), (Stage, Community.Stage), (RoleName, CommunityRole),
                       (JoinSourceName, JoinSource)):
    assert set(_lit.__args__) == set(_choices.values), _lit  # type: ignore[attr-defined]


# --- schemas ------------------------------------------------------------------------------------

#: community rules and announcement (free text)
MAX_TEXT = 20_000


class CommunityIn(BodyIn):
    name: str = Field(min_length=1, max_length=120)
    theme: str = Field("", max_length=200)
    audience: str = Field("", max_length=200, description="定位: 人群")
    needs: str = Field("", max_length=200, description="定位: 需求")
    purpose: Purpose = "sharing"
    category: Category = "interest"
    rules: str = Field("", max_length=MAX_TEXT)
    announcement: str = Field("", max_length=MAX_TEXT)
    entry_threshold: Threshold = "free"
    stage: Stage = "seeding"


class CommunityPatch(BodyIn):
    name: str | None = Field(None, min_length=1, max_length=120)
    theme: str | None = Field(None, max_length=200)
    audience: str | None = Field(None, max_length=200)
    needs: str | None = Field(None, max_length=200)
    purpose: Purpose | None = None
    category: Category | None = None
    rules: str | None = Field(None, max_length=MAX_TEXT)
    announcement: str | None = Field(None, max_length=MAX_TEXT)
    entry_threshold: Threshold | None = None
    stage: Stage | None = None


class CommunityOut(Schema):
    id: int
    name: str
    theme: str
    audience: str
    needs: str
    purpose: str
    category: str
    rules: str
    announcement: str
    entry_threshold: str
    stage: str
    member_count: int = 0
    created_at: dt.datetime


class GroupIn(BodyIn):
    platform: PlatformName
    external_id: str = Field(min_length=1, max_length=191)
    name: str = Field("", max_length=120)
    capacity: int = Field(500, ge=1, le=1_000_000)


class GroupOut(Schema):
    id: int
    community_id: int
    platform: str
    external_id: str
    name: str
    capacity: int
    is_active: bool
    owner_id: int | None = Field(None, description="合伙人自己的群: 群主会员")
    member_count: int = 0


class PartnerGroupIn(BodyIn):
    member_id: Id = Field(description="持有合伙人等级 (may_create_groups) 的会员")
    platform: Literal["telegram", "matrix", "wecom"]
    external_id: str = Field(min_length=1, max_length=191, description="合伙人建好的平台群 ID (机器人已在群内)")
    name: str = Field("", max_length=120)
    capacity: int = Field(500, ge=1, le=1_000_000)


JoinRequestStatus = Literal["pending", "approved", "rejected"]


class JoinRequestOut(Schema):
    id: int
    member_id: int
    community_id: int
    group_id: int | None
    via: str
    invite_code: str
    message: str
    status: str
    decided_by: str
    decision_note: str
    created_at: dt.datetime
    decided_at: dt.datetime | None


class JoinRequestFilter(Schema):
    status: JoinRequestStatus | None = None
    community_id: Id | None = None


class DecisionIn(BodyIn):
    note: str = Field("", max_length=200)


class JoinIn(BodyIn):
    member_id: Id
    group_id: Id | None = None
    join_source: JoinSourceName = "manual"
    inviter_id: Id | None = None
    joined_at: ApiDatetime | None = None


class LeaveIn(BodyIn):
    reason: str = Field("", max_length=200)


class MembershipOut(Schema):
    id: int
    member_id: int
    community_id: int
    group_id: int | None
    joined_at: dt.datetime
    left_at: dt.datetime | None
    join_source: str
    inviter_id: int | None
    exit_reason: str


class RoleIn(BodyIn):
    member_id: Id
    role: RoleName
    reward_note: str = Field("", max_length=200)
    since: ApiDatetime | None = None


class EndRoleIn(BodyIn):
    reason: str = Field("", max_length=500)


class RoleOut(Schema):
    id: int
    community_id: int
    member_id: int
    role: str
    since: dt.datetime
    until: dt.datetime | None
    assigned_by: str
    reward_note: str


class MembershipFilter(Schema):
    member_id: Id | None = None
    current: bool | None = Field(None, description="true: open memberships only; false: ended only")


# --- helpers ------------------------------------------------------------------------------------

def _community(tenant_id: int, community_id: Id) -> Community:
    selectors.get_community(tenant_id, community_id)  # 404 for unknown / other tenant
    return selectors.communities(tenant_id).get(pk=community_id)


def _group(tenant_id: int, group_id: Id) -> ChatGroup:
    selectors.get_group(tenant_id, group_id)
    return selectors.groups(tenant_id).get(pk=group_id)


def _memberships(qs: Any, f: MembershipFilter) -> Any:
    if f.member_id is not None:
        qs = qs.filter(member_id=f.member_id)
    if f.current is True:
        qs = qs.filter(left_at__isnull=True)
    elif f.current is False:
        qs = qs.filter(left_at__isnull=False)
    return qs


# --- communities --------------------------------------------------------------------------------

@router.get("", response={200: list[CommunityOut], **ERRORS}, summary="社群列表")
@paginate(KeysetPagination, descending=False)
def list_communities(request: HttpRequest) -> Any:
    p = require(request, "communities.read")
    return selectors.communities(p.tenant_id)


@router.post("", response={201: CommunityOut, **ERRORS}, summary="创建社群")
@idempotent
def create_community(request: HttpRequest, payload: CommunityIn) -> Any:
    p = require(request, "communities.write")
    community = do_create_community(p, **payload.model_dump())
    return Status(201, CommunityOut.from_orm(_community(p.tenant_id, community.pk)))


@router.get("/memberships", response={200: list[MembershipOut], **ERRORS}, summary="成员关系 (全部社群)")
@paginate(KeysetPagination)
def list_all_memberships(request: HttpRequest, filters: Query[MembershipFilter]) -> Any:
    p = require(request, "communities.read")
    return _memberships(selectors.memberships(p.tenant_id), filters)


@router.post("/memberships/{membership_id}/leave", response={200: MembershipOut, **ERRORS}, summary="退出社群")
@idempotent
def leave(request: HttpRequest, membership_id: Id, payload: LeaveIn) -> Any:
    p = require(request, "communities.write")
    membership = selectors.get_membership(p.tenant_id, membership_id)
    return MembershipOut.from_orm(do_leave(p, membership, reason=payload.reason))


@router.get("/join-requests", response={200: list[JoinRequestOut], **ERRORS}, summary="入群申请")
@paginate(KeysetPagination)
def list_join_requests(request: HttpRequest, filters: Query[JoinRequestFilter]) -> Any:
    """The approval queue of every way in (portal requests, Telegram join requests, Matrix knocks);
    ``status=pending`` is what waits for a decision."""
    p = require(request, "communities.read")
    return selectors.join_requests(p.tenant_id, status=filters.status, community_id=filters.community_id)


def _decide(request: HttpRequest, request_id: int, payload: DecisionIn, approve: bool) -> Any:
    p = require(request, "communities.write")
    selectors.get_join_request(p.tenant_id, request_id)
    req: JoinRequest = do_decide_join(p, request_id, approve=approve, note=payload.note)
    return JoinRequestOut.from_orm(req)


@router.post("/join-requests/{request_id}/approve", response={200: JoinRequestOut, **ERRORS}, summary="通过入群申请")
@idempotent
def approve_join_request(request: HttpRequest, request_id: Id, payload: DecisionIn) -> Any:
    """A platform request is answered on the platform (Telegram approveChatJoinRequest, Matrix
    invite) through the outbox; a portal request opens the membership. 409 when already decided."""
    return _decide(request, request_id, payload, True)


@router.post("/join-requests/{request_id}/decline", response={200: JoinRequestOut, **ERRORS}, summary="拒绝入群申请")
@idempotent
def decline_join_request(request: HttpRequest, request_id: Id, payload: DecisionIn) -> Any:
    return _decide(request, request_id, payload, False)


@router.post("/roles/{role_id}/end", response={200: RoleOut, **ERRORS}, summary="结束角色")
@idempotent
def end_role(request: HttpRequest, role_id: Id, payload: EndRoleIn) -> Any:
    p = require(request, "communities.write")
    assignment = selectors.get_role(p.tenant_id, role_id)
    return RoleOut.from_orm(do_end_role(p, assignment, reason=payload.reason))


@router.get("/{community_id}", response={200: CommunityOut, **ERRORS}, summary="社群详情")
def get_community(request: HttpRequest, community_id: Id) -> Any:
    p = require(request, "communities.read")
    return _community(p.tenant_id, community_id)


@router.patch("/{community_id}", response={200: CommunityOut, **ERRORS}, summary="修改社群")
def update_community(request: HttpRequest, community_id: Id, payload: CommunityPatch) -> Any:
    p = require(request, "communities.write")
    community = selectors.get_community(p.tenant_id, community_id)
    changes = payload.model_dump(exclude_unset=True)
    nulls = sorted(k for k, v in changes.items() if v is None)
    if nulls:
        raise Invalid(_("字段不能为 null: %(f)s") % {"f": ", ".join(nulls)},
                      details=[{"field": f"body.payload.{k}", "message": "null"} for k in nulls])
    if changes:
        do_update_community(p, community, **changes)
    return _community(p.tenant_id, community_id)



# --- groups -------------------------------------------------------------------------------------

@router.get("/{community_id}/groups", response={200: list[GroupOut], **ERRORS}, summary="社群的群")
def list_groups(request: HttpRequest, community_id: Id) -> Any:
    p = require(request, "communities.read")
    selectors.get_community(p.tenant_id, community_id)
    return list(selectors.groups(p.tenant_id, community_id)[:1000])


@router.post("/{community_id}/groups", response={201: GroupOut, **ERRORS}, summary="登记群")
@idempotent
def create_group(request: HttpRequest, community_id: Id, payload: GroupIn) -> Any:
    p = require(request, "communities.write")
    community = selectors.get_community(p.tenant_id, community_id)
    group = do_add_group(p, community, platform=payload.platform, external_id=payload.external_id,
                         name=payload.name, capacity=payload.capacity)
    return Status(201, GroupOut.from_orm(_group(p.tenant_id, group.pk)))


# --- memberships --------------------------------------------------------------------------------

@router.post("/{community_id}/partner-groups", response={201: GroupOut, **ERRORS}, summary="合伙人开自己的群")
@idempotent
def open_partner_group(request: HttpRequest, community_id: Id, payload: PartnerGroupIn) -> Any:
    """The partner tier's own-group right: registers the partner's platform group under the
    community with them as its owner (403 without the ``may_create_groups`` privilege; asking again
    returns their group)."""
    p = require(request, "communities.write")
    community = selectors.get_community(p.tenant_id, community_id)
    member = get_member(p.tenant_id, payload.member_id)
    group = do_open_partner_group(p, member, community, platform=payload.platform,
                                  external_id=payload.external_id, name=payload.name, capacity=payload.capacity)
    return Status(201, _group(p.tenant_id, group.pk))


@router.get("/{community_id}/memberships", response={200: list[MembershipOut], **ERRORS},
            summary="社群成员关系 (完整历史)")
@paginate(KeysetPagination)
def list_memberships(request: HttpRequest, community_id: Id, filters: Query[MembershipFilter]) -> Any:
    p = require(request, "communities.read")
    selectors.get_community(p.tenant_id, community_id)
    return _memberships(selectors.memberships(p.tenant_id, community_id=community_id), filters)


@router.post("/{community_id}/memberships", response={201: MembershipOut, **ERRORS}, summary="加入社群")
@idempotent
def join(request: HttpRequest, community_id: Id, payload: JoinIn) -> Any:
    """Opens a membership; an already open one for the same community/group is returned as is."""
    p = require(request, "communities.write")
    community = selectors.get_community(p.tenant_id, community_id)
    member = get_member(p.tenant_id, payload.member_id)
    group = selectors.get_group(p.tenant_id, payload.group_id) if payload.group_id is not None else None
    inviter = get_member(p.tenant_id, payload.inviter_id) if payload.inviter_id is not None else None
    for field, m in (("member_id", member), ("inviter_id", inviter)):
        if m is not None and m.merged_into_id is not None:
            raise Conflict(_("会员 #%(id)s 已合并到 #%(to)s") % {"id": m.pk, "to": m.merged_into_id},
                           details={"field": field, "merged_into_id": m.merged_into_id})
    membership: Membership = do_join(p, member, community, group=group, source=payload.join_source,
                                     inviter=inviter, joined_at=payload.joined_at)
    return Status(201, MembershipOut.from_orm(membership))


# --- roles --------------------------------------------------------------------------------------

@router.get("/{community_id}/roles", response={200: list[RoleOut], **ERRORS}, summary="社群角色")
def list_roles(request: HttpRequest, community_id: Id, current: bool = True) -> Any:
    p = require(request, "communities.read")
    selectors.get_community(p.tenant_id, community_id)
    return list(selectors.roles(p.tenant_id, community_id=community_id, current=current).order_by("pk")[:2000])


@router.post("/{community_id}/roles", response={201: RoleOut, **ERRORS}, summary="指派角色")
@idempotent
def assign_role(request: HttpRequest, community_id: Id, payload: RoleIn) -> Any:
    p = require(request, "communities.write")
    community = selectors.get_community(p.tenant_id, community_id)
    member = get_member(p.tenant_id, payload.member_id)
    if member.merged_into_id is not None:
        raise Conflict(_("会员 #%(id)s 已合并到 #%(to)s") % {"id": member.pk, "to": member.merged_into_id},
                       details={"field": "member_id", "merged_into_id": member.merged_into_id})
    assignment: RoleAssignment = do_assign_role(p, community, member, role=payload.role,
                                                reward_note=payload.reward_note, since=payload.since)
    return Status(201, RoleOut.from_orm(assignment))
