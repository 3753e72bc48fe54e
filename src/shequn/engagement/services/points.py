"""The points ledger. Money rule: balances change only by conditional ``UPDATE … SET balance = balance ± x``
on the member's :class:`PointsAccount` row (the row lock is held until commit), together with the
:class:`PointsEntry` insert; every entry carries a unique idempotency key, so a repeat returns the
first entry. Spends never overdraw (``WHERE balance >= x``, CHECK ``balance >= 0`` as backstop)."""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils.translation import gettext as _

from shequn.core.errors import Conflict, Invalid
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.selectors import check_member_level

from ..models import PointsAccount, PointsEntry


def _ensure_account(tenant_id: int, member_id: int) -> None:
    if not PointsAccount.objects.filter(tenant_id=tenant_id, member_id=member_id).exists():
        try:
            with transaction.atomic():
                PointsAccount.objects.create(tenant_id=tenant_id, member_id=member_id)
        except IntegrityError:
            pass  # created concurrently


def _existing_entry(tenant_id: int, key: str) -> PointsEntry | None:
    return PointsEntry.objects.filter(tenant_id=tenant_id, idempotency_key=key).first()


def do_points_earn(tenant_id: int, member_id: int, amount: int, *, kind: str, idempotency_key: str,
                   reason: str = "") -> PointsEntry:
    """Credit points. Locking: one conditional ``UPDATE … SET balance = balance + x`` on the member's
    account row (row lock until commit) and the entry insert, together in a savepoint; the unique
    idempotency key makes a repeat return the first entry and roll back its own increment."""
    if amount <= 0:
        raise Invalid(_("积分数量必须为正数"), details={"field": "amount"})
    check_member_level(tenant_id, member_id)
    if (found := _existing_entry(tenant_id, idempotency_key)) is not None:
        return found
    _ensure_account(tenant_id, member_id)
    try:
        with transaction.atomic():
            PointsAccount.objects.filter(tenant_id=tenant_id, member_id=member_id).update(
                balance=F("balance") + amount, earned_total=F("earned_total") + amount)
            balance = PointsAccount.objects.filter(tenant_id=tenant_id, member_id=member_id).values_list(
                "balance", flat=True).get()
            return PointsEntry.objects.create(tenant_id=tenant_id, member_id=member_id, delta=amount,
                                              balance_after=balance, kind=kind, reason=reason[:200],
                                              idempotency_key=idempotency_key)
    except IntegrityError:
        found = _existing_entry(tenant_id, idempotency_key)
        if found is None:
            raise
        return found


def do_points_credit_new(tenant_id: int, member_id: int, amount: int, *, kind: str, idempotency_key: str,
                         reason: str = "") -> int:
    """Credit points for a caller that has checked the member and holds a lock that makes this key new
    (the check-in: the member's check-in row is locked and today's check-in was just inserted), in the
    caller's transaction: one ``UPDATE … SET balance = balance + x … RETURNING balance`` on the account
    row (row lock until commit; the account is created first when missing) and the entry insert — what
    :func:`do_points_earn` does without its member check, key lookup and savepoint. A repeated key is
    still refused by the unique index (the caller's transaction fails). Returns the new balance."""
    if amount <= 0:
        raise Invalid(_("积分数量必须为正数"), details={"field": "amount"})
    table = PointsAccount._meta.db_table
    sql = (f"UPDATE {table} SET balance = balance + %s, earned_total = earned_total + %s "  # noqa: S608 (names from the model)
           "WHERE tenant_id = %s AND member_id = %s RETURNING balance")
    with connection.cursor() as cursor:
        cursor.execute(sql, [amount, amount, tenant_id, member_id])
        row = cursor.fetchone()
        if row is None:
            PointsAccount.objects.bulk_create([PointsAccount(tenant_id=tenant_id, member_id=member_id)],
                                              ignore_conflicts=True)
            cursor.execute(sql, [amount, amount, tenant_id, member_id])
            row = cursor.fetchone()
    balance = int(row[0])
    PointsEntry.objects.create(tenant_id=tenant_id, member_id=member_id, delta=amount, balance_after=balance,
                               kind=kind, reason=reason[:200], idempotency_key=idempotency_key)
    return balance


class RewardTask(Protocol):
    """What engagement reads of a referrals ``FissionTask`` (engagement never imports referrals)."""

    pk: Any
    name: str
    reward_value: int


def grant_fission_points(tenant_id: int, member_id: int, task: RewardTask) -> None:
    """Referrals' ``points`` fission reward (registered with ``register_reward_hook`` in
    ``EngagementConfig.ready``): credits ``task.reward_value`` points, once per task and member
    (idempotency key ``fission:<task>:<member>``, the key referrals uses for the cash reward)."""
    if task.reward_value > 0:
        do_points_earn(tenant_id, member_id, int(task.reward_value), kind="fission",
                       idempotency_key=f"fission:{task.pk}:{member_id}", reason=str(task.name)[:200])


