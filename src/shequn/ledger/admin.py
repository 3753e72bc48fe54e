"""Console pages of the ledger: read-only (entries are append-only; corrections are new postings)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet, Sum
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from shequn.core.admin_base import TenantScopedAdmin, TenantScopedTabularInline
from shequn.core.money import yuan

from .models import Account, AccountKind, Entry, OwnerType, Transaction

#: the transaction kinds the engines post, in words (a reversal shows "冲正: <kind>")
TRANSACTION_KINDS = {
    "commission.accrue": _("佣金入账 (冻结)"), "commission.thaw": _("佣金解冻"),
    "commission.reverse": _("退款冲回佣金"), "withdrawal.hold": _("提现冻结"),
    "withdrawal.release": _("提现退回"), "withdrawal.paid": _("提现已打款"),
    "alliance.accrue": _("联盟佣金应付"), "alliance.reverse": _("联盟佣金冲回"),
    "alliance.settle": _("联盟结算"), "fission.reward": _("裂变奖励"),
    "red_packet.fund": _("红包出资"), "red_packet.payout": _("红包领取"), "red_packet.refund": _("红包退回"),
    "commission": _("佣金"),
}


def kind_label(kind: str) -> str:
    if kind.startswith("reversal:"):
        return f"{_('冲正')}: {kind_label(kind.split(':', 1)[1])}"
    return str(TRANSACTION_KINDS.get(kind, kind))


def account_kind_label(kind: str) -> str:
    return str(dict(AccountKind.choices).get(kind, kind))


def _yuan(fen: int) -> str:
    return yuan(fen)


class TransactionKindFilter(admin.SimpleListFilter):
    title = _("类型")
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(k, kind_label(k)) for k in TRANSACTION_KINDS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(kind=self.value()) if self.value() else queryset


class AccountKindFilter(TransactionKindFilter):
    title = _("科目")

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(k), str(v)) for k, v in AccountKind.choices]


@admin.register(Account)
class AccountAdmin(TenantScopedAdmin):
    permission_area = "finance"
    read_only_model = True
    list_display = ("id", "owner_type", "owner_id", "kind_shown", "currency", "balance", "allow_negative",
                    "created_at")
    list_filter = ("owner_type", AccountKindFilter)
    search_fields = ("=owner_id", "kind")

    @admin.display(description=_("余额"), ordering="balance_fen")
    def balance(self, obj: Account) -> str:
        return _yuan(obj.balance_fen)

    @admin.display(description=_("科目"), ordering="kind")
    def kind_shown(self, obj: Account) -> str:
        return account_kind_label(obj.kind)


class EntryInline(TenantScopedTabularInline):
    model = Entry
    permission_area = "finance"
    read_only_model = True
    fields = ("account_shown", "amount", "created_at")
    readonly_fields = fields

    @admin.display(description=_("账户"))
    def account_shown(self, obj: Entry) -> str:
        a = obj.account
        return f"{dict(OwnerType.choices).get(a.owner_type, a.owner_type)} {a.owner_id} · {account_kind_label(a.kind)}"

    @admin.display(description=_("金额"))
    def amount(self, obj: Entry) -> str:
        return _yuan(obj.amount_fen)
    extra = 0
    can_delete = False


@admin.register(Transaction)
class TransactionAdmin(TenantScopedAdmin):
    permission_area = "finance"
    read_only_model = True
    list_display = ("id", "kind_shown", "amount", "memo", "ref_type", "ref_id", "created_at")
    list_filter = (TransactionKindFilter,)
    search_fields = ("idempotency_key", "ref_id", "memo")
    readonly_fields = ("idempotency_key", "kind_shown", "memo", "ref_type", "ref_id", "created_at")
    inlines = [EntryInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Transaction]:
        # the amount of a balanced transaction: the sum of its debit (positive) lines
        qs: QuerySet[Transaction] = super().get_queryset(request)
        return qs.annotate(amount_fen=Sum("entries__amount_fen", filter=Q(entries__amount_fen__gt=0)))

    @admin.display(description=_("类型"), ordering="kind")
    def kind_shown(self, obj: Transaction) -> str:
        return kind_label(obj.kind)

    @admin.display(description=_("金额"), ordering="amount_fen")
    def amount(self, obj: Transaction) -> str:
        return _yuan(getattr(obj, "amount_fen", None) or 0)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields
