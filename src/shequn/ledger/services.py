"""Writers of the ledger. The one way money moves is :func:`do_post`.

Locking rule (every function here): a posting's accounts are updated in ascending id order with a
conditional ``UPDATE ... SET balance_fen = balance_fen + :amt WHERE id = :id AND (allow_negative OR
balance_fen + :amt >= 0)``, inside the caller's transaction. On PostgreSQL the UPDATE takes the row
lock and re-checks the condition against the latest committed balance, so concurrent debits can
never overdraw; on SQLite the IMMEDIATE transaction serialises writers. Callers that must read a
balance before posting (daily caps, etc.) call :func:`lock_accounts` first, which takes the same
locks in the same order.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Count, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import Conflict, Invalid

from .models import Account, Entry, OwnerType, Transaction

MAX_KEY = 191

Line = tuple[Account | int, int]


class InsufficientFunds(Conflict):
    code = "insufficient_funds"


def get_account(
    tenant_id: int,
    owner_type: str,
    owner_id: int,
    kind: str,
    *,
    allow_negative: bool = False,
    currency: str = "CNY",
) -> Account:
    """The account for (owner, kind, currency), created on first use.

    ``allow_negative`` only applies at creation (an existing account keeps its flag). Safe under
    concurrency: a lost creation race re-reads the winner's row."""
    if owner_type not in OwnerType.values:
        raise Invalid(_("未知的账户所有者类型: %(t)s") % {"t": owner_type}, details={"field": "owner_type"})
    lookup = {"tenant_id": tenant_id, "owner_type": owner_type, "owner_id": owner_id, "kind": kind,
              "currency": currency}
    acct = Account.objects.filter(**lookup).first()
    if acct is not None:
        return acct
    try:
        with transaction.atomic():
            return Account.objects.create(**lookup, allow_negative=allow_negative)
    except IntegrityError:
        return Account.objects.get(**lookup)


def _aggregate(tenant_id: int, lines: Sequence[Line]) -> dict[int, int]:
    if not lines:
        raise Invalid(_("记账凭证至少需要一条分录"), details={"field": "lines"})
    per_account: dict[int, int] = defaultdict(int)
    for i, line in enumerate(lines):
        try:
            account, amount = line
        except (TypeError, ValueError) as exc:
            raise Invalid(_("第 %(n)d 条分录格式错误") % {"n": i + 1}, details={"line": i + 1}) from exc
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise Invalid(_("第 %(n)d 条分录金额必须是整数(分)") % {"n": i + 1},
                          details={"line": i + 1, "field": "amount_fen"})
        account_id = account.pk if isinstance(account, Account) else int(account)
        if isinstance(account, Account) and account.tenant_id != tenant_id:
            raise Invalid(_("第 %(n)d 条分录的账户不属于本组织") % {"n": i + 1}, details={"line": i + 1})
        per_account[account_id] += amount
    if sum(per_account.values()) != 0:
        raise Invalid(_("借贷不平: 分录合计 %(s)d 分, 应为 0") % {"s": sum(per_account.values())},
                      details={"field": "lines", "sum": sum(per_account.values())})
    nonzero = {k: v for k, v in per_account.items() if v != 0}
    if not nonzero:
        raise Invalid(_("记账凭证的分录全部为 0"), details={"field": "lines"})
    return nonzero


def _lines_hash(kind: str, per_account: dict[int, int]) -> str:
    body = kind + "|" + ";".join(f"{a}:{v}" for a, v in sorted(per_account.items()))
    return hashlib.sha256(body.encode()).hexdigest()


def _replay(existing: Transaction, digest: str) -> Transaction:
    if existing.lines_hash != digest:
        raise Conflict(
            _("幂等键 %(k)s 已用于另一笔不同的记账") % {"k": existing.idempotency_key},
            code="idempotency_mismatch", details={"idempotency_key": existing.idempotency_key},
        )
    existing.replayed = True  # type: ignore[attr-defined]
    return existing


