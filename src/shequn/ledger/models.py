"""The double-entry ledger: accounts, transactions and entries, in integer fen.

Invariants (proved by ``tests/``):

* every :class:`Transaction` has entries summing to zero;
* entries and transactions are append-only (``save`` of an existing row and ``delete`` raise);
* ``Account.balance_fen`` equals the sum of the account's entries and changes only through the
  conditional ``UPDATE`` in :func:`shequn.ledger.services.do_post`, inside the posting's transaction;
* an account with ``allow_negative=False`` never has a negative balance.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

from shequn.core.models import Tenant, TenantOwned


class AppendOnlyError(RuntimeError):
    """Raised when code tries to change or delete a ledger row."""


class OwnerType(models.TextChoices):
    MEMBER = "member", _("会员")
    MERCHANT = "merchant", _("商家")
    PLATFORM = "platform", _("平台")


class AccountKind(models.TextChoices):
    """Well-known kinds. Other apps may use their own slugs (the field is not limited to these)."""

    COMMISSION_PENDING = "commission_pending", _("待结算佣金")
    AVAILABLE = "available", _("可提现")
    WITHDRAWING = "withdrawing", _("提现中")
    PAID_OUT = "paid_out", _("已提现")
    CLAWBACK = "clawback", _("待抵扣(退款追回)")
    COMMISSION_EXPENSE = "commission_expense", _("佣金支出")
    MERCHANT_PAYABLE = "merchant_payable", _("应付商家")
    MERCHANT_RECEIVABLE = "merchant_receivable", _("应收商家")
    PLATFORM_CLEARING = "platform_clearing", _("平台清算")
    FEE_INCOME = "fee_income", _("手续费收入")
    RED_PACKET_POOL = "red_packet_pool", _("红包资金池")
    REWARD_EXPENSE = "reward_expense", _("奖励支出")


class _AppendOnlyQuerySet(models.QuerySet[Any]):
    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("ledger rows are append-only")

    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("ledger rows are append-only")


class Account(TenantOwned):
    owner_type = models.CharField(_("所有者类型"), max_length=16, choices=OwnerType.choices)
    owner_id = models.BigIntegerField(_("所有者"), default=0)
    kind = models.CharField(_("科目"), max_length=32)
    currency = models.CharField(_("币种"), max_length=3, default="CNY")
    balance_fen = models.BigIntegerField(_("余额(分)"), default=0, editable=False)
    allow_negative = models.BooleanField(_("允许负数"), default=False)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("账户")
        verbose_name_plural = _("账户")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "owner_type", "owner_id", "kind", "currency"],
                                    name="ledger_account_unique"),
            models.CheckConstraint(condition=models.Q(allow_negative=True) | models.Q(balance_fen__gte=0),
                                   name="ledger_account_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.owner_type}:{self.owner_id}:{self.kind}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            fields = kwargs.get("update_fields")
            if fields is None or "balance_fen" in fields:
                # the balance moves only through do_post's conditional UPDATE
                kwargs["update_fields"] = [f for f in (fields or ["allow_negative"]) if f != "balance_fen"]
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise AppendOnlyError("ledger accounts are never deleted")


class Transaction(TenantOwned):
    # the (tenant, idempotency_key) unique index serves tenant lookups: no separate tenant index
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, verbose_name=_("组织"), related_name="+",
                               db_index=False)
    idempotency_key = models.CharField(_("幂等键"), max_length=191)
    kind = models.CharField(_("类型"), max_length=48)
    memo = models.CharField(_("摘要"), max_length=255, blank=True)
    ref_type = models.CharField(_("来源类型"), max_length=64, blank=True)
    ref_id = models.CharField(_("来源"), max_length=64, blank=True)
    lines_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(_("记账时间"), auto_now_add=True)

    objects = _AppendOnlyQuerySet.as_manager()

    class Meta:
        verbose_name = _("记账凭证")
        verbose_name_plural = _("记账凭证")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "idempotency_key"], name="ledger_txn_idempotency"),
        ]
        indexes = [models.Index(fields=["tenant", "ref_type", "ref_id"], name="ledger_txn_ref_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.idempotency_key}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("ledger transactions are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise AppendOnlyError("ledger transactions are append-only")


class Entry(TenantOwned):
    transaction = models.ForeignKey(Transaction, on_delete=models.PROTECT, related_name="entries",
                                    verbose_name=_("凭证"))
    # indexed by ledger_entry_account_idx (account, id); every index costs on the posting hot path
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries",
                                verbose_name=_("账户"), db_index=False)
    amount_fen = models.BigIntegerField(_("金额(分)"))
    created_at = models.DateTimeField(_("记账时间"), auto_now_add=True)

    objects = _AppendOnlyQuerySet.as_manager()

    class Meta:
        verbose_name = _("分录")
        verbose_name_plural = _("分录")
        indexes = [models.Index(fields=["account", "id"], name="ledger_entry_account_idx")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.amount_fen:+d}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("ledger entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise AppendOnlyError("ledger entries are append-only")
