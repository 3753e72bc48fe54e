"""Tenant-scoped reads of members."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.utils.translation import gettext as _

from shequn.core.errors import Invalid, NotFound

from .models import Identity, Member, Tag


def check_member(tenant_id: int, member_id: Any, field: str = "member_id") -> Member:
    """The tenant's member — the one check every engine runs on a member id it is given. An id that
    is not an integer is :class:`Invalid`; an unknown id, or another tenant's, is :class:`NotFound`;
    both name ``field``."""
    _check_member_id(member_id, field)
    member = Member.objects.filter(tenant_id=tenant_id, pk=member_id).first()
    if member is None:
        raise NotFound(_("会员不存在"), details={"field": field})
    return member


def _check_member_id(member_id: Any, field: str) -> None:
    if not isinstance(member_id, int) or isinstance(member_id, bool):
        raise Invalid(_("会员 ID 必须是整数"), details={"field": field})


def check_member_level(tenant_id: int, member_id: Any, field: str = "member_id") -> int:
    """:func:`check_member` for a hot path that needs only the member's relationship level: one
    prepared-shape statement, no model built (the same errors, naming ``field``)."""
    _check_member_id(member_id, field)
    with connection.cursor() as cur:
        cur.execute(_LEVEL_SQL, [member_id, tenant_id])
        row = cur.fetchone()
    if row is None:
        raise NotFound(_("会员不存在"), details={"field": field})
    return int(row[0])


_LEVEL_SQL = f"SELECT relationship_level FROM {Member._meta.db_table} WHERE id = %s AND tenant_id = %s"  # noqa: S608


def members(tenant_id: int, *, include_merged: bool = False) -> QuerySet[Member]:
    qs = Member.objects.filter(tenant_id=tenant_id)
    return qs if include_merged else qs.filter(merged_into__isnull=True)


def get_member(tenant_id: int, member_id: int) -> Member:
    member = Member.objects.filter(tenant_id=tenant_id, pk=member_id).first()
    if member is None:
        raise NotFound(_("会员不存在"), details={"member_id": member_id})
    return member


def search_members(
    tenant_id: int, *, q: str = "", tag: str = "", lifecycle: str = "", community_id: int | None = None,
    role: str = "", relationship_level: int | None = None,
) -> QuerySet[Member]:
    qs = members(tenant_id)
    if q:
        qs = qs.filter(Q(display_name__icontains=q) | Q(phone=q) | Q(identities__external_id=q))
    if tag:
        qs = qs.filter(member_tags__tag__name=tag)
    if lifecycle:
        qs = qs.filter(lifecycle_stage=lifecycle)
    if relationship_level is not None:
        qs = qs.filter(relationship_level=relationship_level)
    if community_id is not None:
        qs = qs.filter(memberships__community_id=community_id, memberships__left_at__isnull=True)
    if role:
        qs = qs.filter(roles__role=role, roles__until__isnull=True)
    return qs.distinct()


def identities(tenant_id: int, member_id: int) -> QuerySet[Identity]:
    return Identity.objects.filter(tenant_id=tenant_id, member_id=member_id).order_by("platform", "id")


def member_by_identity(tenant_id: int, platform: str, external_id: str) -> Member | None:
    identity = Identity.objects.filter(tenant_id=tenant_id, platform=platform, external_id=external_id).select_related(
        "member"
    ).first()
    if identity is None:
        return None
    member = identity.member
    while member.merged_into_id is not None:
        member = Member.objects.get(pk=member.merged_into_id)
    return member


def tags(tenant_id: int) -> QuerySet[Tag]:
    return Tag.objects.filter(tenant_id=tenant_id).order_by("scope", "name")


def tag_names(tenant_id: int, member_id: int) -> list[str]:
    qs = Tag.objects.filter(tenant_id=tenant_id, member_tags__member_id=member_id)
    return list(qs.values_list("name", flat=True))


def merge_suggestions(tenant_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """Pairs of members that share an exact phone number or e-mail (never fuzzy names: Chinese
    nicknames collide far too often). Suggestions only; merging is an explicit operator action."""
    out: list[dict[str, Any]] = []
    for field in ("phone", "email"):
        dupes = (
            members(tenant_id).exclude(**{field: ""}).values(field).annotate(n=Count("id")).filter(n__gt=1)
            .order_by(field)[:limit]
        )
        for row in dupes:
            ids = list(members(tenant_id).filter(**{field: row[field]}).order_by("pk").values_list("pk", flat=True))
            out.append({"reason": field, "member_ids": ids})
    return out[:limit]
