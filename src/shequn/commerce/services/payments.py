"""Payments: opening a payment with the provider, verifying and applying provider notifications
(payment and refund), reviving an expired order by a late payment, refunding money that cannot be
applied.

Locking: the order row first (``select_for_update``), then the payment row; notifications are
applied idempotently and every one is logged (:class:`PaymentCallback`)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from .. import redis_gate
from ..gateways import Notification, SandboxGateway, gateway_for
from ..models import (
    Coupon,
    FlashReservation,
    FlashSale,
    Order,
    OrderLine,
    OrderStatus,
    Payment,
    PaymentCallback,
    Refund,
    Sku,
)
from ._common import SoldOut, _out_no, _tenant_settings
from .paid import _mark_paid
from .refunds import _submit_refund, do_complete_refund
from .transitions import _lock_order


def do_start_payment(
    principal: Principal, order_id: int, *, provider: str | None = None, channel: str = "",
    payer_openid: str = "", client_ip: str = "", idempotency_key: str | None = None,
) -> Payment:
    """Open a payment for the order's server-computed total and ask the provider for prepay data.

    Idempotent per (order, key): the same key returns the same payment. Locking: the order row."""
    tid = principal.tenant_id
    with transaction.atomic():
        order = _lock_order(tid, order_id)
        if idempotency_key:
            existing = Payment.objects.filter(tenant_id=tid, order=order, idempotency_key=idempotency_key).first()
            if existing is not None:
                return existing
        if order.status != OrderStatus.CREATED:
            raise Conflict(_("订单当前状态不能支付: %(s)s") % {"s": order.get_status_display()},
                           code="bad_transition", details={"status": order.status})
        if order.expires_at is not None and order.expires_at <= timezone.now():
            raise Conflict(_("订单已超过支付时限"), code="order_expired")
        gw = gateway_for(_tenant_settings(tid), provider)
        payment = Payment.objects.create(
            tenant_id=tid, order=order, provider=gw.name, channel=channel[:16], out_trade_no=_out_no("P"),
            amount_fen=order.total_fen, idempotency_key=idempotency_key,
        )
        names = list(OrderLine.objects.filter(order=order).values_list("name", flat=True)[:3])
        payment.prepay = gw.prepay(out_trade_no=payment.out_trade_no, amount_fen=payment.amount_fen,
                                   description="、".join(names), channel=channel or "native",
                                   payer_openid=payer_openid, client_ip=client_ip)
        payment.save(update_fields=["prepay"])
        do_audit(principal, "commerce.payment.start", "Order", order.pk,
                 data={"payment_id": payment.pk, "provider": gw.name, "amount_fen": payment.amount_fen})
        return payment


def do_sandbox_pay(out_trade_no: str, *, status: str = "succeeded") -> dict[str, Any]:
    """The sandbox payer pays ``out_trade_no`` and its signed notification is delivered to us."""
    payment = Payment.objects.filter(out_trade_no=out_trade_no, provider="sandbox").first()
    if payment is None:
        raise NotFound(_("支付单不存在"), details={"field": "out_trade_no"})
    headers, body = SandboxGateway().pay(out_trade_no, payment.amount_fen, status=status)
    return do_handle_notification("sandbox", headers, body, tenant_id=payment.tenant_id)


def _log_callback(provider: str, body: bytes, outcome: str, *, tenant_id: int | None = None, note: Notification | None
                  = None, detail: str = "") -> None:
    PaymentCallback.objects.create(
        provider=provider[:16], tenant_id=tenant_id, out_trade_no=(note.out_trade_no if note else "")[:64],
        kind=note.kind if note else "", body_sha256=hashlib.sha256(body).hexdigest(), outcome=outcome[:32],
        detail=detail[:300],
    )


def do_handle_notification(provider: str, headers: Mapping[str, str], body: bytes, *,
                           tenant_id: int | None = None) -> dict[str, Any]:
    """Verify and apply one provider notification (payment or refund).

    Verifies the signature (raises ``BadSignature``), the payment exists (and belongs to
    ``tenant_id`` when given) and the amount equals what we asked for (raises ``Invalid``); then
    applies it idempotently — duplicates and out-of-order deliveries (a failure notice after a success,
    a refund notice for a refund we already booked) change nothing. Every notification is logged."""
    settings_ = _tenant_settings(tenant_id) if tenant_id else {}
    try:
        note = gateway_for(settings_, provider).parse_notification(headers, body)
    except Invalid as exc:
        _log_callback(provider, body, exc.code, tenant_id=tenant_id, detail=exc.message)
        raise
    payment = Payment.objects.filter(out_trade_no=note.out_trade_no).first()
    if payment is None or (tenant_id is not None and payment.tenant_id != tenant_id) or payment.provider != provider:
        _log_callback(provider, body, "unknown_payment", tenant_id=tenant_id, note=note)
        raise NotFound(_("支付单不存在: %(n)s") % {"n": note.out_trade_no}, details={"field": "out_trade_no"})
    if note.kind == "refund":
        refund = Refund.objects.filter(out_refund_no=note.out_refund_no, payment=payment).first()
        if refund is None:
            _log_callback(provider, body, "unknown_refund", tenant_id=payment.tenant_id, note=note)
            raise NotFound(_("退款单不存在"), details={"field": "out_refund_no"})
        if note.amount_fen != refund.amount_fen:
            _log_callback(provider, body, "amount_mismatch", tenant_id=payment.tenant_id, note=note)
            raise Invalid(_("退款回调金额与退款单不符"), code="amount_mismatch", details={"field": "amount"})
        outcome = do_complete_refund(refund.pk, status=note.status, provider_refund_id=note.provider_id)
        _log_callback(provider, body, outcome, tenant_id=payment.tenant_id, note=note)
        return {"outcome": outcome, "refund_id": refund.pk}
    if note.amount_fen != payment.amount_fen:
        _log_callback(provider, body, "amount_mismatch", tenant_id=payment.tenant_id, note=note,
                      detail=f"expected {payment.amount_fen} got {note.amount_fen}")
        raise Invalid(_("支付回调金额与订单不符: 应为 %(a)d 分, 实为 %(b)d 分")
                      % {"a": payment.amount_fen, "b": note.amount_fen}, code="amount_mismatch",
                      details={"field": "amount", "expected": payment.amount_fen, "got": note.amount_fen})
    if note.status == "succeeded":
        outcome = _settle_payment(payment.pk, note.provider_id)
    elif note.status in ("failed", "closed"):
        n = Payment.objects.filter(pk=payment.pk, status=Payment.Status.PENDING).update(status=note.status)
        outcome = note.status if n else "ignored"
    else:
        outcome = "pending"
    _log_callback(provider, body, outcome, tenant_id=payment.tenant_id, note=note)
    return {"outcome": outcome, "order_id": payment.order_id, "payment_id": payment.pk}


def _settle_payment(payment_id: int, provider_id: str) -> str:
    """A confirmed payment. Locking: the order row first, then the payment row.

    Returns ``paid``, ``duplicate`` (already booked), ``revived`` (an expired order whose stock was
    still there), or ``refunding`` (money we cannot use — order gone or already paid — is refunded
    in full automatically)."""
    refund_payment: Payment | None = None
    with transaction.atomic():
        order_id = Payment.objects.values_list("order_id", flat=True).get(pk=payment_id)
        order = _lock_order(None, order_id)
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.status == Payment.Status.SUCCEEDED:
            return "duplicate"
        payment.status = Payment.Status.SUCCEEDED
        payment.provider_txn_id = provider_id[:64]
        payment.paid_at = timezone.now()
        payment.save(update_fields=["status", "provider_txn_id", "paid_at"])
        system = Principal.system(order.tenant_id, label="payments")
        outcome = "paid"
        if order.status == OrderStatus.CANCELLED and order.stock_released:
            if _retake_stock(order):
                outcome = "revived"
                do_audit(system, "commerce.order.revived", "Order", order.pk, data={"payment_id": payment.pk})
                _mark_paid(system, order, payment)
            else:
                outcome = "refunding"
                refund_payment = payment
        elif order.status == OrderStatus.CREATED and payment.amount_fen == order.total_fen:
            _mark_paid(system, order, payment)
        else:
            outcome = "refunding"
            refund_payment = payment
        if refund_payment is not None:
            payment.note = _("无法入账, 自动全额退款")
            payment.save(update_fields=["note"])
            do_audit(system, "commerce.payment.unusable", "Order", order.pk,
                     data={"payment_id": payment.pk, "order_status": order.status})
    if refund_payment is not None:
        _refund_unapplied(refund_payment)
    return outcome


def _retake_stock(order: Order) -> bool:
    """Try to take an expired order's stock (and coupons) again; all or nothing (savepoint)."""
    try:
        with transaction.atomic():
            lines = list(OrderLine.objects.filter(order=order))
            if order.flash_sale_id:
                qty = sum(ln.quantity for ln in lines)
                n = FlashReservation.objects.filter(
                    flash_sale_id=order.flash_sale_id, member_id=order.member_id, order=order,
                    status=FlashReservation.Status.RELEASED,
                ).update(status=FlashReservation.Status.RESERVED)
                if n == 0:
                    return False
                if FlashSale.objects.filter(pk=order.flash_sale_id, stock__gte=qty).update(
                    stock=F("stock") - qty
                ) == 0:
                    raise SoldOut("flash")
                _redis_retake(order.flash_sale_id, order.member_id, qty)
            else:
                for ln in sorted(lines, key=lambda x: x.sku_id):
                    if Sku.objects.filter(pk=ln.sku_id, stock__gte=ln.quantity).update(
                        stock=F("stock") - ln.quantity
                    ) == 0:
                        raise SoldOut("sku")
            for c in Coupon.objects.filter(used_order=order, status=Coupon.Status.AVAILABLE):
                if Coupon.objects.filter(pk=c.pk, status=Coupon.Status.AVAILABLE).update(
                    status=Coupon.Status.USED
                ) == 0:
                    raise SoldOut("coupon")
            if order.team_id:
                raise SoldOut("team")  # a group-buy seat is not re-taken after expiry
            order.stock_released = False
            order.save(update_fields=["stock_released"])
            return True
    except SoldOut:
        return False


