"""Paid community tiers: granting a tier when its order is paid (a TierGrant row and an open
membership with join_source "purchase", through :func:`shequn.communities.services.do_join`), revoking
it on a full refund, expiring it, and seeding a community's two standard tiers.

A membership opened by a purchase is closed (:func:`shequn.communities.services.do_leave`) only when
no active grant for that community keeps it open."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.communities.models import JoinSource, Membership
from shequn.communities.services import do_join, do_leave
from shequn.core.errors import NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.models import Member

from ..models import Order, OrderLine, Product, ProductKind, Refund, TierGrant, TierInvitation
from .catalog import NewProduct, do_create_product

TIER_SEEDS = (
    {"code": "entry", "name": "入门社群", "price_fen": 1990, "rank": 1, "days": 365,
     "privileges": {"courses": "entry", "may_create_groups": False}},
    {"code": "partner", "name": "合伙人社群", "price_fen": 199900, "rank": 2, "days": 365,
     "privileges": {"free_courses": True, "may_create_groups": True, "member_price": True}},
)


@transaction.atomic
def do_seed_tiers(principal: Principal, community_id: int) -> list[Product]:
    """The seeds' two paid tiers: entry (19.9 yuan) and partner (1999 yuan). Idempotent."""
    out: list[Product] = []
    for seed in TIER_SEEDS:
        existing = Product.objects.filter(tenant_id=principal.tenant_id, kind=ProductKind.TIER,
                                          tier_community_id=community_id, tier_code=seed["code"]).first()
        if existing:
            out.append(existing)
            continue
        out.append(do_create_product(principal, NewProduct(
            name=str(seed["name"]), kind=ProductKind.TIER, tier_community_id=community_id,
            tier_code=str(seed["code"]), tier_rank=int(str(seed["rank"])),
            tier_privileges=dict(seed["privileges"]),  # type: ignore[call-overload]
            tier_duration_days=int(str(seed["days"])),
            skus=[{"code": f"tier-{community_id}-{seed['code']}", "name": str(seed["name"]),
                   "price_fen": seed["price_fen"], "stock": 1_000_000}],
        )))
    return out


def _grant_tiers(order: Order, now: dt.datetime) -> None:
    """Each paid tier line opens (or renews) the member's tier: a new TierGrant row starting when the
    current one ends, and an open community membership with join_source "purchase"."""
    system = Principal.system(order.tenant_id, "tiers")
    lines = OrderLine.objects.filter(order=order, product_kind=ProductKind.TIER).select_related(
        "product__tier_community", "order__member")
    for ln in lines:
        p = ln.product
        community = p.tier_community
        if p.tier_community_id is None or community is None:
            continue
        current = (TierGrant.objects.filter(member_id=order.member_id, product=p, status=TierGrant.Status.ACTIVE)
                   .order_by("-expires_at").first())
        starts = now
        if current is not None and current.expires_at is not None and current.expires_at > now:
            starts = current.expires_at
        expires = starts + dt.timedelta(days=p.tier_duration_days * ln.quantity) if p.tier_duration_days else None
        TierGrant.objects.create(
            tenant_id=order.tenant_id, member_id=order.member_id, product=p, community_id=p.tier_community_id,
            order=order, order_line=ln, privileges=p.tier_privileges, starts_at=starts, expires_at=expires,
        )
        # an open membership of the community already there (any source) is kept as it is
        do_join(system, ln.order.member, community, source=JoinSource.PURCHASE, joined_at=now)


def _close_tier_membership(tenant_id: int, member_id: int, community_id: int, now: dt.datetime, reason: str) -> None:
    still = TierGrant.objects.filter(member_id=member_id, community_id=community_id, status=TierGrant.Status.ACTIVE)
    if still.exists():
        return
    system = Principal.system(tenant_id, "tiers")
    for membership in Membership.objects.select_for_update().filter(
        tenant_id=tenant_id, member_id=member_id, community_id=community_id, group__isnull=True,
        left_at__isnull=True, join_source=JoinSource.PURCHASE,
    ):
        do_leave(system, membership, reason=reason, left_at=now)


def _revoke_tiers_for_refund(order: Order, allocation: Mapping[int, int]) -> None:
    """A refund that covers a tier line in full revokes that grant (and the membership, when no other
    grant keeps it)."""
    now = timezone.now()
    for ln in OrderLine.objects.filter(order=order, product_kind=ProductKind.TIER):
        refunded = int(Refund.objects.filter(order=order, order_line=ln, status=Refund.Status.SUCCEEDED)
                       .aggregate(s=Sum("amount_fen"))["s"] or 0)
        whole = order.refunded_fen >= order.paid_fen
        if not whole and refunded < ln.amount_fen:
            continue
        for g in TierGrant.objects.filter(order_line=ln, status=TierGrant.Status.ACTIVE):
            g.status = TierGrant.Status.REVOKED
            g.ended_at = now
            g.save(update_fields=["status", "ended_at"])
            do_audit(Principal.system(order.tenant_id, "tiers"), "commerce.tier.revoked", "TierGrant", g.pk,
                     data={"order_id": order.pk})
            _close_tier_membership(order.tenant_id, g.member_id, g.community_id, now, _("付费等级退款"))


def do_expire_tiers(now: dt.datetime | None = None) -> int:
    """Expire grants past their end; close memberships no grant keeps open (scheduled)."""
    now = now or timezone.now()
    n = 0
    for g in TierGrant.objects.filter(status=TierGrant.Status.ACTIVE, expires_at__lte=now):
        with transaction.atomic():
            if TierGrant.objects.filter(pk=g.pk, status=TierGrant.Status.ACTIVE).update(
                status=TierGrant.Status.EXPIRED, ended_at=now
            ):
                n += 1
                _close_tier_membership(g.tenant_id, g.member_id, g.community_id, now, _("付费等级到期"))
    return n


def do_invite_to_tier(principal: Principal, product_id: int, member_ids: Iterable[int], *, source: str = "") -> int:
    """Invite members to a paid tier: one :class:`TierInvitation` per member and tier, so inviting
    the same members again adds nothing. Members already holding the tier are skipped. Returns how
    many invitations are new."""
    tid = principal.tenant_id
    product = Product.objects.filter(tenant_id=tid, pk=product_id, kind=ProductKind.TIER).first()
    if product is None:
        raise NotFound(_("付费等级不存在"), details={"field": "product_id"})
    ids = set(Member.objects.filter(tenant_id=tid, pk__in=set(member_ids), merged_into__isnull=True)
              .values_list("pk", flat=True))
    ids -= set(TierGrant.objects.filter(tenant_id=tid, product=product, status=TierGrant.Status.ACTIVE)
               .values_list("member_id", flat=True))
    ids -= set(TierInvitation.objects.filter(tenant_id=tid, product=product).values_list("member_id", flat=True))
    TierInvitation.objects.bulk_create(
        [TierInvitation(tenant_id=tid, member_id=m, product=product, source=source[:80]) for m in sorted(ids)],
        ignore_conflicts=True, batch_size=1000)
    do_audit(principal, "commerce.tier.invite", "Product", product.pk, data={"invited": len(ids), "source": source})
    return len(ids)
