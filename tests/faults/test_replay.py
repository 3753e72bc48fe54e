"""Fault 5: the same payment callbacks and inbound platform events, replayed from 3 processes at once.

40 signed sandbox payment notifications and 40 Telegram webhook updates are each posted by three
separate client processes at the same moment, in different orders, to two gunicorn workers
(``shequn serve``); a worker processes what was stored. Each payment is applied once (one ``paid``
order event, ``paid_fen`` = total, one ``paid`` callback log and the rest ``duplicate``); each
update is stored once and becomes one activity event."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

from shequn.activity.models import ActivityEvent
from shequn.commerce import services as commerce
from shequn.commerce.gateways import SandboxGateway
from shequn.commerce.models import Order, OrderEvent, Payment, PaymentCallback
from shequn.communities.models import Community
from shequn.connectors.models import InboundEvent
from shequn.connectors.services import do_create_connection
from shequn.connectors.tests import telegram_payloads as P
from shequn.connectors.tests.fake_server import FakeServer

from ._harness import figures, wait_for
from .conftest import Shop

N = 40
SECRET = "replay-Secret_1"

CLIENT = r"""
import http.client, json, random, sys, time
port, path, seed, start = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
calls = json.load(open(path))
random.Random(seed).shuffle(calls)
while time.time() < start:
    time.sleep(0.001)
codes = {}
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for url, headers, body in calls:
    for attempt in range(20):
        try:
            c.request("POST", url, body=body.encode(), headers=headers)
            r = c.getresponse(); r.read()
            if r.status < 500:
                break
        except OSError:
            c.close(); c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        time.sleep(0.1)
    codes[str(r.status)] = codes.get(str(r.status), 0) + 1
print(json.dumps(codes))
"""


def test_callbacks_and_platform_events_replayed_from_three_processes(site, tmp_path: Path):
    shop = Shop(N)
    calls: list[tuple[str, dict[str, str], str]] = []
    orders = []
    for m in shop.members:
        o = commerce.do_create_order(shop.system, member_id=m, lines=[{"sku_id": shop.sku.pk, "quantity": 1}])
        p = commerce.do_start_payment(shop.system, o.pk)
        headers, body = SandboxGateway().pay(p.out_trade_no, p.amount_fen)
        calls.append((f"/api/v1/commerce/payments/callback/{shop.tenant.slug}/sandbox",
                      {**headers, "Content-Type": "application/json"}, body.decode()))
        orders.append(o.pk)
    with FakeServer(lambda name, fields: (200, P.SENT if name.startswith("send") else P.TRUE)) as api:
        community = Community.objects.create(tenant=shop.tenant, name="护肤群")
        conn = do_create_connection(shop.system, platform="telegram", name="bot", default_community_id=community.pk,
                                    config={"api_base": api.url},
                                    secret_values={"bot_token": "123456:TESTTOKENabcdef", "webhook_secret": SECRET},
                                    verify=False)  # this fake answers every method with true, getMe included
        for i in range(N):
            update = copy.deepcopy(P.MESSAGE)
            update["update_id"] = 50_000 + i
            update["message"]["message_id"] = 9_000 + i
            update["message"]["text"] = f"第 {i} 条"
            calls.append((f"/hooks/telegram/{conn.hook_key}/",
                          {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET},
                          json.dumps(update)))
        (tmp_path / "calls.json").write_text(json.dumps(calls))
        (tmp_path / "client.py").write_text(CLIENT)
        port = site.serve(workers=2, threads=4)
        site.start("worker", "worker", "--no-scheduler", "--no-realtime")

        start = time.time() + 2.0
        t0 = time.monotonic()
        argv = [sys.executable, str(tmp_path / "client.py"), str(port), str(tmp_path / "calls.json")]
        clients = [subprocess.Popen([*argv, str(seed), str(start)], stdout=subprocess.PIPE, text=True)
                   for seed in range(3)]
        codes = [json.loads(c.communicate(timeout=240)[0].strip().splitlines()[-1]) for c in clients]
        answered = time.monotonic() - t0
        assert all(set(c) == {"200"} for c in codes), f"{codes}\n{site.logs()}"
        try:
            wait_for(lambda: ActivityEvent.objects.filter(tenant=shop.tenant, platform="telegram").count() >= N,
                     180, "the worker processed the stored updates", step=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {codes} inbound={InboundEvent.objects.count()} activity="
                                 f"{list(ActivityEvent.objects.values_list('platform', 'kind')[:5])}\n"
                                 f"{site.logs()}") from exc
        time.sleep(1.0)

    paid_events = OrderEvent.objects.filter(order_id__in=orders, kind="paid").count()
    applied = PaymentCallback.objects.filter(tenant_id=shop.tenant.pk, outcome="paid").count()
    fully_paid = sum(1 for o in Order.objects.filter(pk__in=orders) if o.paid_fen == o.total_fen and o.status == "paid")
    inbound = InboundEvent.objects.filter(connection=conn).count()
    activity = ActivityEvent.objects.filter(tenant=shop.tenant, platform="telegram").count()
    figures("replay_from_three_processes", attempts=3 * len(calls), payments=N, payment_effects=paid_events,
            updates=N, update_effects=activity, answers=json.dumps(codes, separators=(",", ":")),
            lost=(N - paid_events) + (N - activity), duplicated=max(0, paid_events - N) + max(0, activity - N),
            seconds=answered)
    assert all(set(c) == {"200"} for c in codes), codes
    assert paid_events == N and fully_paid == N and applied == N
    assert Payment.objects.filter(order_id__in=orders, status="succeeded").count() == N
    assert PaymentCallback.objects.filter(tenant_id=shop.tenant.pk).count() == 3 * N
    assert inbound == N and activity == N
