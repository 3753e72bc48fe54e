"""The landing ``/r/<code>``, the portal home and a community's page with its entry threshold."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from shequn.commerce.models import TierGrant
from shequn.communities import selectors as community_selectors
from shequn.communities import services as community_services
from shequn.communities.models import ChatGroup, Community, JoinRequest
from shequn.core.errors import NotFound, ShequnError
from shequn.core.models import Tenant
from shequn.members.models import Member
from shequn.referrals.models import (
    InviteLink,
    LinkKind,
)
from shequn.referrals.services import do_record_click

from .. import auth, services
from ..auth import member_page
from ._common import (
    _active_tiers,
    _community_context,
    _err,
    _ref_link,
    communities_plain,
    member_counts,
)

# --- landing ---------------------------------------------------------------------------------------


def landing(request: HttpRequest, code: str) -> HttpResponse:
    """``/r/<code>``: an invite link, channel code or group live code. Records the click (with the
    signed-in member, which binds the referrer as the API's click does), remembers the code for the
    order's attribution, and shows the community, its threshold and the ways in."""
    link = InviteLink.objects.filter(code=code, is_active=True).select_related("community", "member").first()
    if link is None:
        raise Http404
    tenant = Tenant.objects.get(pk=link.tenant_id)
    member = auth.current_member(request, tenant)
    try:
        res = do_record_click(code, member_id=member.pk if member else None, ip=auth.client_ip(request),
                              device_id=auth.device_id(request))
    except NotFound as exc:
        raise Http404 from exc
    community = link.community
    if community is None:
        community = communities_plain(tenant.pk).first()
    ctx: dict[str, Any] = {"tenant": tenant, "member": member, "link": link,
                           "referrer": link.member.display_name if link.member and link.kind == LinkKind.MEMBER
                           else "", "group_full": link.kind == LinkKind.GROUP_LIVE and res.group is None}
    if community is not None:
        ctx.update(_community_context(tenant, member, community, group=res.group, link=link))
    response = render(request, "portal/landing.html", ctx)
    auth.remember_ref(request, response, code)
    auth.ensure_device(request, response)
    return response


# --- home and community ----------------------------------------------------------------------------


def home(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = auth.tenant_or_404(slug)
    member = auth.current_member(request, tenant)
    mine: list[Community] = []
    decided: list[JoinRequest] = []
    tiers: list[TierGrant] = []
    owned: list[ChatGroup] = []
    if member is not None:
        owned = list(community_selectors.owned_groups(tenant.pk, member.pk).filter(is_active=True))
        mine = [m.community for m in community_selectors.memberships(tenant.pk, member_id=member.pk, current=True)
                .select_related("community").order_by("pk")]
        tiers = list(_active_tiers(tenant.pk, member))
        decided = list(JoinRequest.objects.filter(member=member).exclude(status=JoinRequest.Status.PENDING)
                       .select_related("community").order_by("-pk")[:3])
    communities = list(communities_plain(tenant.pk).exclude(stage=Community.Stage.ARCHIVED))
    counts = member_counts(tenant.pk)
    for c in communities:
        c.member_count = counts.get(c.pk, 0)  # type: ignore[attr-defined]
    return render(request, "portal/home.html", {"tenant": tenant, "member": member, "mine": mine,
                                                "communities": communities, "tiers": tiers, "decided": decided,
                                                "owned": owned,
                                                "tab": "home"})


def community(request: HttpRequest, slug: str, community_id: int) -> HttpResponse:
    tenant = auth.tenant_or_404(slug)
    member = auth.current_member(request, tenant)
    try:
        comm = community_selectors.get_community(tenant.pk, community_id)
    except NotFound as exc:
        raise Http404 from exc
    ctx = {"tenant": tenant, "member": member,
           **_community_context(tenant, member, comm, link=_ref_link(request, tenant))}
    return render(request, "portal/community.html", ctx)


@require_POST
@member_page
def request_join(request: HttpRequest, tenant: Tenant, member: Member, community_id: int) -> HttpResponse:
    try:
        comm = community_selectors.get_community(tenant.pk, community_id)
        community_services.do_request_join(member, comm, invite_code=auth.ref_code(request),
                                 message=request.POST.get("message", ""))
        messages.success(request, _("申请已提交, 审核结果会显示在这里"))
    except NotFound as exc:
        raise Http404 from exc
    except ShequnError as exc:
        _err(request, exc)
    return HttpResponseRedirect(reverse("portal:community", args=[tenant.slug, community_id]))




@require_POST
@member_page
def open_group(request: HttpRequest, tenant: Tenant, member: Member, community_id: int) -> HttpResponse:
    """The partner tier's own group: the member registers the platform group they created."""
    try:
        comm = community_selectors.get_community(tenant.pk, community_id)
        community_services.do_open_partner_group(
            services.member_principal(member), member, comm, platform=request.POST.get("platform", ""),
            external_id=request.POST.get("external_id", "").strip(), name=request.POST.get("name", "").strip())
        messages.success(request, _("你的群已开通, 通过你的邀请链接进来的成员会进入这个群"))
    except NotFound as exc:
        raise Http404 from exc
    except ShequnError as exc:
        _err(request, exc)
    return HttpResponseRedirect(reverse("portal:community", args=[tenant.slug, community_id]))