def do_post(
    tenant_id: int,
    idempotency_key: str,
    kind: str,
    lines: Sequence[Line],
    *,
    memo: str = "",
    ref: tuple[str, object] | None = None,
) -> Transaction:
    """Post one balanced transaction; return it (``.replayed`` is True when the key was used before).

    ``lines`` are ``(account_or_id, amount_fen)``; amounts are signed integers summing to zero (lines
    on the same account are netted). The same key with the same lines returns the first transaction
    and changes nothing; the same key with other lines raises :class:`Conflict`. A debit that would
    take a non-negative account below zero raises :class:`InsufficientFunds` and nothing is written.

    Locking: the transaction row is inserted first with ``ON CONFLICT DO NOTHING`` (a concurrent post
    with the same key waits on the unique index, then finds the row and replays); then accounts are
    updated in ascending id order with the conditional UPDATE described in the module docstring, all
    in one atomic block."""
    if not idempotency_key or len(idempotency_key) > MAX_KEY:
        raise Invalid(_("幂等键不能为空且不超过 %(n)d 个字符") % {"n": MAX_KEY},
                      details={"field": "idempotency_key"})
    per_account = _aggregate(tenant_id, lines)
    digest = _lines_hash(kind, per_account)
    ref_type, ref_id = (ref[0], str(ref[1])) if ref else ("", "")
    if connection.vendor == "postgresql":
        return _post_pg(tenant_id, idempotency_key, kind, per_account, digest=digest, memo=memo[:255],
                        ref_type=ref_type, ref_id=ref_id)
    txn_table, acct_table, entry_table = (Transaction._meta.db_table, Account._meta.db_table,
                                          Entry._meta.db_table)
    with transaction.atomic(), connection.cursor() as cur:
        now = timezone.now()
        at = connection.ops.adapt_datetimefield_value(now)
        # raw SQL: this is the hot path (ORM compilation cost more than the statements themselves)
        cur.execute(
            f"INSERT INTO {txn_table} (tenant_id, idempotency_key, kind, memo, ref_type, ref_id, lines_hash, "  # noqa: S608
            "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING id",
            [tenant_id, idempotency_key, kind, memo[:255], ref_type, ref_id, digest, at],
        )
        row = cur.fetchone()
        if row is None:  # the key was used before (a concurrent poster with it has committed)
            cur.execute(
                f"SELECT id, kind, memo, ref_type, ref_id, lines_hash, created_at FROM {txn_table} "  # noqa: S608
                "WHERE tenant_id = %s AND idempotency_key = %s", [tenant_id, idempotency_key])
            found = cur.fetchone()
            existing = Transaction(pk=found[0], tenant_id=tenant_id, idempotency_key=idempotency_key, kind=found[1],
                                   memo=found[2], ref_type=found[3], ref_id=found[4], lines_hash=found[5])
            existing._state.adding = False
            existing._state.db = "default"
            return _replay(existing, digest)
        txn_id = row[0]
        for account_id in sorted(per_account):
            amount = per_account[account_id]
            cur.execute(
                f"UPDATE {acct_table} SET balance_fen = balance_fen + %s "  # noqa: S608
                "WHERE id = %s AND tenant_id = %s AND (allow_negative OR balance_fen + %s >= 0)",
                [amount, account_id, tenant_id, amount],
            )
            if cur.rowcount != 1:
                if not Account.objects.filter(tenant_id=tenant_id, pk=account_id).exists():
                    raise Invalid(_("账户不存在或不属于本组织: %(ids)s") % {"ids": [account_id]},
                                  details={"accounts": [account_id]})
                raise InsufficientFunds(
                    _("账户余额不足: 账户 %(a)d 需扣减 %(n)d 分") % {"a": account_id, "n": -amount},
                    details={"account_id": account_id, "amount_fen": amount},
                )
        values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(per_account))
        params: list[int | str | None] = []
        for account_id, amount in sorted(per_account.items()):
            params += [tenant_id, txn_id, account_id, amount, at]
        cur.execute(
            f"INSERT INTO {entry_table} (tenant_id, transaction_id, account_id, amount_fen, created_at) "  # noqa: S608
            f"VALUES {values}",
            params,
        )
    txn = Transaction(pk=txn_id, tenant_id=tenant_id, idempotency_key=idempotency_key, kind=kind, memo=memo[:255],
                      ref_type=ref_type, ref_id=ref_id, lines_hash=digest, created_at=now)
    txn._state.adding = False
    txn._state.db = "default"
    txn.replayed = False  # type: ignore[attr-defined]
    return txn


def _load_existing(tenant_id: int, idempotency_key: str, digest: str) -> Transaction:
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT id, kind, memo, ref_type, ref_id, lines_hash FROM {Transaction._meta.db_table} "  # noqa: S608
            "WHERE tenant_id = %s AND idempotency_key = %s", [tenant_id, idempotency_key])
        found = cur.fetchone()
    existing = Transaction(pk=found[0], tenant_id=tenant_id, idempotency_key=idempotency_key, kind=found[1],
                           memo=found[2], ref_type=found[3], ref_id=found[4], lines_hash=found[5])
    existing._state.adding = False
    existing._state.db = "default"
    return _replay(existing, digest)


