"""Refunds: requesting (never more than paid − refunded − in flight), submitting to the provider,
applying the provider's answer once, and re-submitting unanswered refunds.

Locking: the order row, then refund rows; ``Order.refunded_fen`` moves by a conditional UPDATE
(``refunded + x <= paid``)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from ..gateways import gateway_for
from ..models import Order, OrderEvent, OrderLine, OrderStatus, Payment, Refund
from ._common import _out_no, _tenant_settings
from .fulfilment import _release_stock
from .tiers import _revoke_tiers_for_refund
from .transitions import REFUNDABLE, _line_dicts, _lock_order, _record_event, _transition

log = logging.getLogger(__name__)


def _committed_refunds(order: Order, *, line_id: int | None = None) -> int:
    qs = Refund.objects.filter(order=order, payment__applied=True,
                               status__in=[Refund.Status.PENDING, Refund.Status.SUCCEEDED])
    if line_id is not None:
        qs = qs.filter(order_line_id=line_id)
    return int(qs.aggregate(s=Sum("amount_fen"))["s"] or 0)


def do_request_refund(
    principal: Principal, order_id: int, *, amount_fen: int, idempotency_key: str, reason: str = "",
    order_line_id: int | None = None,
) -> Refund:
    """Refund part or all of what was paid.

    Refused when ``amount_fen`` exceeds what is still refundable (paid − refunded − refunds in
    flight), for the order or for the named line. Idempotent on ``idempotency_key`` (per tenant).
    Locking: the order row (select_for_update), then refund rows; the provider is called after the
    refund row is written, and its answer applied by :func:`do_complete_refund`."""
    tid = principal.tenant_id
    if not idempotency_key or len(idempotency_key) > 128:
        raise Invalid(_("退款需要幂等键(不超过 128 个字符)"), details={"field": "idempotency_key"})
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen <= 0:
        raise Invalid(_("退款金额必须是正整数(分)"), details={"field": "amount_fen"})
    with transaction.atomic():
        order = _lock_order(tid, order_id)
        existing = Refund.objects.filter(tenant_id=tid, idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.order_id != order.pk or existing.amount_fen != amount_fen:
                raise Conflict(_("同一个幂等键用于了不同的退款"), code="idempotency_mismatch")
            return existing
        if order.status not in REFUNDABLE:
            raise Conflict(_("订单当前状态不能退款: %(s)s") % {"s": order.get_status_display()},
                           code="bad_transition", details={"status": order.status})
        refundable = order.paid_fen - _committed_refunds(order)
        if amount_fen > refundable:
            raise Invalid(_("退款金额 %(a)d 分超过可退金额 %(b)d 分") % {"a": amount_fen, "b": refundable},
                          code="refund_exceeds_paid", details={"field": "amount_fen", "refundable": refundable})
        line: OrderLine | None = None
        if order_line_id is not None:
            line = OrderLine.objects.filter(order=order, pk=order_line_id).first()
            if line is None:
                raise NotFound(_("订单明细不存在"), details={"field": "order_line_id"})
            line_left = line.amount_fen - _committed_refunds(order, line_id=line.pk)
            if amount_fen > line_left:
                raise Invalid(_("退款金额超过该明细可退金额 %(b)d 分") % {"b": line_left},
                              code="refund_exceeds_paid", details={"field": "amount_fen", "refundable": line_left})
        payment = Payment.objects.filter(order=order, applied=True, status=Payment.Status.SUCCEEDED).first()
        if payment is None:
            raise Conflict(_("订单没有可退款的支付"), details={"field": "order_id"})
        prior = order.status
        refund = Refund.objects.create(
            tenant_id=tid, order=order, payment=payment, order_line=line, out_refund_no=_out_no("R"),
            amount_fen=amount_fen, reason=reason[:200], idempotency_key=idempotency_key,
            prior_status=prior if prior != OrderStatus.REFUND_REQUESTED else "",
        )
        if prior != OrderStatus.REFUND_REQUESTED:
            _transition(principal, order, OrderStatus.REFUND_REQUESTED, reason=reason,
                        data={"refund_id": refund.pk, "amount_fen": amount_fen})
        else:
            do_audit(principal, "commerce.refund.request", "Order", order.pk, reason=reason,
                     data={"refund_id": refund.pk, "amount_fen": amount_fen})
    _submit_refund(refund.pk)
    refund.refresh_from_db()
    return refund


def _submit_refund(refund_id: int) -> None:
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    if refund.status != Refund.Status.PENDING:
        return
    gw = gateway_for(_tenant_settings(refund.tenant_id), refund.payment.provider)
    try:
        status, provider_id = gw.refund(out_trade_no=refund.payment.out_trade_no, out_refund_no=refund.out_refund_no,
                                        amount_fen=refund.amount_fen, total_fen=refund.payment.amount_fen,
                                        reason=refund.reason)
    except Invalid:
        log.warning("refund %s: provider call failed; will be retried", refund.pk)
        return
    if status in ("succeeded", "failed"):
        do_complete_refund(refund.pk, status=status, provider_refund_id=provider_id)


def do_complete_refund(refund_id: int, *, status: str, provider_refund_id: str = "") -> str:
    """Apply the provider's answer to a refund, once. Locking: order row, then refund row; the order's
    ``refunded_fen`` moves by a conditional UPDATE (``refunded + x <= paid``)."""
    with transaction.atomic():
        order_id = Refund.objects.values_list("order_id", flat=True).get(pk=refund_id)
        order = _lock_order(None, order_id)
        refund = Refund.objects.select_for_update().select_related("payment").get(pk=refund_id)
        if refund.status != Refund.Status.PENDING:
            return "duplicate"
        system = Principal.system(order.tenant_id, "payments")
        refund.completed_at = timezone.now()
        refund.provider_refund_id = provider_refund_id[:64]
        if status != "succeeded":
            if status == "pending":
                return "pending"
            refund.status = Refund.Status.FAILED
            refund.save(update_fields=["status", "completed_at", "provider_refund_id"])
            do_audit(system, "commerce.refund.failed", "Order", order.pk, data={"refund_id": refund.pk})
            if refund.payment.applied:
                _settle_order_refund_status(system, order, refund)
            return "failed"
        refund.status = Refund.Status.SUCCEEDED
        refund.save(update_fields=["status", "completed_at", "provider_refund_id"])
        if not refund.payment.applied:
            do_audit(system, "commerce.refund.succeeded", "Order", order.pk,
                     data={"refund_id": refund.pk, "unapplied_payment": refund.payment_id})
            return "refunded"
        n = Order.objects.filter(pk=order.pk, refunded_fen__lte=F("paid_fen") - refund.amount_fen).update(
            refunded_fen=F("refunded_fen") + refund.amount_fen
        )
        if n == 0:
            raise Conflict(_("退款金额超过已付金额"), code="refund_exceeds_paid")
        order.refresh_from_db()
        _settle_order_refund_status(system, order, refund)
        allocation = _refund_allocation(order, refund)
        _revoke_tiers_for_refund(order, allocation)
        if OrderEvent.objects.filter(order=order, kind=OrderEvent.Kind.PAID).exists():
            _record_event(order, OrderEvent.Kind.REFUNDED, refund.amount_fen,
                          lines=_line_dicts(order, allocation), extra={"refund_id": refund.pk})
        if order.refunded_fen == order.paid_fen and order.fulfilled_at is None:
            _release_stock(order)
        return "refunded"


def _settle_order_refund_status(principal: Principal, order: Order, refund: Refund) -> None:
    if order.status != OrderStatus.REFUND_REQUESTED:
        return
    if Refund.objects.filter(order=order, status=Refund.Status.PENDING, payment__applied=True).exists():
        return
    to: str
    if order.refunded_fen >= order.paid_fen and order.paid_fen > 0:
        to = OrderStatus.REFUNDED
    elif order.refunded_fen > 0:
        to = OrderStatus.PARTIALLY_REFUNDED
    else:
        prior = (Refund.objects.filter(order=order).exclude(prior_status="").order_by("-pk")
                 .values_list("prior_status", flat=True).first())
        to = prior or OrderStatus.PAID
    _transition(principal, order, to, data={"refund_id": refund.pk, "refunded_fen": order.refunded_fen})


def _refund_allocation(order: Order, refund: Refund) -> dict[int, int]:
    lines = list(OrderLine.objects.filter(order=order).order_by("pk"))
    if refund.order_line_id:
        return {refund.order_line_id: refund.amount_fen}
    total = sum(ln.amount_fen for ln in lines)
    if total <= 0:
        return {}
    shares = {ln.pk: refund.amount_fen * ln.amount_fen // total for ln in lines}
    rest = refund.amount_fen - sum(shares.values())
    for ln in sorted(lines, key=lambda x: -x.amount_fen):
        if rest <= 0:
            break
        shares[ln.pk] += 1
        rest -= 1
    return shares


def do_retry_pending_refunds(limit: int = 100) -> int:
    """Re-submit refunds the provider did not answer (scheduled)."""
    n = 0
    for rid in Refund.objects.filter(status=Refund.Status.PENDING).values_list("pk", flat=True)[:limit]:
        _submit_refund(rid)
        n += 1
    return n
