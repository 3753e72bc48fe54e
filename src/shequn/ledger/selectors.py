"""Reads of the ledger, always scoped by ``tenant_id``."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet, Sum
from django.utils.translation import gettext as _

from shequn.core.errors import NotFound

from .models import Account, Entry, Transaction


def account_get(tenant_id: int, account_id: int) -> Account:
    acct = Account.objects.filter(tenant_id=tenant_id, pk=account_id).first()
    if acct is None:
        raise NotFound(_("账户不存在"), details={"field": "account_id"})
    return acct


def accounts_of(tenant_id: int, owner_type: str, owner_id: int) -> QuerySet[Account]:
    return Account.objects.filter(tenant_id=tenant_id, owner_type=owner_type, owner_id=owner_id).order_by("kind")


def account_balance(tenant_id: int, owner_type: str, owner_id: int, kind: str, currency: str = "CNY") -> int:
    """The cached balance (0 when the account does not exist yet)."""
    value = (
        Account.objects.filter(tenant_id=tenant_id, owner_type=owner_type, owner_id=owner_id, kind=kind,
                               currency=currency)
        .values_list("balance_fen", flat=True).first()
    )
    return int(value or 0)


def derived_balance(tenant_id: int, account_id: int, until: datetime | None = None) -> int:
    """The balance recomputed from entries (optionally up to ``until``)."""
    qs = Entry.objects.filter(tenant_id=tenant_id, account_id=account_id)
    if until is not None:
        qs = qs.filter(created_at__lte=until)
    return int(qs.aggregate(s=Sum("amount_fen"))["s"] or 0)


def entries_for_account(tenant_id: int, account_id: int) -> QuerySet[Entry]:
    return Entry.objects.filter(tenant_id=tenant_id, account_id=account_id).select_related("transaction")


def transactions_for_ref(tenant_id: int, ref_type: str, ref_id: object) -> QuerySet[Transaction]:
    return Transaction.objects.filter(tenant_id=tenant_id, ref_type=ref_type, ref_id=str(ref_id))
