"""Reads of the referrals app, always scoped by ``tenant_id``: links, member statements, operator
reports (K-factor per campaign, top referrers), fraud review queue, and the read-only parts of the
rules the services apply (group live-code routing, active binding, plan risk notes, valid referrals,
withdrawal fee). Nothing here writes; ``services`` import from here, never the reverse."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.communities.models import ChatGroup
from shequn.core.errors import NotFound
from shequn.ledger.models import AccountKind
from shequn.ledger.selectors import account_balance
from shequn.members.models import Member

from . import leaderboard
from .models import (
    Commission,
    CommissionPlan,
    CommissionState,
    FraudSignal,
    FraudStatus,
    InviteLink,
    LinkEvent,
    LinkEventKind,
    RateMode,
    ReferralBinding,
    ReferralPolicy,
    Withdrawal,
)


def public_base_url() -> str:
    return str(getattr(settings, "SHEQUN", {}).get("PUBLIC_BASE_URL") or "http://127.0.0.1:8000").rstrip("/")


def link_url(link: InviteLink) -> str:
    return f"{public_base_url()}/r/{link.code}"


def link_get(tenant_id: int, code: str) -> InviteLink:
    link = InviteLink.objects.filter(tenant_id=tenant_id, code=code).select_related("member", "community").first()
    if link is None:
        raise NotFound(_("邀请链接不存在"), details={"field": "code"})
    return link


def links_for(tenant_id: int, member_id: int | None = None) -> QuerySet[InviteLink]:
    qs = InviteLink.objects.filter(tenant_id=tenant_id)
    if member_id is not None:
        qs = qs.filter(member_id=member_id)
    return qs.order_by("-pk")


def link_stats(tenant_id: int, link_id: int) -> dict[str, int]:
    rows = (LinkEvent.objects.filter(tenant_id=tenant_id, link_id=link_id).values("kind")
            .annotate(n=Count("pk")))
    out = dict.fromkeys(LinkEventKind.values, 0)
    out.update({r["kind"]: r["n"] for r in rows})
    return out


@dataclass(frozen=True)
class Statement:
    member_id: int
    pending_fen: int
    available_fen: int
    withdrawing_fen: int
    paid_out_fen: int
    debt_fen: int
    lines: list[dict[str, Any]]
    withdrawals: list[dict[str, Any]]


def check_member(tenant_id: int, member_id: int) -> None:
    """:class:`NotFound` unless the member is the tenant's (another tenant's id is not found)."""
    if not Member.objects.filter(tenant_id=tenant_id, pk=member_id).exists():
        raise NotFound(_("会员不存在"), details={"field": "member_id"})


def member_statement(tenant_id: int, member_id: int, limit: int = 200) -> Statement:
    """What a member earned, from whom (buyer nickname), how much, and when it becomes available."""
    check_member(tenant_id, member_id)
    lines = [
        {"commission_id": c.pk, "order_id": c.order_id, "from": c.buyer_name, "product_id": c.product_id,
         "amount_fen": c.amount_fen, "reversed_fen": c.reversed_fen, "state": c.state,
         "paid_at": c.paid_at, "available_at": c.available_at or c.thaw_at,
         "payer_tenant_id": c.payer_tenant_id, "alliance": bool(c.alliance_id)}
        for c in Commission.objects.filter(tenant_id=tenant_id, referrer_id=member_id).order_by("-pk")[:limit]
    ]
    wqs = Withdrawal.objects.filter(tenant_id=tenant_id, member_id=member_id).order_by("-pk")
    withdrawals: list[dict[str, Any]] = [
        dict(row) for row in wqs.values("id", "amount_fen", "fee_fen", "status", "requested_at")[:50]]

    def b(kind: str) -> int:
        return account_balance(tenant_id, "member", member_id, kind)

    return Statement(member_id, b(AccountKind.COMMISSION_PENDING), b(AccountKind.AVAILABLE),
                     b(AccountKind.WITHDRAWING), b(AccountKind.PAID_OUT), -min(b(AccountKind.CLAWBACK), 0),
                     lines, withdrawals)


def kfactor_report(tenant_id: int) -> list[dict[str, Any]]:
    """Per campaign: sharers (members whose link got a click), invites (clicks), joins, payers
    (distinct buyers through a link) and K = payers / sharers."""
    rows = (
        LinkEvent.objects.filter(tenant_id=tenant_id).values("link__campaign")
        .annotate(
            invites=Count("pk", filter=Q(kind=LinkEventKind.CLICK)),
            joins=Count("member", filter=Q(kind=LinkEventKind.JOIN), distinct=True),
            payers=Count("member", filter=Q(kind=LinkEventKind.PURCHASE), distinct=True),
            sharers=Count("link__member", filter=Q(kind=LinkEventKind.CLICK), distinct=True),
            revenue_fen=Sum("amount_fen", filter=Q(kind=LinkEventKind.PURCHASE)),
        ).order_by("link__campaign")
    )
    out = []
    for r in rows:
        sharers = r["sharers"] or 0
        out.append({"campaign": r["link__campaign"], "invites": r["invites"], "joins": r["joins"],
                    "payers": r["payers"], "sharers": sharers, "revenue_fen": r["revenue_fen"] or 0,
                    "k_factor": round(r["payers"] / sharers, 3) if sharers else 0.0})
    return out


def top_referrers(tenant_id: int, n: int = 20, metric: str = "referrals", scope: str = "all",
                  period: str = "all") -> list[dict[str, Any]]:
    rows = leaderboard.top(tenant_id, metric, scope, period, n)
    names = dict(Member.objects.filter(tenant_id=tenant_id, pk__in=[r.member_id for r in rows])
                 .values_list("pk", "display_name"))
    return [{"rank": r.rank, "member_id": r.member_id, "name": names.get(r.member_id, ""), "value": r.value}
            for r in rows]


def open_signals(tenant_id: int) -> QuerySet[FraudSignal]:
    return FraudSignal.objects.filter(tenant_id=tenant_id, status=FraudStatus.OPEN).order_by("-pk")


def withdrawals_for(tenant_id: int, status: str | None = None) -> QuerySet[Withdrawal]:
    qs = Withdrawal.objects.filter(tenant_id=tenant_id)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-pk")


def partner_group(link: InviteLink) -> ChatGroup | None:
    """The active group the link's member owns under the link's community (a partner's own group,
    ``communities.do_open_partner_group``): whoever comes through the partner's link lands there."""
    if not link.member_id or not link.community_id:
        return None
    return (ChatGroup.objects.filter(tenant_id=link.tenant_id, community_id=link.community_id,
                                     owner_id=link.member_id, is_active=True).order_by("pk").first())


