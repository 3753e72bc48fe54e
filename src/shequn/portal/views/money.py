"""My invite (link, QR, poster) and my earnings with withdrawals."""

from __future__ import annotations

import secrets
from decimal import Decimal

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from shequn.core.errors import ShequnError
from shequn.core.models import Platform, Tenant
from shequn.members.models import Member
from shequn.referrals import selectors as referral_selectors
from shequn.referrals.models import (
    BuyerStat,
    CommissionState,
    InviteLink,
    LinkKind,
    ReferralBinding,
    Withdrawal,
    WithdrawalStatus,
)
from shequn.referrals.posters import poster_png, qr_png
from shequn.referrals.services import do_get_or_create_link, do_request_withdrawal, get_policy

from ..auth import member_page
from ._common import (
    _default_community,
    _err,
    _principal,
    _yuan_to_fen,
)

# --- invite ----------------------------------------------------------------------------------------


def _my_link(tenant: Tenant, member: Member, community_id: int | None) -> InviteLink:
    return do_get_or_create_link(_principal(member), kind=LinkKind.MEMBER, member_id=member.pk,
                                 community_id=community_id)


#: the newest people I brought shown on the page (with the total): a phone page, not a report
BROUGHT_SHOWN = 50


@member_page
def invite(request: HttpRequest, tenant: Tenant, member: Member) -> HttpResponse:
    comm = _default_community(tenant, member)
    link = _my_link(tenant, member, comm.pk if comm else None)
    mine = ReferralBinding.objects.filter(tenant_id=tenant.pk, referrer_id=member.pk)
    # the newest first, then their names by id: joining members into the sort makes PostgreSQL hash
    # every member of the tenant (80 ms at 100k) for 50 rows
    brought = list(mine.order_by("-bound_at")[:BROUGHT_SHOWN])
    names = dict(Member.objects.filter(tenant_id=tenant.pk, pk__in=[b.member_id for b in brought])
                 .values_list("pk", "display_name"))
    paid = set(BuyerStat.objects.filter(tenant_id=tenant.pk, member_id__in=[b.member_id for b in brought],
                                        paid_orders__gt=0).values_list("member_id", flat=True))
    now = timezone.now()
    people = [{"name": names.get(b.member_id, ""), "bound_at": b.bound_at, "paid": b.member_id in paid,
               "active": b.expires_at is None or b.expires_at > now} for b in brought]
    return render(request, "portal/invite.html", {
        "tenant": tenant, "member": member, "link": link, "url": referral_selectors.link_url(link),
        "community": comm, "people": people, "stats": referral_selectors.link_stats(tenant.pk, link.pk),
        "brought_total": len(brought) if len(brought) < BROUGHT_SHOWN else mine.count(),
        "tab": "invite",
    })


def _own_link(tenant: Tenant, member: Member, code: str) -> InviteLink:
    link = referral_selectors.links_for(tenant.pk, member.pk).filter(code=code).select_related("community").first()
    if link is None:
        raise Http404
    return link


@member_page
def invite_qr(request: HttpRequest, tenant: Tenant, member: Member, code: str) -> HttpResponse:
    link = _own_link(tenant, member, code)
    return HttpResponse(qr_png(referral_selectors.link_url(link)), content_type="image/png")


@member_page
def invite_poster(request: HttpRequest, tenant: Tenant, member: Member, code: str) -> HttpResponse:
    link = _own_link(tenant, member, code)
    png = poster_png(url=referral_selectors.link_url(link), member_name=member.display_name,
                     community_name=link.community.name if link.community else tenant.name)
    response = HttpResponse(png, content_type="image/png")
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="invite-{link.code}.png"'
    return response


# --- earnings and withdrawals ------------------------------------------------------------------------


@member_page
def earnings(request: HttpRequest, tenant: Tenant, member: Member) -> HttpResponse:
    st = referral_selectors.member_statement(tenant.pk, member.pk)
    policy = get_policy(tenant.pk)
    for ln in st.lines:
        ln["state_label"] = CommissionState(ln["state"]).label if ln["state"] in CommissionState.values else ln["state"]
    for w in st.withdrawals:
        w["status_label"] = (WithdrawalStatus(w["status"]).label if w["status"] in WithdrawalStatus.values
                             else w["status"])
    return render(request, "portal/earnings.html", {
        "tenant": tenant, "member": member, "st": st, "policy": policy, "token": secrets.token_urlsafe(12),
        "fee_pct": Decimal(policy.withdrawal_fee_bps) / 100, "tab": "earnings",
        "available_yuan": f"{st.available_fen / 100:.2f}" if st.available_fen > 0 else "",
    })


@require_POST
@member_page
def withdraw(request: HttpRequest, tenant: Tenant, member: Member) -> HttpResponse:
    amount = _yuan_to_fen(request.POST.get("amount", ""))
    if amount is None:
        messages.error(request, _("请输入正确的提现金额"))
        return HttpResponseRedirect(reverse("portal:earnings", args=[tenant.slug]))
    token = request.POST.get("token", "")[:64] or secrets.token_urlsafe(12)
    wecom = member.identities.filter(platform=Platform.WECOM).values_list("external_id", flat=True).first()
    payee = wecom or f"member:{member.pk}"
    try:
        w = do_request_withdrawal(_principal(member), member_id=member.pk, amount_fen=amount,
                                  idempotency_key=f"portal:{member.pk}:{token}", payee=payee)
    except ShequnError as exc:
        _err(request, exc)
        return HttpResponseRedirect(reverse("portal:earnings", args=[tenant.slug]))
    messages.success(request, _("提现申请已提交"))
    return HttpResponseRedirect(reverse("portal:withdrawal", args=[tenant.slug, w.pk]))


@member_page
def withdrawal_detail(request: HttpRequest, tenant: Tenant, member: Member, withdrawal_id: int) -> HttpResponse:
    w = Withdrawal.objects.filter(tenant_id=tenant.pk, member_id=member.pk, pk=withdrawal_id).first()
    if w is None:
        raise Http404
    trail = [{"at": e.at, "note": e.note,
              "status": WithdrawalStatus(e.to_status).label if e.to_status in WithdrawalStatus.values else e.to_status}
             for e in w.trail.order_by("pk")]
    return render(request, "portal/withdrawal.html", {"tenant": tenant, "member": member, "w": w, "trail": trail,
                                                      "net_fen": w.amount_fen - w.fee_fen, "tab": "earnings"})


