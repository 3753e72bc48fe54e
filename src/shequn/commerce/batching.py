"""Group commit for hot flash sales on the database path (no Redis needed).

Concurrent buyers in one process hand their validated attempt to a per-sale writer thread, which
writes everything waiting (up to ``max_batch``) with :func:`services.do_write_flash_batch`: on
PostgreSQL ONE statement inserts the unique (sale, member) rows of the buyers that fit the stock
and their orders, lines and audit rows, then the conditional decrement by what was inserted, and
one COMMIT for the whole batch (the hot row is locked only from that decrement to the commit).
Every buyer gets exactly the outcome the one-transaction-per-buyer path would give (an order, sold
out, already bought, not a member, ineligible); rows a batch cannot decide exactly are written
alone after it. The database constraints stay the only source of truth, so many processes may
batch at once.

Two per-process caches keep the buyer's side free of queries: the flash sale itself (window, price,
limits, rules — read again after ``CACHE_SECONDS``; the writer reads the row again and decrements
conditionally, so a stale cache can only reject early, never sell wrongly) and a sold-out mark set
when a batch leaves no stock (for ``CACHE_SECONDS``, so stock given back by a cancellation is sold
again after at most that long).

Enable with ``SHEQUN_FLASH_BATCH=1`` (the API's flash-sale endpoint then uses it)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections, connection
from django.utils.translation import gettext as _

from shequn.core import localcache, microbatch
from shequn.core.errors import Conflict, ShequnError
from shequn.core.permissions import Principal

from .models import FlashSale, Order


@dataclass
class FlashRow:
    """One validated flash-sale attempt waiting to be written in a batch."""

    principal: Principal
    member_id: int
    quantity: int
    attr: dict[str, Any]
    gate_id: str = ""


@dataclass
class FlashBatchOutcome:
    """What a batch writer returns: one outcome per row, and the stock it left."""

    results: list[Order | ShequnError]  # one per row, in order
    remaining: int | None  # the sale's stock after the batch (None when not read)


Writer = Callable[[int, list[FlashRow]], FlashBatchOutcome]
"""Writes one batch of a sale (:func:`shequn.commerce.services.flash.do_write_flash_batch`); passed in by
the caller so that this module never imports the services (which import it)."""

CACHE_SECONDS = 1.0


def enabled() -> bool:
    return os.environ.get("SHEQUN_FLASH_BATCH", "").strip() in {"1", "true", "yes", "on"}


def _close_connection() -> None:
    """The writer thread's own connection (``connection`` resolves per thread when called)."""
    connection.close()


def _write(write: Writer, flash_sale_id: int, rows: list[FlashRow]) -> list[Order | BaseException]:
    close_old_connections()  # a connection broken by an earlier batch's error is replaced, not reused
    outcome = write(flash_sale_id, rows)
    if outcome.remaining is not None and outcome.remaining <= 0:
        mark_sold_out(flash_sale_id)
    return list(outcome.results)


_SALES: dict[tuple[int, int], tuple[float, FlashSale | None]] = {}
_SOLD_OUT: dict[int, float] = {}
_FILL = threading.Lock()
localcache.register_clear(_SALES.clear)
localcache.register_clear(_SOLD_OUT.clear)


def forget(flash_sale_id: int) -> None:
    """Drop this process's copy of a sale (after an edit here; other processes: ``CACHE_SECONDS``)."""
    for key in [k for k in _SALES if k[1] == flash_sale_id]:
        _SALES.pop(key, None)
    _SOLD_OUT.pop(flash_sale_id, None)


def flash_sale(tenant_id: int, flash_sale_id: int) -> FlashSale | None:
    """The tenant's flash sale (with SKU and product) from the per-process cache, or None. One
    thread reads it when it is missing or stale; the others keep the stale copy meanwhile, or wait
    for the first read."""
    key = (tenant_id, flash_sale_id)
    hit = _SALES.get(key)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    if hit is not None and not _FILL.acquire(blocking=False):
        return hit[1]  # another thread is refreshing it
    if hit is None:
        _FILL.acquire()
    try:
        hit = _SALES.get(key)
        if hit is None or hit[0] <= time.monotonic():
            fs = FlashSale.objects.filter(tenant_id=tenant_id, pk=flash_sale_id).select_related("sku__product") \
                .first()
            hit = _SALES[key] = (time.monotonic() + CACHE_SECONDS, fs)
        return hit[1]
    finally:
        _FILL.release()


def mark_sold_out(flash_sale_id: int) -> None:
    """The sale has no stock left (a batch, or the Redis gate, said so): refuse early for
    ``CACHE_SECONDS`` in this process."""
    _SOLD_OUT[flash_sale_id] = time.monotonic() + CACHE_SECONDS


def sold_out(flash_sale_id: int) -> bool:
    """True while a recent batch (or gate answer) of this process left the sale without stock."""
    until = _SOLD_OUT.get(flash_sale_id)
    return until is not None and until > time.monotonic()


def submit(principal: Principal, flash_sale_id: int, member_id: int, quantity: int, attr: dict[str, Any], *,
           write: Writer, max_batch: int = 256, max_wait: float = 0.002, timeout: float = 30.0) -> Order:
    """Hand one validated attempt to the sale's writer thread and wait for its outcome (the order, or
    the error raised here). ``write`` writes a batch (the writer thread of a sale keeps the first
    one it was given)."""
    def factory(on_idle: Any) -> microbatch.MicroBatcher[FlashRow, Order]:
        return microbatch.MicroBatcher(f"flash-writer-{flash_sale_id}", lambda rows: _write(write, flash_sale_id, rows),
                                       max_batch=max_batch, max_wait=max_wait, on_exit=_close_connection,
                                       on_idle=on_idle)

    try:
        return microbatch.submit(("flash", flash_sale_id), factory, FlashRow(principal, member_id, quantity, attr),
                                 timeout)
    except microbatch.BatchTimeout:
        raise Conflict(_("秒杀排队超时, 请重试"), code="timeout") from None


def shutdown(timeout: float = 10.0) -> None:
    """Stop every writer thread (after the batches in flight), let them close their connections and
    forget the caches."""
    microbatch.close_all("flash", timeout)
    _SALES.clear()
    _SOLD_OUT.clear()
