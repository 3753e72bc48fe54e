"""Fault 1: ``kill -9`` of an app process in the middle of a flash sale under load.

Two gunicorn workers (``shequn serve``) sell 60 units to 240 buyers, 16 at a time, each buying
through ``POST /api/v1/commerce/flash-sales/{id}/buy`` with an Idempotency-Key. When a third of
them have an answer, one worker is killed with SIGKILL (gunicorn starts another). A buyer whose
connection broke retries with the same key, as a phone would. Afterwards: every buyer has an answer,
each answered order exists and each order was answered (none lost), no member holds two
(none duplicated), units sold = orders committed = reservations ≤ stock (0 oversold)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

from shequn.commerce.models import FlashReservation, FlashSale, Order

from ._harness import Answer, Client, figures, gunicorn_workers, wait_for
from .conftest import Shop

STOCK, BUYERS, THREADS = 60, 240, 16


def test_kill_an_app_process_mid_flash_sale(site):
    shop = Shop(BUYERS)
    fs = shop.flash_sale(STOCK)
    port = site.serve(workers=2, threads=4)
    serve_pid = site.procs["web"][0].pid
    wait_for(lambda: len(gunicorn_workers(serve_pid)) == 2, 30, "two gunicorn workers")
    client = Client(port, shop.token)
    answers: dict[int, Answer] = {}
    lock = threading.Lock()
    url = f"/api/v1/commerce/flash-sales/{fs.pk}/buy"

    def buyer(members: list[int]) -> None:
        for m in members:
            a = client.post(url, {"member_id": m}, key=f"flash-{fs.pk}-{m}")
            with lock:
                answers[m] = a

    killed: dict[str, float] = {}

    def killer() -> None:
        wait_for(lambda: len(answers) >= BUYERS // 3, 120, "a third of the buyers answered")
        victim = gunicorn_workers(serve_pid)[0]
        killed["at"] = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(gunicorn_workers(serve_pid)) == 2 and victim not in gunicorn_workers(serve_pid),
                 60, "gunicorn replaced the killed worker")
        killed["respawn"] = time.monotonic() - killed["at"]

    t0 = time.monotonic()
    threads = [threading.Thread(target=buyer, args=(shop.members[i::THREADS],)) for i in range(THREADS)]
    k = threading.Thread(target=killer)
    k.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    k.join(timeout=60)
    elapsed = time.monotonic() - t0

    unanswered = [m for m in shop.members if answers.get(m, Answer(0, {}, 0, 0)).status == 0]
    ok = {m: a.body["order"]["id"] for m, a in answers.items() if a.status == 200}
    refused = Counter(a.body.get("code") for a in answers.values() if a.status == 409)
    fs.refresh_from_db()
    orders = dict(Order.objects.filter(flash_sale=fs).values_list("member_id", "pk"))
    per_member = Counter(Order.objects.filter(flash_sale=fs).values_list("member_id", flat=True))
    sold = STOCK - fs.stock
    lost = len(set(ok.items()) ^ set(orders.items()))  # answered but missing, or committed but not answered
    duplicated = sum(n - 1 for n in per_member.values() if n > 1)
    oversold = max(0, len(orders) - STOCK)
    figures("kill_app_mid_flash_sale", attempts=sum(a.attempts for a in answers.values()), buyers=BUYERS,
            committed=len(orders), sold=sold, answered_ok=len(ok), sold_out=refused.get("sold_out", 0),
            client_errors=client.errors, unanswered=len(unanswered), lost=lost, duplicated=duplicated,
            oversold=oversold, recovery_seconds=killed.get("respawn", -1.0), seconds=elapsed)
    assert "at" in killed, "the worker was never killed"
    assert not unanswered, f"buyers without an answer: {unanswered[:10]}\n{site.logs()}"
    assert {a.status for a in answers.values()} <= {200, 409}, Counter(a.status for a in answers.values())
    assert sold == len(orders) == FlashReservation.objects.filter(flash_sale=fs).count() == STOCK
    assert lost == 0 and duplicated == 0 and oversold == 0
    assert FlashSale.objects.get(pk=fs.pk).stock == 0 and refused["sold_out"] == BUYERS - STOCK
