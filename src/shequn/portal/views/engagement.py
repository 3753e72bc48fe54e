"""Check-in, lotteries and red packets."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import NotFound, ShequnError
from shequn.core.models import Tenant
from shequn.engagement import selectors as engagement_selectors
from shequn.engagement.models import LotteryEntry, RedPacketClaim
from shequn.engagement.services import do_check_in, do_claim_red_packet, do_enter_lottery
from shequn.members.models import Member

from ..auth import member_page
from ._common import (
    _err,
)

# --- check-in, lotteries, red packets -------------------------------------------------------------------


@member_page
def checkin(request: HttpRequest, tenant: Tenant, member: Member) -> HttpResponse:
    """Daily check-in (one per local day, engagement's rule) with streak, points and badges (earned
    ones with their date, the rest with the progress toward them)."""
    result = None
    if request.method == "POST":
        try:
            result = do_check_in(tenant.pk, member.pk, source="portal")
        except ShequnError as exc:
            _err(request, exc)
    stats = engagement_selectors.checkin_stats(tenant.pk, member.pk)
    badges = engagement_selectors.badge_progress(tenant.pk, member.pk, stats=stats)
    today = timezone.localdate()
    ctx = {"tenant": tenant, "member": member, "result": result, "stats": stats,
           "points": engagement_selectors.points_balance(tenant.pk, member.pk), "today": today,
           "earned": [b for b in badges if b["awarded_at"]],
           "next_badges": [b for b in badges if not b["awarded_at"]][:3],
           "new_badges": [b for b in badges if b["awarded_at"] and result is not None and result.created
                          and timezone.localdate(b["awarded_at"]) == today]}
    if request.headers.get("HX-Request"):
        return render(request, "portal/_checkin.html", ctx)
    return render(request, "portal/checkin.html", ctx)


def _lottery_or_404(tenant: Tenant, lottery_id: int) -> Any:
    try:
        return engagement_selectors.get_lottery(tenant.pk, lottery_id)
    except NotFound as exc:
        raise Http404 from exc


@member_page
def lottery(request: HttpRequest, tenant: Tenant, member: Member, lottery_id: int) -> HttpResponse:
    """Enter; see the seed commitment before the draw, the snapshot commitment after the close and the
    seed, winners and the verify command after the draw."""
    lot = _lottery_or_404(tenant, lottery_id)
    if request.method == "POST":
        try:
            do_enter_lottery(tenant.pk, lot.pk, member.pk, tickets=1)
            messages.success(request, _("报名成功, 开奖后在这里查看结果"))
        except ShequnError as exc:
            _err(request, exc)
        return HttpResponseRedirect(reverse("portal:lottery", args=[tenant.slug, lot.pk]))
    record = engagement_selectors.lottery_public_record(lot)
    me = f"m{member.pk}"
    names = {p["id"]: p["name"] for p in (record.get("snapshot") or {}).get("prizes", [])}
    won = [{**w, "prize_name": names.get(w.get("prize"), "")} for w in record.get("winners", [])
           if w.get("entrant") == me]
    entered = LotteryEntry.objects.filter(lottery=lot, member_id=member.pk).exists()
    return render(request, "portal/lottery.html", {
        "tenant": tenant, "member": member, "lot": lot, "record": record, "entered": entered, "won": won,
        "now": timezone.now(), "n_entries": LotteryEntry.objects.filter(lottery=lot).count(),
    })


@member_page
def lottery_record(request: HttpRequest, tenant: Tenant, member: Member, lottery_id: int) -> HttpResponse:
    """The public record as JSON, the input of ``shequn lottery verify FILE``."""

    lot = _lottery_or_404(tenant, lottery_id)
    body = json.dumps(engagement_selectors.lottery_public_record(lot), ensure_ascii=False, indent=2, default=str)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="lottery-{lot.pk}.json"'
    return response


@member_page
def red_packet(request: HttpRequest, tenant: Tenant, member: Member, packet_id: int) -> HttpResponse:
    try:
        packet = engagement_selectors.get_red_packet(tenant.pk, packet_id)
    except NotFound as exc:
        raise Http404 from exc
    if request.method == "POST":
        try:
            do_claim_red_packet(tenant.pk, packet.pk, member.pk)
        except ShequnError as exc:
            _err(request, exc)
        return HttpResponseRedirect(reverse("portal:red_packet", args=[tenant.slug, packet.pk]))
    claim = RedPacketClaim.objects.filter(packet=packet, member_id=member.pk).first()
    return render(request, "portal/red_packet.html", {"tenant": tenant, "member": member, "p": packet,
                                                      "claim": claim, "now": timezone.now()})


