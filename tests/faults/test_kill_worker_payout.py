"""Fault 2 (continued): ``kill -9`` of a worker in the middle of payouts.

60 members each earned a commission and asked to withdraw it; the tenant pays through the WeChat
Pay merchant transfer (商家转账到零钱), whose peer is a local WeChat Pay v3 server
(``referrals/tests/wechatpay_fake.py``: recorded responses signed with a test platform key, batches
de-duplicated on ``out_batch_no`` as WeChat Pay does) that sleeps after accepting a batch before it
answers. A finance approval — made by an outside process with the production settings, so each
``execute_payout`` is a row of the database task queue — queues the 60 payouts; ``shequn worker``
runs them and is killed with SIGKILL while WeChat Pay is answering (the batch accepted, the outcome
not yet committed: the worker's transaction dies with it, the withdrawal stays ``approved`` and its
task ``RUNNING``), then started again. ``shequn.core.taskqueue`` requeues the task; the payout is
sent again with the same ``out_no``, WeChat Pay answers "duplicate" and the provider asks for the
transfer's state instead. The reconciliation job (``do_reconcile_withdrawals``, run here as the
cron task runs it) books the transfers WeChat Pay reports done.

Afterwards each withdrawal was accepted at WeChat Pay exactly once (one batch per ``out_no``, for its
amount), is ``paid`` with exactly one ``paid`` ledger posting, none is stuck, the queue is empty and
the ledger balances."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
import time
from typing import Any

from django.tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.ledger.models import Transaction
from shequn.ledger.services import check_ledger
from shequn.referrals.models import ReferralPolicy, Withdrawal, WithdrawalStatus
from shequn.referrals.services import (
    do_create_plan,
    do_get_or_create_link,
    do_reconcile_withdrawals,
    do_request_withdrawal,
    do_save_wechatpay_config,
    do_set_payout_provider,
    on_order_event,
)
from shequn.referrals.tests.wechatpay_fake import FakeWeChatPay
from shequn.testing.factories import MemberFactory, order_line, paid_event

from ._harness import figures, wait_for

WITHDRAWALS = 60
AMOUNT = 1500  # of each member's 19.90
#: what WeChat Pay sleeps after accepting a batch, before it answers
PEER_DELAY = 0.15

APPROVE = """
import json
from shequn.core.permissions import Principal
from shequn.referrals.services import do_approve_withdrawal
p = Principal.system(%(tenant)d)
for w in %(ids)r:
    do_approve_withdrawal(p, w)
print(json.dumps({"approved": len(%(ids)r)}))
"""


class SlowWeChatPay(FakeWeChatPay):
    """The WeChat Pay fake, answering a transfer batch only ``PEER_DELAY`` after it is accepted
    (``batches``); ``in_flight`` counts the batches accepted but not yet answered."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.lock = threading.Lock()
        fake = self
        base: Any = self.server.RequestHandlerClass

        class Slow(base):  # type: ignore[misc,valid-type]
            def _send(self, name: str, out_no: str) -> None:
                if self.command != "POST":
                    return super()._send(name, out_no)
                with fake.lock:
                    fake.in_flight += 1
                try:
                    time.sleep(PEER_DELAY)
                    super()._send(name, out_no)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

        self.server.RequestHandlerClass = Slow
        # the answer to the killed worker goes into a closed socket: not an error of the test
        self.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]


