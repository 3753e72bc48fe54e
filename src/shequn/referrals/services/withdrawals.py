"""Withdrawals: a member's available commission paid out through a payout provider.

``requested`` → (``approved`` automatically below the policy threshold, or by finance) → the
payout task sends it → ``paid`` / ``failed`` (→ ``reversed``); ``rejected`` → ``reversed``. Money
rule: available → withdrawing on request, withdrawing → paid out (and fee income) on success,
withdrawing → available on rejection or failure, each posting through
:func:`shequn.ledger.services.do_post` with its own idempotency key. Locking: the withdrawal row is
read with ``select_for_update`` before any state change; the member's accounts are locked in id
order on request (see :func:`do_request_withdrawal`)."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.tasks import task
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core import webhooks
from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.models import WebhookEventType
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.ledger.models import AccountKind
from shequn.ledger.services import do_post, lock_accounts
from shequn.members.models import Member

from ..models import (
    Commission,
    CommissionState,
    PayoutProviderName,
    Withdrawal,
    WithdrawalEvent,
    WithdrawalStatus,
)
from ..payouts import FAILED, NOT_FOUND, PROCESSING, SUCCESS, PayoutResult, get_provider
from ..selectors import withdrawal_fee
from ._common import _require, check_max_length, get_policy, member_account, merchant_account

log = logging.getLogger(__name__)


def _trail(w: Withdrawal, to: str, actor: str = "system", note: str = "") -> None:
    WithdrawalEvent.objects.create(tenant_id=w.tenant_id, withdrawal=w, from_status=w.status, to_status=to,
                                   actor=actor, note=note[:255])
    w.status = to


def do_request_withdrawal(principal: Principal, *, member_id: int, amount_fen: int, idempotency_key: str,
                          payee: str = "", now: datetime | None = None) -> Withdrawal:
    """Request a payout of ``amount_fen`` from the member's available balance.

    Checks (in the member's language): minimum, fee below the amount, no refund debt (clawback < 0),
    the daily cap; a ``payee`` or idempotency key longer than its column is refused (the key is the
    API's ``request_id``, the field the error names). Locking: the member's available, withdrawing
    and clawback accounts are locked with ``select_for_update`` in id order (the order do_post
    uses), then the hold posts available → withdrawing with the conditional update, so concurrent
    requests never overdraw. The same
    ``idempotency_key`` returns the first withdrawal. Small amounts are approved and their payout
    task enqueued in the same transaction; amounts above the policy threshold wait for approval."""
    now = now or timezone.now()
    tid = principal.tenant_id
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen <= 0:
        raise Invalid(_("提现金额必须是正整数(分)"), details={"field": "amount_fen"})
    check_max_length(Withdrawal, "payee", payee)
    check_max_length(Withdrawal, "idempotency_key", idempotency_key, field="request_id")
    existing = Withdrawal.objects.filter(tenant_id=tid, idempotency_key=idempotency_key).first()
    if existing is not None:
        if existing.member_id != member_id or existing.amount_fen != amount_fen:
            raise Conflict(_("同一个幂等键用于了不同的提现请求"), code="idempotency_mismatch")
        return existing
    if not Member.objects.filter(tenant_id=tid, pk=member_id).exists():
        raise NotFound(_("会员不存在"), details={"field": "member_id"})
    policy = get_policy(tid)
    if amount_fen < policy.withdrawal_min_fen:
        raise Invalid(_("最低提现金额为 %(m).2f 元") % {"m": policy.withdrawal_min_fen / 100},
                      code="below_minimum", details={"field": "amount_fen", "min_fen": policy.withdrawal_min_fen})
    fee = withdrawal_fee(policy, amount_fen)
    if fee >= amount_fen:
        raise Invalid(_("提现金额不足以支付手续费 %(f).2f 元") % {"f": fee / 100}, details={"field": "amount_fen"})
    with transaction.atomic():
        avail = member_account(tid, member_id, AccountKind.AVAILABLE)
        held = member_account(tid, member_id, AccountKind.WITHDRAWING)
        claw = member_account(tid, member_id, AccountKind.CLAWBACK)
        locked = {a.pk: a for a in lock_accounts([avail, held, claw])}
        if locked[claw.pk].balance_fen < 0:
            raise Conflict(_("有 %(d).2f 元退款佣金待抵扣, 暂不能提现") % {"d": -locked[claw.pk].balance_fen / 100},
                           code="negative_balance", details={"clawback_fen": locked[claw.pk].balance_fen})
        day_start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
        today = Withdrawal.objects.filter(tenant_id=tid, member_id=member_id, requested_at__gte=day_start).exclude(
            status__in=[WithdrawalStatus.REVERSED, WithdrawalStatus.REJECTED]).aggregate(s=Sum("amount_fen"))["s"] or 0
        if today + amount_fen > policy.withdrawal_daily_cap_fen:
            raise Invalid(_("超过每日提现上限 %(c).2f 元(今日已申请 %(t).2f 元)")
                          % {"c": policy.withdrawal_daily_cap_fen / 100, "t": today / 100},
                          code="daily_cap", details={"field": "amount_fen"})
        try:
            with transaction.atomic():
                w = Withdrawal.objects.create(
                    tenant_id=tid, member_id=member_id, idempotency_key=idempotency_key,
                    out_no=f"wd{tid}x{secrets.token_hex(8)}", amount_fen=amount_fen, fee_fen=fee, payee=payee,
                    status=WithdrawalStatus.REQUESTED, provider=policy.payout_provider, requested_at=now)
        except IntegrityError:
            return Withdrawal.objects.get(tenant_id=tid, idempotency_key=idempotency_key)
        WithdrawalEvent.objects.create(tenant_id=tid, withdrawal=w, from_status="", to_status=w.status,
                                       actor=principal.label)
        do_post(tid, f"wd:{w.pk}:hold", "withdrawal.hold", [(avail, -amount_fen), (held, amount_fen)],
                memo=f"提现申请 {w.out_no}", ref=("referrals.Withdrawal", w.pk))
        if amount_fen <= policy.withdrawal_approval_above_fen:
            _trail(w, WithdrawalStatus.APPROVED, "auto", _("小额自动审核"))
            w.save(update_fields=["status", "updated_at"])
            _enqueue_payout(tid, w.pk)
        do_audit(principal, "referrals.withdrawal.request", "Withdrawal", w.pk, data={"amount_fen": amount_fen})
        w.refresh_from_db()  # an in-process task backend may already have paid it
        return w


@task(queue_name="engines")
def execute_payout(tenant_id: int, withdrawal_id: int) -> str:
    """Send one approved withdrawal (:func:`do_execute_payout`). Enqueued by the services here in
    the transaction that approves the withdrawal; ``shequn.referrals.tasks`` re-exports it so task
    rows queued under ``shequn.referrals.tasks.execute_payout`` still import."""
    return str(do_execute_payout(tenant_id, withdrawal_id).status)


def _enqueue_payout(tenant_id: int, withdrawal_id: int) -> None:
    execute_payout.enqueue(tenant_id, withdrawal_id)


@transaction.atomic
def do_approve_withdrawal(principal: Principal, withdrawal_id: int) -> Withdrawal:
    _require(principal, "finance.write")
    w = _locked_withdrawal(principal.tenant_id, withdrawal_id)
    if w.status != WithdrawalStatus.REQUESTED:
        raise Conflict(_("只有待审核的提现可以审核通过(当前: %(s)s)") % {"s": w.get_status_display()})
    _trail(w, WithdrawalStatus.APPROVED, principal.label)
    w.save(update_fields=["status", "updated_at"])
    do_audit(principal, "referrals.withdrawal.approve", "Withdrawal", w.pk)
    _enqueue_payout(principal.tenant_id, w.pk)
    w.refresh_from_db()
    return w


@transaction.atomic
def do_reject_withdrawal(principal: Principal, withdrawal_id: int, *, reason: str) -> Withdrawal:
    _require(principal, "finance.write")
    if not reason.strip():
        raise Invalid(_("请填写驳回原因"), details={"field": "reason"})
    w = _locked_withdrawal(principal.tenant_id, withdrawal_id)
    if w.status != WithdrawalStatus.REQUESTED:
        raise Conflict(_("只有待审核的提现可以驳回(当前: %(s)s)") % {"s": w.get_status_display()})
    _trail(w, WithdrawalStatus.REJECTED, principal.label, reason)
    _release(w, principal.label)
    do_audit(principal, "referrals.withdrawal.reject", "Withdrawal", w.pk, reason=reason)
    return w


def _locked_withdrawal(tenant_id: int, withdrawal_id: int) -> Withdrawal:
    w = Withdrawal.objects.select_for_update().filter(tenant_id=tenant_id, pk=withdrawal_id).first()
    if w is None:
        raise NotFound(_("提现不存在"))
    return w


def _release(w: Withdrawal, actor: str) -> None:
    """withdrawing → available (rejected or failed payout), then status reversed."""
    tid = w.tenant_id
    do_post(tid, f"wd:{w.pk}:release", "withdrawal.release",
            [(member_account(tid, w.member_id, AccountKind.WITHDRAWING), -w.amount_fen),
             (member_account(tid, w.member_id, AccountKind.AVAILABLE), w.amount_fen)],
            memo=f"提现退回 {w.out_no}", ref=("referrals.Withdrawal", w.pk))
    _trail(w, WithdrawalStatus.REVERSED, actor)
    w.save(update_fields=["status", "failure_reason", "provider_ref", "updated_at"])


def _apply_result(w: Withdrawal, result: PayoutResult) -> None:
    tid = w.tenant_id
    if result.provider_ref:
        w.provider_ref = result.provider_ref
    if result.status == SUCCESS:
        do_post(tid, f"wd:{w.pk}:paid", "withdrawal.paid",
                [(member_account(tid, w.member_id, AccountKind.WITHDRAWING), -w.amount_fen),
                 (member_account(tid, w.member_id, AccountKind.PAID_OUT), w.amount_fen - w.fee_fen)]
                + ([(merchant_account(tid, AccountKind.FEE_INCOME), w.fee_fen)] if w.fee_fen else []),
                memo=f"提现到账 {w.out_no}", ref=("referrals.Withdrawal", w.pk))
        _trail(w, WithdrawalStatus.PAID, w.provider)
        w.save(update_fields=["status", "provider_ref", "updated_at"])
        _allocate_withdrawn(w)
        webhooks.emit(tid, WebhookEventType.WITHDRAWAL_PAID, f"withdrawal:{w.pk}:paid", {
            "withdrawal_id": w.pk, "member_id": w.member_id, "amount_fen": w.amount_fen, "fee_fen": w.fee_fen,
            "provider": w.provider, "provider_ref": w.provider_ref, "out_no": w.out_no})
    elif result.status == FAILED:
        w.failure_reason = result.reason[:255]
        _trail(w, WithdrawalStatus.FAILED, w.provider, result.reason)
        _release(w, w.provider)
    elif result.status == PROCESSING and w.status != WithdrawalStatus.PROCESSING:
        _trail(w, WithdrawalStatus.PROCESSING, w.provider)
        w.save(update_fields=["status", "provider_ref", "updated_at"])


def _allocate_withdrawn(w: Withdrawal) -> None:
    """Mark the member's available commissions withdrawn, oldest first, up to the paid amount (the
    statement then says which earnings left). Cash rewards in the balance are not commissions, so an
    amount may remain unallocated. Locking: the commission rows, ``select_for_update`` in pk order."""
    remaining = w.amount_fen
    qs = Commission.objects.select_for_update().filter(
        tenant_id=w.tenant_id, referrer_id=w.member_id, state=CommissionState.AVAILABLE).order_by("available_at", "pk")
    for c in qs:
        if remaining <= 0:
            break
        free = c.amount_fen - c.reversed_fen - c.withdrawn_fen
        take = min(free, remaining)
        c.withdrawn_fen += take
        remaining -= take
        if c.withdrawn_fen >= c.amount_fen - c.reversed_fen:
            c.state = CommissionState.WITHDRAWN
        c.save(update_fields=["withdrawn_fen", "state"])


def do_execute_payout(tenant_id: int, withdrawal_id: int) -> Withdrawal:
    """Send an approved withdrawal to its payout provider and book the outcome. Idempotent: the row
    is locked (``select_for_update``) and only an ``approved`` withdrawal is sent; the provider
    de-duplicates by ``out_no``; each outcome posting has its own ledger key."""
    with transaction.atomic():
        w = _locked_withdrawal(tenant_id, withdrawal_id)
        if w.status != WithdrawalStatus.APPROVED:
            return w
        try:
            provider = get_provider(w.provider, tenant_id)
            result = provider.transfer(out_no=w.out_no, payee=w.payee, amount_fen=w.amount_fen - w.fee_fen,
                                       memo="佣金提现")
        except Exception as exc:  # not configured, network or provider error: stay approved, reconcile later
            log.warning("payout %s: provider error %s", w.out_no, type(exc).__name__)
            return w
        _apply_result(w, result)
        return w


def do_reconcile_withdrawals(tenant_id: int | None = None, older_than: timedelta = timedelta(0)) -> int:
    """Ask providers about withdrawals still approved/processing and book the outcome."""
    cutoff = timezone.now() - older_than
    qs = Withdrawal.objects.filter(status__in=[WithdrawalStatus.APPROVED, WithdrawalStatus.PROCESSING],
                                   updated_at__lte=cutoff)
    if tenant_id is not None:
        qs = qs.filter(tenant_id=tenant_id)
    n = 0
    for wid, tid in list(qs.values_list("pk", "tenant_id")):
        before, after = _reconcile_one(tid, wid)
        n += int(before != after)
    return n


def _reconcile_one(tenant_id: int, withdrawal_id: int) -> tuple[str, str]:
    """Ask the provider about one approved/processing withdrawal and book the outcome: paid (ledger:
    withdrawing → paid out), failed (withdrawing → available: the member's money is back) or still
    processing. A transfer the provider never heard of is failed only once it was sent (processing);
    an approved one is left to the payout task. Locking: the withdrawal row, ``select_for_update``.
    Returns the status before and after."""
    with transaction.atomic():
        w = _locked_withdrawal(tenant_id, withdrawal_id)
        before = str(w.status)
        if w.status not in (WithdrawalStatus.APPROVED, WithdrawalStatus.PROCESSING):
            return before, before
        try:
            result = get_provider(w.provider, tenant_id).query(out_no=w.out_no)
        except Exception as exc:  # not configured, network or provider error: try again next run
            log.warning("reconcile %s: provider error %s", w.out_no, type(exc).__name__)
            return before, before
        if result.status == NOT_FOUND and w.status == WithdrawalStatus.APPROVED:
            return before, before  # never sent: the payout task will send it
        if result.status == NOT_FOUND:
            result = PayoutResult(FAILED, reason="provider has no record")
        _apply_result(w, result)
        return before, str(w.status)


def do_reconcile_withdrawal(principal: Principal, withdrawal_id: int) -> Withdrawal:
    """Staff "reconcile now" (console, API): query the provider for this withdrawal. Audited."""
    _require(principal, "finance.write")
    if not Withdrawal.objects.filter(tenant_id=principal.tenant_id, pk=withdrawal_id).exists():
        raise NotFound(_("提现不存在"))
    before, after = _reconcile_one(principal.tenant_id, withdrawal_id)
    do_audit(principal, "referrals.withdrawal.reconcile", "Withdrawal", withdrawal_id,
             data={"before": before, "after": after})
    return Withdrawal.objects.get(pk=withdrawal_id)


MANUAL_CHANNELS = {"bank": _("银行卡转账"), "alipay": _("支付宝转账"), "other": _("其他")}


def _manual_withdrawal(principal: Principal, withdrawal_id: int) -> Withdrawal:
    _require(principal, "finance.write")
    w = _locked_withdrawal(principal.tenant_id, withdrawal_id)
    if w.provider != PayoutProviderName.MANUAL:
        raise Conflict(_("只有人工打款渠道的提现可以手工登记(本笔渠道: %(p)s), 其他渠道请用「对账」")
                       % {"p": PayoutProviderName(w.provider).label if w.provider in PayoutProviderName.values
                          else w.provider}, code="not_manual")
    if w.status not in (WithdrawalStatus.APPROVED, WithdrawalStatus.PROCESSING):
        raise Conflict(_("只有已审核或处理中的提现可以登记打款结果(当前: %(s)s)") % {"s": w.get_status_display()},
                       code="bad_status")
    return w


@transaction.atomic
def do_record_manual_payout(principal: Principal, withdrawal_id: int, *, channel: str, reference: str,
                            note: str = "") -> Withdrawal:
    """Staff record a transfer they made by hand (bank or Alipay) with its reference number: the
    withdrawal is paid (ledger: withdrawing → paid out, fee income). Locking: the withdrawal row
    (``select_for_update``); the ledger posting has its own key, so a double submit pays once."""
    reference = (reference or "").strip()
    if channel not in MANUAL_CHANNELS:
        raise Invalid(_("请选择打款方式"), details={"field": "channel", "allowed": sorted(MANUAL_CHANNELS)})
    if not reference:
        raise Invalid(_("请填写转账流水号"), details={"field": "reference"})
    check_max_length(Withdrawal, "provider_ref", reference, field="reference")
    check_max_length(WithdrawalEvent, "note", note, field="note")
    w = _manual_withdrawal(principal, withdrawal_id)
    _apply_result(w, PayoutResult(SUCCESS, reference))
    w.trail.filter(to_status=WithdrawalStatus.PAID).update(
        actor=principal.label[:120], note=(f"{MANUAL_CHANNELS[channel]} {reference} {note}".strip())[:255])
    do_audit(principal, "referrals.withdrawal.manual_paid", "Withdrawal", w.pk,
             data={"channel": channel, "reference": reference})
    return w


@transaction.atomic
def do_record_manual_payout_failed(principal: Principal, withdrawal_id: int, *, reason: str) -> Withdrawal:
    """Staff record that a manual transfer could not be made (wrong account, …): the money goes back
    to the member's available balance through the ledger (withdrawing → available)."""
    reason = (reason or "").strip()
    if not reason:
        raise Invalid(_("请填写失败原因"), details={"field": "reason"})
    check_max_length(Withdrawal, "failure_reason", reason, field="reason")
    w = _manual_withdrawal(principal, withdrawal_id)
    _apply_result(w, PayoutResult(FAILED, "", reason))
    do_audit(principal, "referrals.withdrawal.manual_failed", "Withdrawal", w.pk, reason=reason)
    return w
