"""What happens when an order becomes paid: money applied, flash seat marked paid, tiers granted,
gift coupons issued, the ``paid`` event, and group-buy team completion (a payment for a team that
already failed is refunded after commit).

Locking: the caller holds the order row; the team row is locked after it."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from ..models import FlashReservation, GroupBuy, GroupBuyTeam, Order, OrderEvent, OrderStatus, Payment
from .coupons import _grant_gift_coupons, _issue_coupon
from .refunds import do_request_refund
from .tiers import _grant_tiers
from .transitions import REFUNDABLE, _record_event, _transition


def _mark_paid(principal: Principal, order: Order, payment: Payment | None) -> None:
    """Order (already locked by the caller) becomes paid: money applied, side effects, event."""
    amount = payment.amount_fen if payment is not None else 0
    now = timezone.now()
    order.paid_fen = order.paid_fen + amount
    order.paid_at = now
    order.expires_at = None
    _transition(principal, order, OrderStatus.PAID, data={"amount_fen": amount},
                fields=["paid_fen", "paid_at", "expires_at"])
    if payment is not None:
        Payment.objects.filter(pk=payment.pk).update(applied=True)
        payment.applied = True
    if order.flash_sale_id:
        FlashReservation.objects.filter(flash_sale_id=order.flash_sale_id, member_id=order.member_id,
                                        order=order).update(status=FlashReservation.Status.PAID)
    _grant_tiers(order, now)
    _grant_gift_coupons(order)
    _record_event(order, OrderEvent.Kind.PAID, order.paid_fen)
    if order.team_id:
        _team_paid(principal, order)


def _team_paid(principal: Principal, order: Order) -> None:
    """After a team order is paid (order row locked by the caller): lock the team; succeed it when full;
    a payment for a team that already failed is refunded."""
    assert order.team_id is not None
    team = GroupBuyTeam.objects.select_for_update().get(pk=order.team_id)
    if team.status == GroupBuyTeam.Status.FAILED:
        transaction.on_commit(lambda: _refund_failed_team_order(team.tenant_id, order.pk))
        return
    if team.status != GroupBuyTeam.Status.OPEN:
        return
    gb = GroupBuy.objects.get(pk=team.group_buy_id)
    paid = Order.objects.filter(team=team, paid_at__isnull=False).exclude(status=OrderStatus.CANCELLED).count()
    if paid >= gb.team_size:
        team.status = GroupBuyTeam.Status.SUCCEEDED
        team.closed_at = timezone.now()
        team.save(update_fields=["status", "closed_at"])
        do_audit(principal, "commerce.team.succeeded", "GroupBuyTeam", team.pk, data={"paid": paid})
        if gb.leader_reward_template_id and not team.leader_rewarded:
            _issue_coupon(gb.leader_reward_template_id, team.leader_id, source_order_id=None)
            GroupBuyTeam.objects.filter(pk=team.pk).update(leader_rewarded=True)


def _refund_failed_team_order(tenant_id: int, order_id: int) -> None:
    order = Order.objects.get(pk=order_id)
    left = order.paid_fen - order.refunded_fen
    if left > 0 and order.status in REFUNDABLE:
        do_request_refund(Principal.system(tenant_id, "group_buy"), order_id, amount_fen=left,
                          idempotency_key=f"groupbuy-fail-{order_id}", reason=_("拼团失败自动退款"))
