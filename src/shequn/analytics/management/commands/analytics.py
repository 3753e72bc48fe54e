"""``shequn analytics rebuild [--tenant SLUG]``: recompute every rollup from scratch;
``shequn analytics refresh``: recompute the dirty days now (what the scheduled task does)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shequn.analytics.services import do_rebuild, do_refresh
from shequn.core.models import Tenant


class Command(BaseCommand):
    help = "Analytics: `rebuild` (from scratch), `refresh` (dirty days only)"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["rebuild", "refresh"])
        parser.add_argument("--tenant", help="tenant slug (default: every active tenant)")

    def handle(self, *args: Any, **opts: Any) -> None:
        tenants = Tenant.objects.filter(is_active=True)
        if opts["tenant"]:
            tenants = tenants.filter(slug=opts["tenant"])
            if not tenants.exists():
                raise CommandError(f"未知的组织 / unknown tenant: {opts['tenant']}")
        for tenant in tenants.order_by("pk"):
            started = time.perf_counter()
            n = do_rebuild(tenant.pk) if opts["action"] == "rebuild" else do_refresh(tenant.pk)
            self.stdout.write(f"{tenant.slug}: {n} days in {time.perf_counter() - started:.1f} s")
