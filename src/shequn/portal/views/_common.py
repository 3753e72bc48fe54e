"""Helpers the members' pages share: the acting principal, the safe return address, a community's
facts and ways in, the member's own order."""

from __future__ import annotations

import secrets
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.contrib import messages
from django.core.cache import cache
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy

from shequn.commerce import selectors as commerce_selectors
from shequn.commerce.models import Order, Product, ProductKind, TierGrant
from shequn.communities import registry as communities_registry
from shequn.communities import selectors as community_selectors
from shequn.communities.models import ChatGroup, Community, CommunityRole, JoinRequest
from shequn.communities.services import PARTNER_GROUP_PRIVILEGE
from shequn.connectors.models import QrConfig
from shequn.core.errors import ShequnError
from shequn.core.models import Platform, Tenant
from shequn.members.models import Member
from shequn.referrals.models import InviteLink

from .. import auth, services
from ..models import JoinWay

# --- helpers ---------------------------------------------------------------------------------------


def _principal(member: Member) -> Any:
    return services.member_principal(member)


def _next_url(request: HttpRequest, tenant: Tenant) -> str:
    nxt = request.POST.get("next") or request.GET.get("next") or ""
    if nxt and url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}):
        return nxt
    return reverse("portal:home", args=[tenant.slug])


def _has_access(tenant_id: int, member: Member | None, community: Community) -> bool:
    if member is None:
        return False
    return community_selectors.memberships(tenant_id, community_id=community.pk, member_id=member.pk,
                                           current=True).exists()


#: member counts on the pages may lag this many seconds (a distinct count over every membership is
#: the dearest read of the landing, home and community pages at 100k members)
MEMBER_COUNT_TTL = 60


def member_counts(tenant_id: int) -> dict[int, int]:
    """Current members per community (distinct), computed at most once a minute per tenant (the
    project's cache: Redis when configured, else per process)."""
    key = f"portal:member-counts:{tenant_id}"
    counts: dict[int, int] | None = cache.get(key)
    if counts is None:
        counts = dict(community_selectors.memberships(tenant_id, current=True).values("community_id")
                      .annotate(n=Count("member_id", distinct=True)).values_list("community_id", "n"))
        cache.set(key, counts, MEMBER_COUNT_TTL)
    return counts


def _member_count(tenant_id: int, community: Community) -> int:
    return member_counts(tenant_id).get(community.pk, 0)


def active_groups(tenant_id: int, community_id: int) -> list[ChatGroup]:
    """The community's active groups, without the per-group member counts the console's selector adds."""
    return list(ChatGroup.objects.filter(tenant_id=tenant_id, community_id=community_id, is_active=True).order_by("pk"))


def communities_plain(tenant_id: int) -> QuerySet[Community]:
    """The tenant's communities without the member-count aggregate (see :func:`member_counts`)."""
    return Community.objects.filter(tenant_id=tenant_id).order_by("pk")


def _owner_name(tenant_id: int, community: Community) -> str:
    row = (community_selectors.roles(tenant_id, community_id=community.pk).filter(role=CommunityRole.OWNER)
           .select_related("member").order_by("since").first())
    return row.member.display_name if row else ""


PRIVILEGES = {
    "courses": gettext_lazy("课程"), "free_courses": gettext_lazy("全部课程免费"),
    "may_create_groups": gettext_lazy("可自建群"), "member_price": gettext_lazy("会员价购物"),
}


def _tiers(tenant_id: int, community: Community) -> list[Product]:
    """The community's active paid tiers with their SKUs (two queries: no member prices or
    visibility, which tiers do not use)."""
    tiers = list(Product.objects.filter(tenant_id=tenant_id, is_active=True, kind=ProductKind.TIER,
                                        tier_community_id=community.pk)
                 .prefetch_related("skus").order_by("tier_rank", "pk"))
    for p in tiers:  # privileges in words: only those granted, known keys translated
        p.privilege_list = [  # type: ignore[attr-defined]
            str(PRIVILEGES.get(k, k)) + ("" if v is True else f": {v}") for k, v in (p.tier_privileges or {}).items()
            if v not in (False, None, "")]
    return tiers


def _active_tiers(tenant_id: int, member: Member) -> QuerySet[TierGrant]:
    now = timezone.now()
    return (commerce_selectors.tier_history(tenant_id, member.pk)
            .filter(status=TierGrant.Status.ACTIVE, starts_at__lte=now).select_related("product", "community"))


def _matrix_link(external_id: str) -> str:
    return f"https://matrix.to/#/{external_id}" if external_id[:1] in "!#" else ""