def route_group_live(link: InviteLink) -> ChatGroup | None:
    """The next group with room for a group live code (群活码): groups in id order, first one whose
    open memberships are below its capacity."""
    groups = ChatGroup.objects.filter(tenant_id=link.tenant_id, community_id=link.community_id or 0, is_active=True)
    if link.group_ids:
        groups = groups.filter(pk__in=link.group_ids)
    groups = groups.annotate(
        open_n=Count("memberships", filter=Q(memberships__left_at__isnull=True))
    ).order_by("pk")
    for group in groups:
        if group.open_n < group.capacity:
            return group
    return None


def active_binding(tenant_id: int, member_id: int, now: datetime | None = None) -> ReferralBinding | None:
    now = now or timezone.now()
    return (ReferralBinding.objects.filter(tenant_id=tenant_id, member_id=member_id)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)).first())


def plans(tenant_id: int) -> QuerySet[CommissionPlan]:
    """The tenant's commission plans with their rules."""
    return CommissionPlan.objects.filter(tenant_id=tenant_id).prefetch_related("rules")


def plan_warnings(plan: CommissionPlan) -> list[str]:
    """Risk notes shown to the operator next to a plan."""
    out: list[str] = []
    rules = list(plan.rules.all())
    kinds = {r.product_kind for r in rules}
    if rules and kinds == {"tier"}:
        out.append(_("该方案只对会员费/入群费计佣, 收入主要来自拉人头交纳的入门费, 接近《禁止传销条例》"
                     "第七条所列特征; 请确保会员费对应真实的商品或服务, 并考虑对商品销售计佣"))
    if plan.refund_window_days == 0:
        out.append(_("冻结期为 0: 佣金即时可提现; 若订单随后退款, 已提现的佣金只能从今后的佣金中抵扣(追回风险)"))
    if any(r.mode == RateMode.PERCENT and r.rate_bps >= 10000 for r in rules):
        out.append(_("佣金比例为 100%: 该商品的收入全部付给推荐人"))
    return out


def buyer_fingerprint(tenant_id: int, member_id: int) -> tuple[str | None, str]:
    """The IP and device of the member's latest click (fraud checks and purchase attribution)."""
    click = (LinkEvent.objects.filter(tenant_id=tenant_id, member_id=member_id, kind=LinkEventKind.CLICK)
             .order_by("-occurred_at").values_list("ip", "device_id").first())
    return (click[0], click[1]) if click else (None, "")


def valid_referrals(tenant_id: int, referrer_id: int, community_id: int | None = None, campaign: str = "") -> int:
    """Distinct paying referees whose commissions are not fully reversed."""
    qs = Commission.objects.filter(tenant_id=tenant_id, referrer_id=referrer_id).exclude(
        state__in=[CommissionState.VOID, CommissionState.CLAWED_BACK]).exclude(referrer_id=F("buyer_id"))
    if community_id:
        qs = qs.filter(community_id_snapshot=community_id)
    if campaign:
        qs = qs.filter(campaign=campaign)
    return qs.values("buyer_id").distinct().count()


def withdrawal_fee(policy: ReferralPolicy, amount_fen: int) -> int:
    return policy.withdrawal_fee_fixed_fen + amount_fen * policy.withdrawal_fee_bps // 10000
