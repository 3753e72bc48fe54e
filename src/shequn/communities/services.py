"""Writers for communities, groups, memberships and role assignments."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import Conflict, Forbidden, Invalid, NotFound
from shequn.core.models import Platform
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.models import Member

from . import registry
from .models import ChatGroup, Community, CommunityRole, JoinRequest, JoinSource, Membership, RoleAssignment

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
@transaction.atomic
def do_update_community(principal: Principal, community: Community, **data: Any) -> Community:
    """Change a community's fields. When its entry threshold leaves "free", every platform way in is
    gated in this transaction (:func:`do_gate_ways_in`)."""
    check_community_fields(data)
    was_free = community.entry_threshold == Community.EntryThreshold.FREE
    if "name" in data and Community.objects.filter(tenant_id=principal.tenant_id, name=data["name"]).exclude(
        pk=community.pk
    ).exists():
        raise Conflict(_("已有同名社群: %(n)s") % {"n": data["name"]}, details={"field": "name"})
    for key, value in data.items():
        setattr(community, key, value)
    community.save()
    do_audit(principal, "community.update", "Community", community.pk, data={"fields": sorted(data)})
    if was_free and community.entry_threshold != Community.EntryThreshold.FREE:
        do_gate_ways_in(community)
    return community


def do_gate_ways_in(community: Community, groups: Sequence[ChatGroup] | None = None) -> int:
    """Make the platform ways into a gated community (approval or paid threshold) ask first: the
    gate listeners (connectors: a public Matrix room's join rule becomes ``knock``; the portal:
    Telegram links made without ``creates_join_request`` are revoked and remade on the next visit).
    Without ``groups``: all the community's active groups. A free community is left alone. Call it
    inside the transaction of the change; the platform work goes through the outbox. Returns the
    number of groups looked at."""
    if community.entry_threshold == Community.EntryThreshold.FREE:
        return 0
    if groups is None:
        groups = list(ChatGroup.objects.filter(tenant_id=community.tenant_id, community=community, is_active=True))
    groups = [g for g in groups if g.is_active and g.community_id == community.pk]
    if groups:
        for listener in registry.gate_listeners():
            listener(community, groups)
    return len(groups)


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
    do_gate_ways_in(community, [group])
    return group


def _memberships_changed(tenant_id: int, pairs: Sequence[tuple[int, int]]) -> None:
    """Tell the membership listeners (analytics' members-present count) which (member, community)
    stays a write changed, inside the write's transaction."""
    if pairs:
        for listener in registry.membership_listeners():
            listener(tenant_id, pairs)


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
    _memberships_changed(principal.tenant_id, [(member.pk, community.pk)])
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
    _memberships_changed(membership.tenant_id, [(membership.member_id, membership.community_id)])
    do_audit(principal, "membership.leave", "Membership", membership.pk, reason=reason)
    return membership


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """One join or leave for the set-based writers below (built with :meth:`join` / :meth:`leave`)."""

    kind: str  # "join" | "leave"
    member_id: int
    community_id: int
    group_id: int | None
    at: dt.datetime
    source: str = JoinSource.PLATFORM
    inviter_id: int | None = None
    reason: str = ""

    @classmethod
    def join(cls, member_id: int, community_id: int, group_id: int | None, at: dt.datetime, *,
             source: Any = None, inviter_id: Any = None) -> MembershipChange:
        """An unknown ``source`` becomes ``platform``; an ``inviter_id`` that is not an integer id a
        64-bit column holds (``1e30`` from an event payload) is dropped, never failing the batch."""
        return cls("join", member_id, community_id, group_id, at,
                   source=source if source in JoinSource.values else JoinSource.PLATFORM,
                   inviter_id=inviter_id if isinstance(inviter_id, int) and not isinstance(inviter_id, bool)
                   and 0 < inviter_id < 2**63 else None)

    @classmethod
    def leave(cls, member_id: int, community_id: int, group_id: int | None, at: dt.datetime, *,
              reason: str = "") -> MembershipChange:
        return cls("leave", member_id, community_id, group_id, at, reason=str(reason)[:200])


def do_record_membership_changes(tenant_id: int, changes: Sequence[MembershipChange]) -> int:
    """Apply joins and leaves observed elsewhere (platform events, imports), in the order given.

    The bulk path of the membership writer: no per-row audit (the caller's own record — the stored
    activity event, the audited import — is the trail), no principal. A join opens a membership
    unless an open one exists for the same member/community/group (idempotent); a leave closes the
    open one(s). An ``inviter_id`` that is not a member of the tenant (or is the member itself) is
    dropped rather than failing the whole batch on the foreign key. Runs in the caller's transaction
    (one atomic block when called alone). Returns how many rows were opened or closed."""
    if not changes:
        return 0
    inviters = {c.inviter_id for c in changes if c.inviter_id is not None}
    known = set(Member.objects.filter(tenant_id=tenant_id, pk__in=inviters).values_list("pk", flat=True)) \
        if inviters else set()
    written = 0
    touched: set[tuple[int, int]] = set()
    with transaction.atomic():
        for c in changes:
            open_q = Membership.objects.filter(tenant_id=tenant_id, member_id=c.member_id,
                                               community_id=c.community_id, group_id=c.group_id,
                                               left_at__isnull=True)
            if c.kind == "join":
                if open_q.exists():
                    continue
                inviter = c.inviter_id if c.inviter_id in known and c.inviter_id != c.member_id else None
                Membership.objects.create(tenant_id=tenant_id, member_id=c.member_id, community_id=c.community_id,
                                          group_id=c.group_id, joined_at=c.at, join_source=c.source,
                                          inviter_id=inviter)
                written += 1
                touched.add((c.member_id, c.community_id))
            elif closed := open_q.update(left_at=c.at, exit_reason=c.reason[:200]):
                written += closed
                touched.add((c.member_id, c.community_id))
        _memberships_changed(tenant_id, sorted(touched))
    return written


def do_record_joins(tenant_id: int, rows: Sequence[MembershipChange]) -> int:
    """Open memberships in bulk (see :func:`do_record_membership_changes`); every row must be a join."""
    if any(r.kind != "join" for r in rows):
        raise ValueError("do_record_joins takes joins only")
    return do_record_membership_changes(tenant_id, rows)


def do_move_memberships(tenant_id: int, from_member_id: int, to_member_id: int) -> int:
    """Member merge: move every membership of ``from_member_id`` to ``to_member_id`` (run inside the
    merge's transaction, which audits the merge and locks both members).

    Where both have an open membership of the same community/group, the kept one takes the earlier
    ``joined_at`` and the merged one is closed (``exit_reason = "merged"``) before moving, so a member
    never has two open rows for one place. Memberships the merged member invited are re-attributed.
    Returns how many rows moved."""
    with transaction.atomic():
        communities = set(Membership.objects.filter(tenant_id=tenant_id, member_id__in=(
            from_member_id, to_member_id)).values_list("community_id", flat=True))
        for m in Membership.objects.filter(tenant_id=tenant_id, member_id=from_member_id, left_at__isnull=True):
            twin = Membership.objects.filter(tenant_id=tenant_id, member_id=to_member_id,
                                             community_id=m.community_id, group_id=m.group_id,
                                             left_at__isnull=True).first()
            if twin is not None:
                if m.joined_at < twin.joined_at:
                    twin.joined_at = m.joined_at
                    twin.save(update_fields=["joined_at"])
                m.left_at = timezone.now()
                m.exit_reason = "merged"
                m.save(update_fields=["left_at", "exit_reason"])
        moved = Membership.objects.filter(tenant_id=tenant_id, member_id=from_member_id).update(
            member_id=to_member_id)
        Membership.objects.filter(tenant_id=tenant_id, inviter_id=from_member_id).update(inviter_id=to_member_id)
        _memberships_changed(tenant_id, [(m, c) for m in (from_member_id, to_member_id) for c in sorted(communities)])
    return moved


def on_member_merged(tenant_id: int, from_member_id: int, to_member_id: int) -> dict[str, int]:
    """The members merge hook of communities (declared in :mod:`shequn.wiring`): role assignments and
    memberships (see :func:`do_move_memberships`) move to the kept member."""
    roles = RoleAssignment.objects.filter(tenant_id=tenant_id, member_id=from_member_id).update(
        member_id=to_member_id)
    for req in JoinRequest.objects.filter(tenant_id=tenant_id, member_id=from_member_id,
                                          status=JoinRequest.Status.PENDING):
        if JoinRequest.objects.filter(tenant_id=tenant_id, member_id=to_member_id, community_id=req.community_id,
                                      group_id=req.group_id, status=JoinRequest.Status.PENDING).exists():
            req.delete()  # the kept member asked for the same place: one pending request stays
    requests = JoinRequest.objects.filter(tenant_id=tenant_id, member_id=from_member_id).update(
        member_id=to_member_id)
    return {"roles": roles, "memberships": do_move_memberships(tenant_id, from_member_id, to_member_id),
            "join_requests": requests,
            "owned_groups": do_move_owned_groups(tenant_id, from_member_id, to_member_id)}


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


class MemberPlacement:
    """Members' import places rows that name a community here (:class:`shequn.members.registry.Placement`,
    declared in :mod:`shequn.wiring`)."""

    def community_ids(self, tenant_id: int) -> dict[str, int]:
        return {c.name: c.pk for c in Community.objects.filter(tenant_id=tenant_id)}

    def record_imported_joins(self, tenant_id: int, joins: Sequence[tuple[int, int]], at: dt.datetime) -> None:
        do_record_joins(tenant_id, [MembershipChange.join(member_id, community_id, None, at, source=JoinSource.IMPORT)
                                    for member_id, community_id in joins])


# --- entry thresholds: join requests (every way in that needs a decision) -------------------------------

#: the tier privilege that lets a member open their own group under the community
PARTNER_GROUP_PRIVILEGE = "may_create_groups"


def _member_principal(member: Member) -> Principal:
    return Principal(tenant_id=member.tenant_id, kind="member", actor_id=str(member.pk),
                     label=member.display_name, permissions=frozenset())


def check_threshold(member: Member, community: Community) -> tuple[str, str]:
    """What the community's entry threshold says about this member now: ``(status, reason)`` with
    status ``approved`` (free; already a member; paid and holding a paid tier of the community) or
    ``pending`` (approval: staff decide) or ``rejected`` (paid without a tier)."""
    if Membership.objects.filter(tenant_id=member.tenant_id, member=member, community=community,
                                 left_at__isnull=True).exists():
        return JoinRequest.Status.APPROVED, _("已是社群成员")
    threshold = community.entry_threshold
    if threshold == Community.EntryThreshold.FREE:
        return JoinRequest.Status.APPROVED, _("免费入群")
    if threshold == Community.EntryThreshold.PAID:
        if registry.holds_paid_tier(member.tenant_id, member.pk, community.pk):
            return JoinRequest.Status.APPROVED, _("已开通付费等级")
        return JoinRequest.Status.REJECTED, _("需先开通付费等级")
    if JoinRequest.objects.filter(tenant_id=member.tenant_id, member=member, community=community,
                                  status=JoinRequest.Status.APPROVED, group__isnull=True).exists():
        return JoinRequest.Status.APPROVED, _("入群申请已通过")
    return JoinRequest.Status.PENDING, ""


def _settle(req: JoinRequest, status: str, *, by: str, note: str) -> None:
    """Record a decision; a platform request's decision goes back to the platform (listeners, in
    this transaction: connectors writes ``approve_join`` / ``decline_join`` to the outbox)."""
    req.status = status
    req.decided_by = by[:120]
    req.decision_note = note[:200]
    req.decided_at = timezone.now()
    req.save(update_fields=["status", "decided_by", "decision_note", "decided_at"])
    if req.group_id is not None:
        for listener in registry.join_decision_listeners():
            listener(req)


@transaction.atomic
def do_request_join(member: Member, community: Community, *, group: ChatGroup | None = None,
                    via: str = Platform.PORTAL, invite_code: str = "", message: str = "") -> JoinRequest:
    """A way in that needs a decision. From the portal (no ``group``): only approval communities take
    requests (free ones show the ways in, paid ones the tiers). From a platform (``group``: a Telegram
    join request, a Matrix knock): every threshold is applied at once — free → approved, paid →
    approved with a paid tier else rejected, approval → pending (approved at once for a member whose
    portal request was approved or who is in the community already). One pending request per member
    and community (portal) or group (platform); asking again returns it."""
    if community.tenant_id != member.tenant_id:
        raise NotFound(_("社群不存在"), details={"field": "community_id"})
    if group is not None and group.community_id != community.pk:
        raise Invalid(_("该群不属于此社群"), details={"field": "group_id"})
    if group is None and community.entry_threshold != Community.EntryThreshold.APPROVAL:
        raise Invalid(_("该社群不需要申请"), details={"field": "community_id"})
    pending = JoinRequest.objects.filter(tenant_id=member.tenant_id, member=member, community=community,
                                         group=group, status=JoinRequest.Status.PENDING)
    existing = pending.first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            req = JoinRequest.objects.create(tenant_id=member.tenant_id, member=member, community=community,
                                             group=group, via=via, invite_code=invite_code[:32],
                                             message=message[:200])
    except IntegrityError:
        return pending.get()
    do_audit(_member_principal(member), "communities.join_request", "JoinRequest", req.pk,
             data={"community": community.pk, "group": group.pk if group else None, "via": via})
    if group is not None:
        status, reason = check_threshold(member, community)
        if status != JoinRequest.Status.PENDING:
            _settle(req, status, by=str(_("自动 (入群门槛)")), note=reason)
    return req


@dataclass(frozen=True, slots=True)
class PlatformJoinRequest:
    """A join request a platform reported (built by the activity stream from a ``join_request`` event)."""

    member_id: int
    community_id: int
    group_id: int
    platform: str
    invite_code: str = ""
    message: str = ""


def do_record_platform_join_requests(tenant_id: int, items: Sequence[PlatformJoinRequest]) -> list[JoinRequest]:
    """Apply the entry threshold to join requests platforms reported (see :func:`do_request_join`);
    runs in the caller's (the ingest's) transaction."""
    if not items:
        return []
    members = {m.pk: m for m in Member.objects.filter(tenant_id=tenant_id, pk__in={i.member_id for i in items})}
    groups = {g.pk: g for g in ChatGroup.objects.filter(tenant_id=tenant_id, pk__in={i.group_id for i in items})
              .select_related("community")}
    out = []
    for i in items:
        member, group = members.get(i.member_id), groups.get(i.group_id)
        if member is None or group is None:
            continue
        out.append(do_request_join(member, group.community, group=group, via=i.platform,
                                   invite_code=i.invite_code, message=i.message))
    return out


@transaction.atomic
def do_decide_join(principal: Principal, request_id: int, *, approve: bool, note: str = "") -> JoinRequest:
    """Staff decide a pending request (the console's queue 入群申请, the API). A portal request's
    approval opens the community membership; a platform request's decision is sent to the platform
    (approve → the platform lets the member in and its join event opens the membership). Locking:
    the request row."""
    if not principal.can("communities.write"):
        raise Forbidden(_("没有权限: %(perm)s") % {"perm": "communities.write"})
    req = (JoinRequest.objects.select_for_update().select_related("member", "community")
           .filter(tenant_id=principal.tenant_id, pk=request_id).first())
    if req is None:
        raise NotFound(_("入群申请不存在"), details={"field": "request_id"})
    if req.status != JoinRequest.Status.PENDING:
        raise Conflict(_("该申请已处理"), details={"field": "request_id"})
    _settle(req, JoinRequest.Status.APPROVED if approve else JoinRequest.Status.REJECTED,
            by=principal.label, note=note)
    if approve and req.group_id is None:
        do_join(principal, req.member, req.community,
                source=JoinSource.INVITE_LINK if req.invite_code else JoinSource.MANUAL)
    do_audit(principal, f"communities.join_request.{req.status}", "JoinRequest", req.pk,
             reason=note, data={"community": req.community_id, "member": req.member_id})
    return req


# --- the partner's own group (tier privilege) ------------------------------------------------------------


@transaction.atomic
def do_open_partner_group(principal: Principal, member: Member, community: Community, *, platform: str,
                          external_id: str, name: str = "", capacity: int = 500) -> ChatGroup:
    """A member whose paid tier carries ``may_create_groups`` (the partner tier) opens their own group
    under the community: the platform group they created with the tenant's bot in it, registered here
    with them as its owner. Members who join through the partner's invite links are routed to it
    (referrals' landing) and the partner sees it as its owner on their page. One open own group per
    partner and community (asking again returns it)."""
    if member.tenant_id != principal.tenant_id or community.tenant_id != principal.tenant_id:
        raise NotFound(_("社群不存在"), details={"field": "community_id"})
    if not registry.has_privilege(principal.tenant_id, member.pk, community.pk, PARTNER_GROUP_PRIVILEGE):
        raise Forbidden(_("开自己的群需要合伙人等级"), details={"field": "community_id"})
    own = ChatGroup.objects.filter(tenant_id=principal.tenant_id, community=community, owner=member,
                                   is_active=True).first()
    if own is not None:
        return own
    if platform not in (Platform.TELEGRAM, Platform.MATRIX, Platform.WECOM):
        raise Invalid(_("未知的平台: %(v)s") % {"v": platform}, details={"field": "platform"})
    group = do_add_group(principal, community, platform=platform, external_id=external_id,
                         name=name or _("%(name)s 的群") % {"name": member.display_name or member.pk},
                         capacity=capacity)
    group.owner = member
    group.save(update_fields=["owner"])
    do_audit(principal, "group.partner_open", "ChatGroup", group.pk, data={"owner": member.pk})
    return group


def do_move_owned_groups(tenant_id: int, from_member_id: int, to_member_id: int) -> int:
    """Member merge: the merged member's own groups belong to the kept member."""
    return ChatGroup.objects.filter(tenant_id=tenant_id, owner_id=from_member_id).update(owner_id=to_member_id)
