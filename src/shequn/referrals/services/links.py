"""Invite links and attribution: member links, channel codes and group live codes (群活码), clicks
and joins recorded as ``LinkEvent`` rows; a click or join by a known member binds them to the
link's referrer (:mod:`.binding`). Routing a group live code to the next group with room is
:func:`shequn.referrals.selectors.route_group_live`."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.communities.models import ChatGroup, Community
from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.models import Member
from shequn.members.selectors import check_member_level

from ..models import (
    InviteLink,
    LinkEvent,
    LinkEventKind,
    LinkKind,
    ReferralBinding,
)
from ..selectors import partner_group, route_group_live
from ._common import check_max_length
from .binding import try_bind


def _new_code() -> str:
    alphabet = "23456789abcdefghjkmnpqrstuvwxyz"
    return "".join(secrets.choice(alphabet) for _i in range(8))


@transaction.atomic
def do_get_or_create_link(
    principal: Principal,
    *,
    kind: str = LinkKind.MEMBER,
    member_id: int | None = None,
    community_id: int | None = None,
    campaign: str = "",
    channel: str = "",
    label: str = "",
    group_ids: list[int] | None = None,
) -> InviteLink:
    """The invite link for (kind, member, community, campaign, channel), created once. Campaign,
    channel and label longer than their columns are refused before anything is written."""
    tid = principal.tenant_id
    for name, value in (("campaign", campaign), ("channel", channel), ("label", label)):
        check_max_length(InviteLink, name, value)
    if kind not in LinkKind.values:
        raise Invalid(_("未知的链接类型: %(k)s") % {"k": kind}, details={"field": "kind"})
    if kind == LinkKind.MEMBER and not member_id:
        raise Invalid(_("会员邀请链接必须指定推荐人"), details={"field": "member_id"})
    if kind == LinkKind.CHANNEL and not channel:
        raise Invalid(_("渠道码必须填写渠道名称"), details={"field": "channel"})
    if kind == LinkKind.GROUP_LIVE and not community_id:
        raise Invalid(_("群活码必须指定社群"), details={"field": "community_id"})
    if member_id and not Member.objects.filter(tenant_id=tid, pk=member_id).exists():
        raise NotFound(_("会员不存在"), details={"field": "member_id"})
    if community_id and not Community.objects.filter(tenant_id=tid, pk=community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "community_id"})
    if group_ids:
        found = set(ChatGroup.objects.filter(tenant_id=tid, pk__in=group_ids, community_id=community_id or 0)
                    .values_list("pk", flat=True))
        missing = [g for g in group_ids if g not in found]
        if missing:
            raise Invalid(_("群不存在或不属于该社群: %(g)s") % {"g": missing}, details={"field": "group_ids"})
    lookup: dict[str, Any] = {"tenant_id": tid, "kind": kind, "member_id": member_id, "community_id": community_id,
              "campaign": campaign, "channel": channel}
    link = InviteLink.objects.filter(**lookup).first()
    if link is not None:
        return link
    for _attempt in range(5):
        try:
            with transaction.atomic():
                link = InviteLink.objects.create(**lookup, code=_new_code(), label=label, group_ids=group_ids or [])
            do_audit(principal, "referrals.link.create", "InviteLink", link.pk, data={"code": link.code})
            return link
        except IntegrityError:
            existing = InviteLink.objects.filter(**lookup).first()
            if existing is not None:
                return existing
    raise Conflict(_("生成短码失败, 请重试"))


@dataclass
class ClickResult:
    link: InviteLink
    group: ChatGroup | None = None
    binding: ReferralBinding | None = None
    refused: str = ""


@transaction.atomic
def do_record_click(code: str, *, member_id: int | None = None, ip: str | None = None, device_id: str = "",
                    now: datetime | None = None, link: InviteLink | None = None) -> ClickResult:
    """Attribute a click on ``code``; bind the clicking member (if known) per the tenant's policy; for
    a group live code, route to the next group with room; a partner's own link, to the partner's own
    group under that community (``ChatGroup.owner``). A ``member_id`` that is not the link's
    tenant's member is :class:`NotFound`. ``link``: the link of ``code`` a caller already read (the
    API reads it tenant-scoped first), so it is not read twice."""
    now = now or timezone.now()
    if link is None or link.code != code:
        link = InviteLink.objects.filter(code=code, is_active=True).first()
    if link is None or not link.is_active:
        raise NotFound(_("邀请链接不存在或已停用"), details={"field": "code"})
    result = ClickResult(link=link)
    if link.kind == LinkKind.GROUP_LIVE:
        result.group = route_group_live(link)
    elif link.kind == LinkKind.MEMBER and link.member_id and link.community_id:
        # a partner's link leads to the partner's own group (the partner tier's own-group right)
        result.group = partner_group(link)
    if member_id:  # another tenant's member (or none): never attributed, not silently dropped
        check_member_level(link.tenant_id, member_id)  # one plain statement: the member is needed only to bind
    LinkEvent.objects.create(tenant_id=link.tenant_id, link=link, kind=LinkEventKind.CLICK, member_id=member_id or None,
                             group=result.group, ip=ip or None, device_id=device_id[:128], occurred_at=now)
    if member_id and link.member_id:
        member = Member.objects.get(tenant_id=link.tenant_id, pk=member_id)
        result.binding, result.refused = try_bind(link.tenant_id, member, link.member_id, link=link, now=now)
    return result


@transaction.atomic
def do_record_join(tenant_id: int, *, member_id: int, code: str, group_id: int | None = None,
                   now: datetime | None = None) -> LinkEvent:
    """Attribute a join (member entered a community/group through ``code``) and bind."""
    now = now or timezone.now()
    link = InviteLink.objects.filter(tenant_id=tenant_id, code=code).first()
    if link is None:
        raise NotFound(_("邀请链接不存在"), details={"field": "code"})
    member = Member.objects.filter(tenant_id=tenant_id, pk=member_id).first()
    if member is None:
        raise NotFound(_("会员不存在"), details={"field": "member_id"})
    last_click = (LinkEvent.objects.filter(tenant_id=tenant_id, member=member, kind=LinkEventKind.CLICK)
                  .order_by("-occurred_at").first())
    event = LinkEvent.objects.create(
        tenant_id=tenant_id, link=link, kind=LinkEventKind.JOIN, member=member, group_id=group_id,
        ip=last_click.ip if last_click else None, device_id=last_click.device_id if last_click else "",
        occurred_at=now,
    )
    if link.member_id:
        try_bind(tenant_id, member, link.member_id, link=link, now=now)
    return event
