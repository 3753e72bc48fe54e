"""Fault 2: ``kill -9`` of a worker in the middle of order-event delivery (commission posting).

120 orders are paid through the sandbox provider by an outside process with the production
settings, so each ``paid`` event's delivery is a row of the database task queue. ``shequn worker``
runs them (the referrals listener posts each commission to the ledger); it is killed with SIGKILL
while a task is RUNNING, then started again. django-tasks-db alone would leave that row RUNNING
for ever (a commission lost); ``shequn.core.taskqueue`` puts it back when the next worker starts.
Afterwards every order has exactly one commission and one ledger posting, the queue is empty and
the ledger balances."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from django.tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from shequn.ledger.models import Transaction
from shequn.ledger.services import check_ledger
from shequn.referrals.models import Commission
from shequn.referrals.services import do_create_plan, do_get_or_create_link

from ._harness import figures, wait_for
from .conftest import Shop

ORDERS = 120

PAY = """
import json
from shequn.commerce import services as c
from shequn.core.permissions import Principal
p = Principal.system(%(tenant)d)
for m in %(buyers)r:
    o = c.do_create_order(p, member_id=m, lines=[{"sku_id": %(sku)d, "quantity": 1}],
                          attribution={"invite_code": %(code)r})
    c.do_sandbox_pay(c.do_start_payment(p, o.pk).out_trade_no)
print(json.dumps({"paid": len(%(buyers)r)}))
"""


def test_kill_a_worker_mid_commission_posting(site):
    shop = Shop(ORDERS + 1)
    referrer, buyers = shop.members[0], shop.members[1:]
    do_create_plan(shop.system, name="分佣", refund_window_days=0, rules=[{"product_kind": "goods", "rate_bps": 1000}])
    link = do_get_or_create_link(shop.system, member_id=referrer)
    out = subprocess.run([sys.executable, "-m", "shequn.cli", "shell", "-c",
                          PAY % {"tenant": shop.tenant.pk, "buyers": buyers, "sku": shop.sku.pk, "code": link.code}],
                         env=site.env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"paid": ORDERS}
    queued = DBTaskResult.objects.filter(task_path__endswith="deliver_order_event").count()
    assert queued == ORDERS and Commission.objects.count() == 0

    site.start("worker", "worker", "--no-scheduler", "--no-realtime")
    wait_for(lambda: Commission.objects.count() >= ORDERS // 4, 120, "a quarter of the commissions")
    # kill while a task runs (claimed, not finished)
    wait_for(lambda: DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING).exists(), 30,
             "a running task", step=0.002)
    site.kill("worker")
    killed_at = time.monotonic()
    in_flight = DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING).count()
    before = Commission.objects.count()

    site.start("worker2", "worker", "--no-scheduler", "--no-realtime")
    wait_for(
        lambda: not DBTaskResult.objects.exclude(status=TaskResultStatus.SUCCESSFUL).exists(), 180,
        "the queue drained after the restart", step=0.1)
    recovery = time.monotonic() - killed_at

    per_order = Commission.objects.values_list("order_id", flat=True)
    orders_with = set(per_order)
    duplicated = len(per_order) - len(orders_with)
    postings = Transaction.objects.filter(tenant=shop.tenant).count()
    report = check_ledger(shop.tenant.pk)
    figures("kill_worker_mid_commission", attempts=ORDERS, committed=len(orders_with), before_kill=before,
            in_flight_at_kill=in_flight, lost=ORDERS - len(orders_with), duplicated=duplicated,
            ledger_postings=postings, ledger_ok=report.ok, recovery_seconds=recovery)
    assert in_flight >= 1, "the worker was not killed mid-task"
    assert len(orders_with) == ORDERS and duplicated == 0
    assert report.ok and report.transactions == postings
    delivered = DBTaskResult.objects.filter(task_path__endswith="deliver_order_event",
                                            status=TaskResultStatus.SUCCESSFUL)
    assert delivered.count() == ORDERS  # (each delivery also queued the activity dispatch: all done too)