def join_ways(tenant_id: int, groups: list[ChatGroup], link: InviteLink | None = None) -> list[dict[str, Any]]:
    """Per group, how to enter it on its platform: an operator-set join way first, then what the
    platform gives without one (a Telegram invite link the bot makes for the invite code that brought
    the member, so the join is attributed; a Matrix room link; a WeCom 加入群聊 QR that includes the
    group)."""
    custom = {w.group_id: w for w in JoinWay.objects.filter(tenant_id=tenant_id, group__in=groups)}
    wecom_ids = [g.external_id for g in groups if g.platform == Platform.WECOM]
    qr_for: dict[str, str] = {}
    if wecom_ids:
        for qr in QrConfig.objects.filter(tenant_id=tenant_id, kind=QrConfig.Kind.JOIN_WAY).exclude(qr_code=""):
            for chat_id in qr.chat_ids or []:
                qr_for.setdefault(str(chat_id), qr.qr_code)
    out = []
    for g in groups:
        way = custom.get(g.pk)
        url = ""
        if g.platform == Platform.TELEGRAM and link is not None:
            url = services.do_get_telegram_invite(link, g)
        url = url or (way.url if way else "")
        qr_image = way.qr_image_url if way else ""
        if not url and g.platform == Platform.MATRIX:
            url = _matrix_link(g.external_id)
        if not qr_image and g.platform == Platform.WECOM:
            qr_image = qr_for.get(g.external_id, "")
        out.append({"group": g, "platform": g.get_platform_display(), "url": url, "qr_image": qr_image,
                    "note": way.note if way else ""})
    return out


def _community_context(tenant: Tenant, member: Member | None, community: Community,
                       group: ChatGroup | None = None, link: InviteLink | None = None) -> dict[str, Any]:
    access = _has_access(tenant.pk, member, community)
    threshold = community.entry_threshold
    groups = [group] if group is not None else active_groups(tenant.pk, community.pk)
    ways = join_ways(tenant.pk, groups, link) if (access or threshold == Community.EntryThreshold.FREE) else []
    pending = None
    if member is not None and threshold == Community.EntryThreshold.APPROVAL:
        pending = (JoinRequest.objects.filter(member=member, community=community, group__isnull=True)
                   .order_by("-pk").first())
    return {
        "community": community, "member_count": _member_count(tenant.pk, community),
        "owner_name": _owner_name(tenant.pk, community),
        "tiers": [] if access else _tiers(tenant.pk, community),  # shown only to those without access
        "access": access, "ways": ways, "threshold": threshold, "join_request": pending,
        **_own_group_context(tenant.pk, member, community),
        "token": secrets.token_urlsafe(12),
    }


def _own_group_context(tenant_id: int, member: Member | None, community: Community) -> dict[str, Any]:
    """The partner's own group (shown to its owner) or the button to open it (the tier privilege)."""
    if member is None:
        return {"own_group": None, "can_open_group": False}
    own = community_selectors.owned_groups(tenant_id, member.pk).filter(community=community, is_active=True).first()
    can = own is None and communities_registry.has_privilege(tenant_id, member.pk, community.pk,
                                                             PARTNER_GROUP_PRIVILEGE)
    return {"own_group": own, "can_open_group": can}


def _ref_link(request: HttpRequest, tenant: Tenant) -> InviteLink | None:
    """The invite link that brought this browser (the ``shequn_ref`` cookie), if it is this tenant's."""
    code = auth.ref_code(request)
    if not code:
        return None
    return InviteLink.objects.filter(tenant_id=tenant.pk, code=code, is_active=True).first()


def _err(request: HttpRequest, exc: ShequnError) -> None:
    messages.error(request, exc.message)


def _own_order(tenant: Tenant, member: Member, order_id: int) -> Order:
    order = commerce_selectors.orders(tenant.pk, member_id=member.pk).filter(pk=order_id).first()
    if order is None:
        raise Http404
    return order


def _yuan_to_fen(raw: str) -> int | None:
    try:
        value = Decimal(str(raw).strip().replace("¥", "").replace(",", ""))
    except InvalidOperation:
        return None
    if not value.is_finite() or value <= 0:
        return None
    return int((value * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _default_community(tenant: Tenant, member: Member) -> Community | None:
    grant = _active_tiers(tenant.pk, member).order_by("-pk").first()
    if grant is not None:
        return grant.community
    ms = (community_selectors.memberships(tenant.pk, member_id=member.pk, current=True)
          .select_related("community").order_by("pk").first())
    if ms is not None:
        return ms.community
    return communities_plain(tenant.pk).first()


