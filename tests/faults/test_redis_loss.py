"""Fault 4: Redis stops during a Redis-gated flash sale and during leaderboard reads.

The gate's Redis (one of the test's own, append-only file fsynced on every write, as
docs/operations.md asks of it) is killed with SIGKILL while 200 buyers, 16 at a time, buy 50
units through HTTP, and started again 1.5 s later. While it is gone the buy endpoint fails closed
(503, nothing written; the client retries with its key); afterwards every unit the gate accepted
becomes exactly one order (a buyer answered ``queued`` — or ``already_bought`` when the gate had
decided but the answer was lost — has one), and no more than the stock is sold.

Leaderboards read from SQL while Redis is down or has lost the board; a commission posted while it
is down still lands (the mirror update is dropped, never raised into the committed transaction)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from shequn.commerce.models import FlashSale, Order
from shequn.referrals import leaderboard

from ._harness import Answer, Client, RedisServer, figures, wait_for
from .conftest import Shop

STOCK, BUYERS, THREADS = 50, 200, 16


def test_redis_dies_during_a_gated_flash_sale(site, redis_server):
    site.env["SHEQUN_REDIS_URL"] = redis_server.url
    shop = Shop(BUYERS)
    fs = shop.flash_sale(STOCK, use_redis_gate=True)
    port = site.serve(workers=2, threads=4)
    site.start("worker", "worker", "--no-scheduler", "--no-realtime")
    client = Client(port, shop.token, retries=80, pause=0.1)
    answers: dict[int, Answer] = {}
    lock = threading.Lock()
    url = f"/api/v1/commerce/flash-sales/{fs.pk}/buy"

    def buyer(members: list[int]) -> None:
        for m in members:
            a = client.post(url, {"member_id": m}, key=f"gate-{fs.pk}-{m}")
            with lock:
                answers[m] = a

    outage: dict[str, float] = {}

    def chaos() -> None:
        wait_for(lambda: len(answers) >= STOCK // 3, 120, "a third of the stock answered")
        redis_server.kill()
        outage["down"] = time.monotonic()
        time.sleep(1.5)
        redis_server.start()  # the same port and directory: the append-only file is replayed
        outage["up"] = time.monotonic()

    t0 = time.monotonic()
    threads = [threading.Thread(target=buyer, args=(shop.members[i::THREADS],)) for i in range(THREADS)]
    c = threading.Thread(target=chaos)
    c.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    c.join(timeout=60)
    wait_for(lambda: Order.objects.filter(flash_sale=fs).count() >= STOCK, 120, "the consumer wrote the orders",
             step=0.2)
    time.sleep(1.0)  # anything more would be an oversell: give it the chance to show
    elapsed = time.monotonic() - t0

    status = Counter((a.status, a.body.get("code") or a.body.get("status")) for a in answers.values())
    queued = {m for m, a in answers.items() if a.status == 202}
    already = {m for m, a in answers.items() if a.status == 409 and a.body.get("code") == "already_bought"}
    members_with = Counter(Order.objects.filter(flash_sale=fs).values_list("member_id", flat=True))
    first_after = min((a.done for a in answers.values() if a.status == 202 and a.done > outage.get("up", 1e18)),
                      default=-1.0)
    fs.refresh_from_db()
    lost = len((queued | already) - set(members_with))
    figures("redis_dies_mid_gated_flash_sale", attempts=sum(a.attempts for a in answers.values()),
            committed=sum(members_with.values()), queued=len(queued), already_bought=len(already),
            fail_closed_503=client.errors, lost=lost, duplicated=sum(n - 1 for n in members_with.values()),
            oversold=max(0, sum(members_with.values()) - STOCK),
            recovery_seconds=(first_after - outage["up"]) if first_after > 0 else -1.0, seconds=elapsed)
    assert "up" in outage, "Redis was never killed"
    assert all(a.status in (202, 409) for a in answers.values()), status
    assert client.errors > 0, "no request met the outage: the test did not test it"
    assert lost == 0 and set(members_with) <= queued | already
    assert sum(members_with.values()) == STOCK and max(members_with.values()) == 1
    assert FlashSale.objects.get(pk=fs.pk).stock == 0


def test_leaderboards_fall_back_to_sql_when_redis_is_gone(settings, redis_server, tmp_path: Path):
    settings.REDIS_URL = redis_server.url
    shop = Shop(6)
    now = timezone.now()
    for i, m in enumerate(shop.members):
        with transaction.atomic():
            leaderboard.do_bump(shop.tenant.pk, "referrals", ["all"], m, i + 1, at=now)
    sql = leaderboard.top(shop.tenant.pk, "referrals", use_redis=False)
    assert [r.member_id for r in sql] == shop.members[::-1]
    assert leaderboard.top(shop.tenant.pk, "referrals") == sql  # served by Redis

    redis_server.kill()
    t0 = time.perf_counter()
    assert leaderboard.top(shop.tenant.pk, "referrals") == sql
    fallback_ms = (time.perf_counter() - t0) * 1000
    with transaction.atomic():  # a posting while Redis is down commits; only the mirror misses it
        leaderboard.do_bump(shop.tenant.pk, "referrals", ["all"], shop.members[0], 100, at=now)
    during = leaderboard.top(shop.tenant.pk, "referrals")
    assert during[0].member_id == shop.members[0] and during[0].value == 101

    empty = RedisServer(tmp_path / "empty").start()  # Redis back without its data
    try:
        settings.REDIS_URL = empty.url
        after = leaderboard.top(shop.tenant.pk, "referrals")
        assert after == leaderboard.top(shop.tenant.pk, "referrals", use_redis=False) == during
    finally:
        empty.kill()
    figures("leaderboard_redis_loss", attempts=3, lost=0, duplicated=0, fallback_read_ms=fallback_ms)
