"""Ledger tasks: a nightly integrity check of every tenant's books."""

from __future__ import annotations

import logging

from crontask import cron
from django.tasks import task

from shequn.core.models import Tenant

from .services import check_ledger

log = logging.getLogger(__name__)


@cron("17 3 * * *")
@task()
def check_all_ledgers() -> int:
    """Run :func:`check_ledger` for every tenant; log (and count) tenants whose books do not balance."""
    bad = 0
    for tenant_id in Tenant.objects.values_list("pk", flat=True):
        report = check_ledger(tenant_id)
        if not report.ok:
            bad += 1
            log.error("ledger check failed for tenant %s: %d unbalanced, %d mismatched, %d negative",
                      tenant_id, len(report.unbalanced), len(report.balance_mismatch), len(report.negative))
    return bad
