"""Group commit for hot flash sales on the database path (no Redis needed).

Concurrent buyers in one process hand their attempt to a per-sale writer thread, which writes up to
``max_batch`` of them in ONE transaction: one conditional ``UPDATE ... SET stock = stock - :total
WHERE stock >= :total``, bulk inserts of orders, lines, the unique (sale, member) rows and audit rows.
If the batch cannot be written whole (a duplicate member, a re-taken released seat, or fewer units
left than the batch wants) it falls back to the ordinary one-transaction-per-buyer path for that
batch, so the result for every buyer is exactly what :func:`services.do_flash_buy` would give. The
database constraints stay the only source of truth, so many processes may batch at once.

Enable with ``SHEQUN_FLASH_BATCH=1`` (the API's flash-sale endpoint then uses it)."""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import Conflict, NotFound, ShequnError
from shequn.core.permissions import Principal
from shequn.members.models import Member

from .models import FlashSale, Order


def enabled() -> bool:
    return os.environ.get("SHEQUN_FLASH_BATCH", "").strip() in {"1", "true", "yes", "on"}


@dataclass
class _Attempt:
    member_id: int
    quantity: int
    attr: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    order: Order | None = None
    error: BaseException | None = None


class _Writer:
    def __init__(self, flash_sale_id: int, max_batch: int, max_wait: float) -> None:
        self.flash_sale_id = flash_sale_id
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.q: queue.Queue[_Attempt | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=f"flash-writer-{flash_sale_id}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                try:
                    first = self.q.get(timeout=5)
                    if first is None:
                        return
                except queue.Empty:
                    with _LOCK:
                        if self.q.empty():
                            _WRITERS.pop(self.flash_sale_id, None)
                            return
                    continue
                batch = [first]
                deadline = time.monotonic() + self.max_wait
                while len(batch) < self.max_batch:
                    try:
                        nxt = self.q.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    if nxt is None:
                        self.q.put(None)  # stop after this batch
                        break
                    batch.append(nxt)
                self._write(batch)
        finally:
            connection.close()

    def _write(self, batch: list[_Attempt]) -> None:
        from . import services

        try:
            fs = FlashSale.objects.select_related("sku__product").get(pk=self.flash_sale_id)
            members = Member.objects.filter(tenant_id=fs.tenant_id, pk__in=[a.member_id for a in batch]).in_bulk()
            for a in batch:
                if a.member_id not in members:
                    a.error = NotFound(_("会员不存在: %(id)s") % {"id": a.member_id}, details={"field": "member_id"})
            live = [a for a in batch if a.error is None]
            try:
                with transaction.atomic():
                    orders = services._consume_batch(
                        fs, [("", a.member_id, a.quantity, a.attr) for a in live]
                    )
                for a, o in zip(live, orders, strict=True):
                    a.order = o
            except (Conflict, IntegrityError):
                system = Principal.system(fs.tenant_id, "flash")
                now = timezone.now()
                for a in live:
                    try:
                        with transaction.atomic():
                            a.order = services._flash_order(system, fs, members[a.member_id], a.quantity, a.attr,
                                                            now=now)
                    except (ShequnError, IntegrityError) as exc:
                        a.error = exc if isinstance(exc, ShequnError) else Conflict(
                            _("每人限购, 你已参与过本次秒杀"), code="already_bought", details={"field": "member_id"})
        except BaseException as exc:  # never leave a buyer waiting
            for a in batch:
                if a.order is None and a.error is None:
                    a.error = exc
        finally:
            for a in batch:
                a.done.set()


_WRITERS: dict[int, _Writer] = {}
_LOCK = threading.Lock()


def submit(flash_sale_id: int, member_id: int, quantity: int, attr: dict[str, Any], *, max_batch: int = 128,
           max_wait: float = 0.002, timeout: float = 30.0) -> Order:
    """Hand one validated attempt to the sale's writer and wait for its outcome (order or error)."""
    attempt = _Attempt(member_id, quantity, attr)
    with _LOCK:
        writer = _WRITERS.get(flash_sale_id)
        if writer is None or not writer.thread.is_alive():
            writer = _WRITERS[flash_sale_id] = _Writer(flash_sale_id, max_batch, max_wait)
        writer.q.put(attempt)
    if not attempt.done.wait(timeout):
        raise Conflict(_("秒杀排队超时, 请重试"), code="timeout")
    if attempt.error is not None:
        raise attempt.error
    assert attempt.order is not None
    return attempt.order


def shutdown(timeout: float = 10.0) -> None:
    """Stop every writer thread (after the batches in flight) and let them close their connections."""
    with _LOCK:
        writers = list(_WRITERS.values())
        _WRITERS.clear()
    for w in writers:
        w.q.put(None)
    for w in writers:
        w.thread.join(timeout)
