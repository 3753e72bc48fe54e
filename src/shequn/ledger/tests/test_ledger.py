from __future__ import annotations

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shequn.core.errors import Conflict, Invalid
from shequn.core.models import Tenant
from shequn.core.testing import race
from shequn.ledger.models import Account, AppendOnlyError, Entry, Transaction
from shequn.ledger.selectors import derived_balance
from shequn.ledger.services import InsufficientFunds, check_ledger, do_post, do_reverse, get_account


def _accts(tenant_id: int):
    src = get_account(tenant_id, "merchant", tenant_id, "commission_expense", allow_negative=True)
    avail = get_account(tenant_id, "member", 1, "available")
    out = get_account(tenant_id, "member", 1, "paid_out")
    return src, avail, out


def test_post_moves_balances_and_balances(tenant):
    src, avail, _ = _accts(tenant.pk)
    txn = do_post(tenant.pk, "k1", "commission", [(src, -1990), (avail, 1990)], memo="入门佣金", ref=("order_line", 7))
    avail.refresh_from_db()
    src.refresh_from_db()
    assert (avail.balance_fen, src.balance_fen) == (1990, -1990)
    assert txn.ref_type == "order_line" and txn.ref_id == "7" and txn.replayed is False
    assert sum(e.amount_fen for e in txn.entries.all()) == 0
    assert check_ledger(tenant.pk).ok


def test_same_key_replays_and_never_credits_twice(tenant):
    src, avail, _ = _accts(tenant.pk)
    first = do_post(tenant.pk, "cb:wx:1", "commission", [(src, -500), (avail, 500)])
    again = do_post(tenant.pk, "cb:wx:1", "commission", [(avail, 500), (src.pk, -500)])
    assert again.pk == first.pk and again.replayed is True
    avail.refresh_from_db()
    assert avail.balance_fen == 500
    assert Transaction.objects.filter(tenant=tenant).count() == 1


def test_same_key_other_lines_is_a_conflict(tenant):
    src, avail, _ = _accts(tenant.pk)
    do_post(tenant.pk, "k", "commission", [(src, -500), (avail, 500)])
    with pytest.raises(Conflict) as exc:
        do_post(tenant.pk, "k", "commission", [(src, -600), (avail, 600)])
    assert exc.value.code == "idempotency_mismatch"


@pytest.mark.parametrize(
    "lines",
    [[], [("S", -1), ("A", 2)], [("S", 1.5), ("A", -1.5)], [("S", True), ("A", -1)], [("S", 5), ("S", -5)]],
)
def test_bad_lines_are_refused(tenant, lines):
    src, avail, _ = _accts(tenant.pk)
    names = {"S": src, "A": avail}
    with pytest.raises(Invalid):
        do_post(tenant.pk, "bad", "x", [(names[a], v) for a, v in lines])
    assert not Transaction.objects.filter(tenant=tenant).exists()


def test_foreign_account_is_refused(tenant, other_tenant):
    src, _, _ = _accts(tenant.pk)
    foreign = get_account(other_tenant.pk, "member", 1, "available")
    with pytest.raises(Invalid):
        do_post(tenant.pk, "x", "x", [(src, -1), (foreign.pk, 1)])
    with pytest.raises(Invalid):
        do_post(tenant.pk, "y", "x", [(src, -1), (foreign, 1)])


def test_overdraft_is_refused_and_nothing_is_written(tenant):
    src, avail, out = _accts(tenant.pk)
    do_post(tenant.pk, "in", "commission", [(src, -100), (avail, 100)])
    with pytest.raises(InsufficientFunds):
        do_post(tenant.pk, "out", "withdraw", [(avail, -101), (out, 101)])
    avail.refresh_from_db()
    assert avail.balance_fen == 100
    assert not Transaction.objects.filter(tenant=tenant, idempotency_key="out").exists()
    assert check_ledger(tenant.pk).ok


def test_entries_and_transactions_are_append_only(tenant):
    src, avail, _ = _accts(tenant.pk)
    txn = do_post(tenant.pk, "k", "commission", [(src, -100), (avail, 100)])
    entry = txn.entries.first()
    entry.amount_fen = 1
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        Entry.objects.filter(pk=entry.pk).delete()
    with pytest.raises(AppendOnlyError):
        Entry.objects.filter(pk=entry.pk).update(amount_fen=5)
    with pytest.raises(AppendOnlyError):
        txn.save()
    with pytest.raises(AppendOnlyError):
        Transaction.objects.all().delete()
    avail.balance_fen = 10**9
    avail.save()  # the balance is not a savable field
    avail.refresh_from_db()
    assert avail.balance_fen == 100