def _post_pg(tenant_id: int, idempotency_key: str, kind: str, per_account: dict[int, int], *, digest: str,
             memo: str, ref_type: str, ref_id: str) -> Transaction:
    """PostgreSQL: the posting is one call of the ``ledger_post`` function (migration 0002), so it
    costs one round trip in autocommit mode and three inside a caller's transaction (savepoint).
    Same statements, same id order, same idempotency as the portable path."""
    now = timezone.now()
    ids = sorted(per_account)
    amounts = [per_account[a] for a in ids]
    sql = "SELECT ledger_post(%s, %s, %s, %s, %s, %s, %s, %s, %s::bigint[], %s::bigint[])"
    params: list[Any] = [tenant_id, idempotency_key, kind, memo, ref_type, ref_id, digest, now, ids, amounts]

    def call() -> int:
        # the driver's own cursor: Django's wrapper (execute hooks, error translation) costs about a
        # quarter of a posting here; errors are translated below and the atomic block still rolls back
        # and a server-side-binding cursor, prepared after a few calls: no client-side quoting of the
        # parameters and no re-parsing of the statement on the server
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cur:
            cur.execute(sql, params, prepare=True)
            row = cur.fetchone()
            return int(row[0]) if row else 0


    try:
        if connection.get_autocommit() and not connection.in_atomic_block:
            txn_id = call()  # one statement = one transaction: all or nothing
        else:
            with transaction.atomic():
                txn_id = call()
    except psycopg.Error as exc:
        if exc.sqlstate != "LD001":
            raise DatabaseError(str(exc)) from exc
        detail = getattr(exc.diag, "message_detail", "") or "0:0"
        account_id, _sep, amount = str(detail).partition(":")
        if not Account.objects.filter(tenant_id=tenant_id, pk=int(account_id)).exists():
            raise Invalid(_("账户不存在或不属于本组织: %(ids)s") % {"ids": [int(account_id)]},
                          details={"accounts": [int(account_id)]}) from exc
        raise InsufficientFunds(
            _("账户余额不足: 账户 %(a)d 需扣减 %(n)d 分") % {"a": int(account_id), "n": -int(amount)},
            details={"account_id": int(account_id), "amount_fen": int(amount)},
        ) from exc
    if txn_id < 0:
        return _load_existing(tenant_id, idempotency_key, digest)
    txn = Transaction(pk=txn_id, tenant_id=tenant_id, idempotency_key=idempotency_key, kind=kind, memo=memo,
                      ref_type=ref_type, ref_id=ref_id, lines_hash=digest, created_at=now)
    txn._state.adding = False
    txn._state.db = "default"
    txn.replayed = False  # type: ignore[attr-defined]
    return txn


def do_reverse(tenant_id: int, original: Transaction, idempotency_key: str, *, memo: str = "") -> Transaction:
    """Post the exact opposite of ``original`` (same locking as :func:`do_post`)."""
    lines: list[Line] = [(e.account_id, -e.amount_fen) for e in original.entries.all()]
    return do_post(tenant_id, idempotency_key, f"reversal:{original.kind}"[:48], lines,
                   memo=memo or f"冲正 {original.idempotency_key}", ref=("ledger.Transaction", original.pk))


def lock_accounts(accounts: Iterable[Account]) -> list[Account]:
    """``SELECT ... FOR UPDATE`` the accounts in ascending id order (the same order do_post uses) and
    return fresh copies. Call inside ``transaction.atomic``. A no-op lock on SQLite (writers are
    already serialised by the IMMEDIATE transaction)."""
    ids = sorted({a.pk for a in accounts})
    return list(Account.objects.select_for_update().filter(pk__in=ids).order_by("pk"))


@dataclass
class LedgerCheck:
    tenant_id: int
    transactions: int = 0
    unbalanced: list[dict[str, Any]] = field(default_factory=list)
    balance_mismatch: list[dict[str, Any]] = field(default_factory=list)
    negative: list[dict[str, Any]] = field(default_factory=list)
    empty: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.unbalanced or self.balance_mismatch or self.negative or self.empty)


def check_ledger(tenant_id: int) -> LedgerCheck:
    """Verify the tenant's ledger: every transaction sums to zero and has entries, every cached
    balance equals the sum of its entries, and no non-negative account is below zero."""
    report = LedgerCheck(tenant_id=tenant_id)
    report.transactions = Transaction.objects.filter(tenant_id=tenant_id).count()
    sums = (
        Entry.objects.filter(tenant_id=tenant_id).values("transaction_id")
        .annotate(total=Sum("amount_fen")).exclude(total=0)
    )
    report.unbalanced = [{"transaction_id": r["transaction_id"], "sum": r["total"]} for r in sums]
    report.empty = list(
        Transaction.objects.filter(tenant_id=tenant_id).annotate(n=Count("entries")).filter(n=0)
        .values_list("pk", flat=True)
    )
    derived = dict(
        Entry.objects.filter(tenant_id=tenant_id).values("account_id").annotate(total=Sum("amount_fen"))
        .values_list("account_id", "total")
    )
    for acct in Account.objects.filter(tenant_id=tenant_id).only("pk", "balance_fen", "allow_negative"):
        total = derived.get(acct.pk, 0) or 0
        if total != acct.balance_fen:
            report.balance_mismatch.append({"account_id": acct.pk, "cached": acct.balance_fen, "entries": total})
        if not acct.allow_negative and total < 0:
            report.negative.append({"account_id": acct.pk, "balance": total})
    return report


def vendor() -> str:
    return connection.vendor
