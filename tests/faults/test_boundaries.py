"""Fault 6: clock skew and slow workers at the boundaries of a flash-sale window and a lottery.

* A flash sale answers at its exact edges: one microsecond before ``starts_at`` is "not started",
  ``starts_at`` sells, one microsecond before ``ends_at`` sells, ``ends_at`` is "ended" — on the
  PostgreSQL one-statement path and on the idempotent path alike.
* A Redis-gated sale whose consumer runs after the sale ended (a slow or restarted worker) still
  writes the order of every attempt the gate accepted in time: the window is judged when the gate
  accepted, not when the worker got round to it.
* A lottery: an entry at ``closes_at − 1 µs`` counts, at ``closes_at`` it is refused; a scheduler
  whose clock is behind does not close early; once closed, an app node whose clock is behind cannot
  slip an entry in; the draw run twice (a slow worker and its replacement) gives one result."""

from __future__ import annotations

import datetime as dt
import time
from types import SimpleNamespace

import pytest
from django.utils import timezone

from shequn.commerce import services as commerce
from shequn.commerce.models import Order
from shequn.commerce.services import flash as flash_services
from shequn.core.errors import Conflict, Invalid
from shequn.engagement.models import Lottery, LotteryWinner
from shequn.engagement.services import (
    do_close_lottery,
    do_create_lottery,
    do_draw_lottery,
    do_enter_lottery,
    do_run_due_lotteries,
)

from ._harness import figures
from .conftest import Shop

US = dt.timedelta(microseconds=1)


@pytest.mark.parametrize("keyed", [False, True], ids=["one-statement", "idempotent"])
def test_flash_window_edges(keyed):
    shop = Shop(4)
    now = timezone.now()
    fs = shop.flash_sale(10, starts_at=now + dt.timedelta(hours=1), ends_at=now + dt.timedelta(hours=2))
    a, b, c, d = shop.members

    def buy(member, at):
        return commerce.do_flash_buy(shop.system, fs.pk, member_id=member, now=at,
                                     idempotency_key=f"k-{member}" if keyed else None)

    with pytest.raises(Invalid) as early:
        buy(a, fs.starts_at - US)
    assert early.value.code == "not_started"
    assert buy(b, fs.starts_at).order is not None
    assert buy(c, fs.ends_at - US).order is not None
    with pytest.raises(Invalid) as late:
        buy(d, fs.ends_at)
    assert late.value.code == "ended"
    assert set(Order.objects.filter(flash_sale=fs).values_list("member_id", flat=True)) == {b, c}


def test_slow_gate_consumer_after_the_sale_ended(settings, redis_server, monkeypatch):
    settings.REDIS_URL = redis_server.url
    shop = Shop(8)
    now = timezone.now()
    fs = shop.flash_sale(5, use_redis_gate=True, starts_at=now - dt.timedelta(minutes=1),
                         ends_at=now + dt.timedelta(seconds=3))
    queued = []
    # the suite's task backend is immediate: keep the consumer task from running inline, so the
    # attempts pile up in the stream as they do behind a slow worker
    monkeypatch.setattr(flash_services, "consume_flash_gate", SimpleNamespace(enqueue=lambda *a, **k: None))
    for m in shop.members:
        try:
            res = commerce.do_flash_buy(shop.system, fs.pk, member_id=m)
        except Conflict:
            continue
        assert res.status == "queued"
        queued.append(m)
    assert len(queued) == 5 and not Order.objects.filter(flash_sale=fs).exists()
    time.sleep(max(0.0, (fs.ends_at - timezone.now()).total_seconds()) + 0.5)  # the worker is late
    late_by = (timezone.now() - fs.ends_at).total_seconds()
    written = commerce.do_consume_flash_gate(fs.pk)
    members = set(Order.objects.filter(flash_sale=fs).values_list("member_id", flat=True))
    figures("slow_gate_consumer_after_end", attempts=len(shop.members), committed=written, queued=len(queued),
            lost=len(set(queued) - members), duplicated=0, consumer_late_seconds=late_by)
    assert written == 5 and members == set(queued)


def test_lottery_close_and_draw_at_the_boundaries():
    shop = Shop(5)
    now = timezone.now()
    lot = do_create_lottery(shop.system, title="周末抽奖", closes_at=now + dt.timedelta(hours=1),
                            draw_at=now + dt.timedelta(hours=2), prizes=[("香薰", 2)])
    tid = shop.tenant.pk
    a, b, c, d, e = shop.members
    do_enter_lottery(tid, lot.pk, a, now=now)
    do_enter_lottery(tid, lot.pk, b, now=lot.closes_at - US)
    with pytest.raises(Conflict):
        do_enter_lottery(tid, lot.pk, c, now=lot.closes_at)
    # a scheduler whose clock is a second behind does not close it
    do_run_due_lotteries(now=lot.closes_at - dt.timedelta(seconds=1))
    assert Lottery.objects.get(pk=lot.pk).status == Lottery.Status.OPEN
    do_run_due_lotteries(now=lot.closes_at)
    lot.refresh_from_db()
    assert lot.status == Lottery.Status.CLOSED
    # an app node whose clock is behind cannot slip an entry in after the close
    with pytest.raises(Conflict):
        do_enter_lottery(tid, lot.pk, d, now=lot.closes_at - dt.timedelta(seconds=5))
    assert {x["id"] for x in lot.snapshot["entrants"]} == {f"m{a}", f"m{b}"}
    # not drawn before draw_at; then drawn once, whoever runs it twice
    do_run_due_lotteries(now=lot.draw_at - US)
    assert Lottery.objects.get(pk=lot.pk).status == Lottery.Status.CLOSED
    first = do_draw_lottery(tid, lot.pk, now=lot.draw_at)
    again = do_draw_lottery(tid, lot.pk, now=lot.draw_at + dt.timedelta(seconds=30))
    assert first.result == again.result and again.drawn_at == first.drawn_at
    assert do_close_lottery(tid, lot.pk).status == Lottery.Status.DRAWN
    winners = list(LotteryWinner.objects.filter(lottery=lot).values_list("member_id", flat=True))
    assert sorted(winners) == sorted([a, b])  # two prizes, two entrants: each once
    _ = e
    figures("lottery_boundaries", attempts=5, committed=2, lost=0, duplicated=0)