def test_reverse_restores_balances(tenant):
    src, avail, _ = _accts(tenant.pk)
    txn = do_post(tenant.pk, "k", "commission", [(src, -100), (avail, 100)])
    do_reverse(tenant.pk, txn, "k:rev")
    do_reverse(tenant.pk, txn, "k:rev")  # retried task: no second reversal
    avail.refresh_from_db()
    assert avail.balance_fen == 0
    assert check_ledger(tenant.pk).ok


def test_check_ledger_detects_tampering(tenant):
    src, avail, _ = _accts(tenant.pk)
    do_post(tenant.pk, "k", "commission", [(src, -100), (avail, 100)])
    with connection.cursor() as cur:
        cur.execute("UPDATE ledger_account SET balance_fen = 999 WHERE id = %s", [avail.pk])
        cur.execute("UPDATE ledger_entry SET amount_fen = 50 WHERE account_id = %s", [src.pk])
    report = check_ledger(tenant.pk)
    assert not report.ok
    assert report.unbalanced and report.balance_mismatch


# --- properties -----------------------------------------------------------------------------------

_ops = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(1, 5000)),
    min_size=1, max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_property_balanced_and_never_negative(tenant, ops):
    """Random transfers between 5 accounts (0 may go negative, the others may not): every posting
    either applies fully or not at all, every transaction sums to zero, cached == derived balances,
    and no non-negative account ever drops below zero."""
    with transaction.atomic():
        accts = [get_account(tenant.pk, "merchant", 0, "clearing", allow_negative=True)] + [
            get_account(tenant.pk, "member", i, "available") for i in range(1, 5)
        ]
        model = [0] * 5
        for n, (a, b, amt) in enumerate(ops):
            if a == b:
                continue
            try:
                do_post(tenant.pk, f"p{n}", "t", [(accts[a], -amt), (accts[b], amt)])
            except InsufficientFunds:
                assert a != 0 and model[a] - amt < 0
                continue
            model[a] -= amt
            model[b] += amt
        report = check_ledger(tenant.pk)
        assert report.ok, report
        for i, acct in enumerate(accts):
            acct.refresh_from_db()
            assert acct.balance_fen == model[i] == derived_balance(tenant.pk, acct.pk)
            if i:
                assert acct.balance_fen >= 0
        for txn in Transaction.objects.filter(tenant=tenant):
            assert sum(e.amount_fen for e in txn.entries.all()) == 0
        transaction.set_rollback(True)


# --- concurrency (PostgreSQL) ---------------------------------------------------------------------


def _run_threads(n, target):
    return race(target, n)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_100_concurrent_withdrawals_never_overdraw():
    tenant = Tenant.objects.create(slug="conc", name="并发")
    src, avail, out = _accts(tenant.pk)
    do_post(tenant.pk, "fund", "commission", [(src, -3700), (avail, 3700)])

    def withdraw(i):
        return do_post(tenant.pk, f"wd:{i}", "withdraw", [(avail.pk, -100), (out.pk, 100)])

    results = _run_threads(100, withdraw)
    ok = [r for r in results if isinstance(r, Transaction)]
    refused = [r for r in results if isinstance(r, InsufficientFunds)]
    assert len(ok) == 37 and len(refused) == 63, [r for r in results if not isinstance(r, (Transaction, Conflict))]
    avail.refresh_from_db()
    out.refresh_from_db()
    assert avail.balance_fen == 0 and out.balance_fen == 3700
    assert check_ledger(tenant.pk).ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_of_one_key_credit_once():
    tenant = Tenant.objects.create(slug="replay", name="重放")
    src, avail, _ = _accts(tenant.pk)

    def credit(_i):
        return do_post(tenant.pk, "wx-callback-42", "commission", [(src.pk, -1990), (avail.pk, 1990)])

    results = _run_threads(30, credit)
    assert all(isinstance(r, Transaction) for r in results), results
    assert len({r.pk for r in results}) == 1
    avail.refresh_from_db()
    assert avail.balance_fen == 1990
    assert check_ledger(tenant.pk).ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_opposite_transfers_do_not_deadlock():
    """Accounts are locked in id order, so A→B and B→A postings racing never deadlock."""
    tenant = Tenant.objects.create(slug="dl", name="死锁")
    src = get_account(tenant.pk, "merchant", 0, "clearing", allow_negative=True)
    a = get_account(tenant.pk, "member", 1, "available")
    b = get_account(tenant.pk, "member", 2, "available")
    do_post(tenant.pk, "fa", "t", [(src, -100000), (a, 50000), (b, 50000)])

    def move(i):
        x, y = (a, b) if i % 2 else (b, a)
        return do_post(tenant.pk, f"m{i}", "t", [(x.pk, -10), (y.pk, 10)])

    results = _run_threads(40, move)
    assert all(isinstance(r, Transaction) for r in results), results
    assert check_ledger(tenant.pk).ok
    assert Account.objects.get(pk=a.pk).balance_fen + Account.objects.get(pk=b.pk).balance_fen == 100000
