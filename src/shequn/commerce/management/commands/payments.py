"""``shequn payments reconcile [--tenant SLUG] [--days N]``: compare the payment provider's records
with ours and print every difference (exit status 1 when there are any)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from shequn.commerce.services import do_retry_pending_refunds, reconcile
from shequn.core.models import Tenant


class Command(BaseCommand):
    help = "Payments: `reconcile` (provider vs ours), `retry-refunds`"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["reconcile", "retry-refunds"])
        parser.add_argument("--tenant", help="tenant slug (default: every active tenant)")
        parser.add_argument("--days", type=int, default=None, help="only payments created in the last N days")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["action"] == "retry-refunds":
            self.stdout.write(f"re-submitted {do_retry_pending_refunds()} refunds")
            return
        tenants = Tenant.objects.filter(is_active=True)
        if opts["tenant"]:
            tenants = tenants.filter(slug=opts["tenant"])
            if not tenants.exists():
                raise CommandError(f"未知的组织 / unknown tenant: {opts['tenant']}")
        since = timezone.now() - dt.timedelta(days=opts["days"]) if opts["days"] else None
        total = 0
        for tenant in tenants.order_by("pk"):
            diffs = reconcile(tenant.pk, since=since)
            total += len(diffs)
            status = self.style.SUCCESS("一致 / clean") if not diffs else self.style.ERROR(f"{len(diffs)} 处差异")
            self.stdout.write(f"{tenant.slug}: {status}")
            for d in diffs:
                self.stdout.write(f"  {d.kind:<28} {d.out_no:<34} ours={d.ours:<22} provider={d.theirs}")
        if total:
            raise SystemExit(1)