def _redis_retake(flash_sale_id: int, member_id: int, qty: int) -> None:
    g = redis_gate.gate()
    if g is None or not FlashSale.objects.filter(pk=flash_sale_id, use_redis_gate=True).exists():
        return
    fs, mid = flash_sale_id, member_id

    def _go() -> None:
        # mirror the database: take the unit back out of the gate's count and re-mark the buyer
        g.conn.decrby(redis_gate.keys(fs)[0], qty)
        g.conn.sadd(redis_gate.keys(fs)[1], mid)

    transaction.on_commit(_go)


def _refund_unapplied(payment: Payment) -> None:
    """Refund in full a succeeded payment that was not applied to its order (exactly once per payment)."""
    with transaction.atomic():
        order = _lock_order(None, payment.order_id)
        key = f"unapplied-{payment.pk}"
        refund = Refund.objects.filter(tenant_id=order.tenant_id, idempotency_key=key).first()
        if refund is None:
            refund = Refund.objects.create(
                tenant_id=order.tenant_id, order=order, payment=payment, out_refund_no=_out_no("R"),
                amount_fen=payment.amount_fen, reason=_("订单已关闭或已支付, 自动退款"), idempotency_key=key,
                prior_status=order.status,
            )
            do_audit(Principal.system(order.tenant_id, "payments"), "commerce.refund.auto", "Order", order.pk,
                     data={"refund_id": refund.pk, "amount_fen": refund.amount_fen})
    _submit_refund(refund.pk)
