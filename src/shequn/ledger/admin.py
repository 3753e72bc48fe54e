"""Console pages of the ledger: read-only (entries are append-only; corrections are new postings)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from shequn.core.admin_base import TenantScopedAdmin, TenantScopedTabularInline

from .models import Account, Entry, Transaction


def _yuan(fen: int) -> str:
    return f"{fen / 100:,.2f}"


@admin.register(Account)
class AccountAdmin(TenantScopedAdmin):
    permission_area = "finance"
    read_only_model = True
    list_display = ("id", "owner_type", "owner_id", "kind", "currency", "balance", "allow_negative", "created_at")
    list_filter = ("owner_type", "kind")
    search_fields = ("=owner_id", "kind")

    @admin.display(description=_("余额(元)"), ordering="balance_fen")
    def balance(self, obj: Account) -> str:
        return _yuan(obj.balance_fen)


class EntryInline(TenantScopedTabularInline):
    model = Entry
    permission_area = "finance"
    read_only_model = True
    fields = ("account", "amount_fen", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Transaction)
class TransactionAdmin(TenantScopedAdmin):
    permission_area = "finance"
    read_only_model = True
    list_display = ("id", "kind", "idempotency_key", "memo", "ref_type", "ref_id", "created_at")
    list_filter = ("kind",)
    search_fields = ("idempotency_key", "ref_id", "memo")
    readonly_fields = ("idempotency_key", "kind", "memo", "ref_type", "ref_id", "created_at")
    inlines = [EntryInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields
