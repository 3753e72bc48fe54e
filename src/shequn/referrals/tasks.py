"""Referral scheduled work: thawing commissions after the refund window, payout reconciliation.

The payout task a withdrawal service enqueues (``execute_payout``) lives next to it in
:mod:`.services.withdrawals`; it is re-exported here so task rows queued under
``shequn.referrals.tasks.execute_payout`` still import."""

from __future__ import annotations

from datetime import timedelta

from crontask import cron
from django.tasks import task

from .services import do_reconcile_withdrawals, do_thaw_due
from .services.withdrawals import execute_payout

__all__ = ["execute_payout", "reconcile_payouts", "thaw_due_commissions"]


@cron("*/5 * * * *")
@task(queue_name="engines")
def thaw_due_commissions() -> int:
    return do_thaw_due()


@cron("*/10 * * * *")
@task(queue_name="engines")
def reconcile_payouts() -> int:
    return do_reconcile_withdrawals(older_than=timedelta(minutes=5))
