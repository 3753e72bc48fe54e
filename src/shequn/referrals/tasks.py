"""Referral tasks: payouts, thawing commissions after the refund window, payout reconciliation."""

from __future__ import annotations

from crontask import cron
from django.tasks import task


@task(queue_name="engines")
def execute_payout(tenant_id: int, withdrawal_id: int) -> str:
    from .services import do_execute_payout

    return str(do_execute_payout(tenant_id, withdrawal_id).status)


@cron("*/5 * * * *")
@task(queue_name="engines")
def thaw_due_commissions() -> int:
    from .services import do_thaw_due

    return do_thaw_due()


@cron("*/10 * * * *")
@task(queue_name="engines")
def reconcile_payouts() -> int:
    from datetime import timedelta

    from .services import do_reconcile_withdrawals

    return do_reconcile_withdrawals(older_than=timedelta(minutes=5))