def do_points_earn_many(tenant_id: int, items: Sequence[tuple[int, int, str, str]]) -> int:
    """Credit many ``(member_id, amount, kind, idempotency_key)`` at once (the activity consumer's path).

    Locking: per member one ``UPDATE … SET balance = balance + Σ`` (row lock until commit), members in
    ascending id order; entries are bulk-inserted with their running ``balance_after``. Keys already
    used are skipped; if a concurrent writer claims one of the keys first, the savepoint rolls back
    and the items are retried one by one through :func:`do_points_earn`. Returns entries written."""
    fresh = [it for it in items if it[1] > 0]
    if not fresh:
        return 0
    keys = [it[3] for it in fresh]
    used = set(PointsEntry.objects.filter(tenant_id=tenant_id, idempotency_key__in=keys)
               .values_list("idempotency_key", flat=True))
    seen: set[str] = set()
    todo = []
    for it in fresh:
        if it[3] not in used and it[3] not in seen:
            seen.add(it[3])
            todo.append(it)
    if not todo:
        return 0
    member_ids = sorted({it[0] for it in todo})
    have = set(PointsAccount.objects.filter(tenant_id=tenant_id, member_id__in=member_ids)
               .values_list("member_id", flat=True))
    missing = [m for m in member_ids if m not in have]
    if missing:
        PointsAccount.objects.bulk_create([PointsAccount(tenant_id=tenant_id, member_id=m) for m in missing],
                                          ignore_conflicts=True)
    by_member: dict[int, list[tuple[int, int, str, str]]] = defaultdict(list)
    for it in todo:
        by_member[it[0]].append(it)
    try:
        with transaction.atomic():
            for m in member_ids:
                total = sum(it[1] for it in by_member[m])
                PointsAccount.objects.filter(tenant_id=tenant_id, member_id=m).update(
                    balance=F("balance") + total, earned_total=F("earned_total") + total)
            balances = dict(PointsAccount.objects.filter(tenant_id=tenant_id, member_id__in=member_ids)
                            .values_list("member_id", "balance"))
            rows = []
            for m in member_ids:
                running = balances[m] - sum(it[1] for it in by_member[m])
                for _m, amount, kind, key in by_member[m]:
                    running += amount
                    rows.append(PointsEntry(tenant_id=tenant_id, member_id=m, delta=amount, balance_after=running,
                                            kind=kind, idempotency_key=key))
            PointsEntry.objects.bulk_create(rows, batch_size=500)
            return len(rows)
    except IntegrityError:
        for m, amount, kind, key in todo:
            do_points_earn(tenant_id, m, amount, kind=kind, idempotency_key=key)
        return len(todo)


def do_points_spend(tenant_id: int, member_id: int, amount: int, *, kind: str, idempotency_key: str,
                    reason: str = "") -> PointsEntry:
    """Debit points; never below zero. Locking: ``UPDATE … SET balance = balance − x WHERE balance >= x``
    (PostgreSQL re-checks the condition on the latest row version after waiting for the row lock, so
    concurrent spends cannot overdraw); 0 rows → :class:`Conflict` "积分不足". The CHECK constraint
    ``balance >= 0`` is the backstop. Idempotent on ``idempotency_key`` like :func:`do_points_earn`."""
    if amount <= 0:
        raise Invalid(_("积分数量必须为正数"), details={"field": "amount"})
    check_member_level(tenant_id, member_id)
    if (found := _existing_entry(tenant_id, idempotency_key)) is not None:
        return found
    _ensure_account(tenant_id, member_id)
    try:
        with transaction.atomic():
            n = PointsAccount.objects.filter(tenant_id=tenant_id, member_id=member_id, balance__gte=amount).update(
                balance=F("balance") - amount, spent_total=F("spent_total") + amount)
            if n != 1:
                raise Conflict(_("积分不足"), code="insufficient_points", details={"field": "amount"})
            balance = PointsAccount.objects.filter(tenant_id=tenant_id, member_id=member_id).values_list(
                "balance", flat=True).get()
            return PointsEntry.objects.create(tenant_id=tenant_id, member_id=member_id, delta=-amount,
                                              balance_after=balance, kind=kind, reason=reason[:200],
                                              idempotency_key=idempotency_key)
    except IntegrityError:
        found = _existing_entry(tenant_id, idempotency_key)
        if found is None:
            raise
        return found


def do_points_adjust(principal: Principal, member_id: int, amount: int, *, reason: str) -> PointsEntry:
    """An operator's manual grant (amount > 0) or deduction (< 0), audited."""
    if not reason.strip():
        raise Invalid(_("请填写调整原因"), details={"field": "reason"})
    key = f"adjust:{secrets.token_hex(8)}"
    with transaction.atomic():
        if amount > 0:
            entry = do_points_earn(principal.tenant_id, member_id, amount, kind="adjust", idempotency_key=key,
                                   reason=reason)
        elif amount < 0:
            entry = do_points_spend(principal.tenant_id, member_id, -amount, kind="adjust", idempotency_key=key,
                                    reason=reason)
        else:
            raise Invalid(_("积分数量不能为 0"), details={"field": "amount"})
        do_audit(principal, "engagement.points.adjust", "member", str(member_id), reason=reason,
                 data={"amount": amount})
    return entry
