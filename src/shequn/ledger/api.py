"""Ledger reads at /api/v1/ledger/ (finance.read): accounts of an owner, an account's entries, a check."""

from datetime import datetime

from django.http import HttpRequest
from ninja import Router, Schema

from shequn.core.http import ERRORS, Id, require
from shequn.core.pagination import KeysetPagination, paginate

from . import selectors
from .models import Entry
from .services import check_ledger

router = Router(tags=["ledger"])


class AccountOut(Schema):
    id: int
    owner_type: str
    owner_id: int
    kind: str
    currency: str
    balance_fen: int
    allow_negative: bool


class LedgerEntryOut(Schema):
    id: int
    transaction_id: int
    amount_fen: int
    created_at: datetime
    kind: str
    memo: str
    ref_type: str
    ref_id: str

    @staticmethod
    def resolve_kind(obj: Entry) -> str:
        return str(obj.transaction.kind)

    @staticmethod
    def resolve_memo(obj: Entry) -> str:
        return str(obj.transaction.memo)

    @staticmethod
    def resolve_ref_type(obj: Entry) -> str:
        return str(obj.transaction.ref_type)

    @staticmethod
    def resolve_ref_id(obj: Entry) -> str:
        return str(obj.transaction.ref_id)


class CheckOut(Schema):
    ok: bool
    transactions: int
    unbalanced: list[dict[str, int]]
    balance_mismatch: list[dict[str, int]]
    negative: list[dict[str, int]]


@router.get("/accounts", response={200: list[AccountOut], **ERRORS})
def list_accounts(request: HttpRequest, owner_type: str, owner_id: Id) -> object:
    p = require(request, "finance.read")
    return list(selectors.accounts_of(p.tenant_id, owner_type, owner_id))


@router.get("/accounts/{account_id}/entries", response={200: list[LedgerEntryOut], **ERRORS})
@paginate(KeysetPagination)
def list_entries(request: HttpRequest, account_id: Id) -> object:
    p = require(request, "finance.read")
    selectors.account_get(p.tenant_id, account_id)
    return selectors.entries_for_account(p.tenant_id, account_id)


@router.get("/check", response={200: CheckOut, **ERRORS})
def check(request: HttpRequest) -> object:
    p = require(request, "finance.read")
    r = check_ledger(p.tenant_id)
    return {"ok": r.ok, "transactions": r.transactions, "unbalanced": r.unbalanced,
            "balance_mismatch": r.balance_mismatch, "negative": r.negative}