def test_kill_a_worker_mid_payout(site, settings):
    fake = SlowWeChatPay()
    settings.SHEQUN = {**settings.SHEQUN, "WECHATPAY_GATEWAY": fake.url}  # for the reconciliation here
    site.env["SHEQUN_WECHATPAY_GATEWAY"] = fake.url  # for the worker
    try:
        tenant = Tenant.objects.create(slug="fault", name="故障演练")
        p = Principal.system(tenant.pk)
        # every withdrawal waits for finance: the approval (outside) queues the payout tasks
        ReferralPolicy.objects.update_or_create(tenant=tenant, defaults={"withdrawal_approval_above_fen": 0})
        do_save_wechatpay_config(p, **fake.config_fields())
        do_set_payout_provider(p, "wechat")
        do_create_plan(p, name="分佣", refund_window_days=0, rules=[{"rate_bps": 10000}])
        ids = []
        for i in range(WITHDRAWALS):
            earner = MemberFactory(tenant=tenant, display_name=f"推广员{i}")
            link = do_get_or_create_link(p, member_id=earner.pk)
            on_order_event(paid_event(tenant, MemberFactory(tenant=tenant, display_name=f"买家{i}"),
                                      [order_line("entry", 1990)], code=link.code))
            w = do_request_withdrawal(p, member_id=earner.pk, amount_fen=AMOUNT, idempotency_key=f"fault-wd-{i}",
                                      payee=f"openid-{i}")
            assert w.status == WithdrawalStatus.REQUESTED
            ids.append(w.pk)
        fake.status = "detail_success"  # WeChat Pay completes each accepted transfer
        out = subprocess.run([sys.executable, "-m", "shequn.cli", "shell", "-c",
                              APPROVE % {"tenant": tenant.pk, "ids": ids}],
                             env=site.env, capture_output=True, text=True, timeout=300, check=False)
        assert out.returncode == 0, out.stderr[-3000:]
        assert json.loads(out.stdout.strip().splitlines()[-1]) == {"approved": WITHDRAWALS}
        payouts = DBTaskResult.objects.filter(task_path__endswith="execute_payout")
        assert payouts.count() == WITHDRAWALS and not fake.posts

        site.start("worker", "worker", "--no-scheduler", "--no-realtime")
        wait_for(lambda: len(fake.batches) >= WITHDRAWALS // 4, 120, "a quarter of the transfers accepted")
        # kill while WeChat Pay answers: the batch accepted, the outcome not committed
        wait_for(lambda: fake.in_flight > 0, 30, "a transfer in flight", step=0.002)
        site.kill("worker")
        killed_at = time.monotonic()
        running = payouts.filter(status=TaskResultStatus.RUNNING).count()
        accepted_at_kill = len(fake.batches)
        approved_but_accepted = Withdrawal.objects.filter(
            tenant=tenant, status=WithdrawalStatus.APPROVED, out_no__in=list(fake.batches)).count()

        site.start("worker2", "worker", "--no-scheduler", "--no-realtime")
        wait_for(lambda: not DBTaskResult.objects.exclude(status=TaskResultStatus.SUCCESSFUL).exists(), 150,
                 "the queue drained after the restart", step=0.1)
        reconciled = do_reconcile_withdrawals(tenant.pk)  # the reconcile_payouts cron task's work
        recovery = time.monotonic() - killed_at
    finally:
        fake.close()

    rows = {w.out_no: w for w in Withdrawal.objects.filter(tenant=tenant)}
    posts = collections.Counter(post["body"]["out_batch_no"] for post in fake.posts)
    paid = [w for w in rows.values() if w.status == WithdrawalStatus.PAID]
    paid_postings = collections.Counter(
        Transaction.objects.filter(tenant=tenant, kind="withdrawal.paid").values_list("ref_id", flat=True))
    report = check_ledger(tenant.pk)
    figures("kill_worker_mid_payout", attempts=WITHDRAWALS, committed=len(paid), transfers_accepted=len(fake.batches),
            lost=WITHDRAWALS - len(paid), duplicated=sum(n - 1 for n in paid_postings.values()),
            in_flight_at_kill=running, accepted_at_kill=accepted_at_kill,
            accepted_not_recorded_at_kill=approved_but_accepted,
            resent_deduplicated=sum(n - 1 for n in posts.values()), reconciled=reconciled,
            ledger_postings=Transaction.objects.filter(tenant=tenant).count(), ledger_ok=report.ok,
            recovery_seconds=recovery)

    assert running >= 1 and approved_but_accepted >= 1, "the worker was not killed between transfer and record"
    # WeChat Pay accepted one batch per withdrawal, under its out_no, for its amount
    assert set(fake.batches) == set(rows) and set(posts) == set(rows)
    for out_no, batch in fake.batches.items():
        w = rows[out_no]
        detail = batch["transfer_detail_list"]
        assert len(detail) == 1 and detail[0]["out_detail_no"] == out_no
        assert batch["total_amount"] == detail[0]["transfer_amount"] == w.amount_fen - w.fee_fen
    # a re-sent batch is the same request again: what de-duplication relies on
    for post in fake.posts:
        assert post["body"] == fake.batches[post["body"]["out_batch_no"]]
    # each paid once in the books, none stuck
    assert len(paid) == WITHDRAWALS, collections.Counter(w.status for w in rows.values())
    assert paid_postings == {str(w.pk): 1 for w in rows.values()}
    assert report.ok and report.transactions == Transaction.objects.filter(tenant=tenant).count()
    assert not DBTaskResult.objects.exclude(status=TaskResultStatus.SUCCESSFUL).exists()
