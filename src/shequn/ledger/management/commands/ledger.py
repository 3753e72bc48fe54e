"""``shequn ledger check [--tenant SLUG]``: the ledger integrity check from the command line.

The same check as the nightly task (``check_all_ledgers``): every transaction has entries and sums
to zero, every cached balance equals the sum of its entries, no non-negative account is below zero.
Prints one line per tenant and exits 1 when any tenant's books do not balance (after a restore, a
fault test, or any time an operator doubts them)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shequn.core.models import Tenant
from shequn.ledger.services import check_ledger


class Command(BaseCommand):
    help = "Check that every tenant's ledger balances."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        check = sub.add_parser("check", help="verify the books (exit 1 when they do not balance)")
        check.add_argument("--tenant", default=None, help="tenant slug (default: every tenant)")

    def handle(self, *args: Any, **opts: Any) -> None:
        tenants = Tenant.objects.order_by("pk")
        if opts.get("tenant"):
            tenants = tenants.filter(slug=opts["tenant"])
            if not tenants.exists():
                raise CommandError(f"租户不存在 / unknown tenant: {opts['tenant']}")
        bad = 0
        for tenant in tenants:
            r = check_ledger(tenant.pk)
            state = "ok" if r.ok else "NOT BALANCED"
            self.stdout.write(f"{tenant.slug}: {state} — {r.transactions} transactions, {len(r.unbalanced)} "
                              f"unbalanced, {len(r.balance_mismatch)} balance mismatches, {len(r.negative)} "
                              f"negative, {len(r.empty)} empty")
            bad += not r.ok
        if bad:
            raise CommandError(f"{bad} tenant(s) with books that do not balance")
