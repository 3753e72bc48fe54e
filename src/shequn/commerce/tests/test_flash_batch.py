"""Group commit of flash-sale attempts (``services.do_write_flash_batch``): every row gets exactly the
outcome the one-buyer path would give it. Runs on SQLite (ORM batch) and on PostgreSQL (one
statement, optimistic decrement, locked retry) — the same assertions for both."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from shequn.commerce import services
from shequn.commerce.models import FlashReservation, FlashSale, Order, OrderLine, Sku
from shequn.commerce.services import flash
from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.models import AuditLog
from shequn.core.services import do_create_api_key
from shequn.core.testing import race
from shequn.members.models import Member

from .conftest import make_member
from .test_flash import _flash

ATTR = dict.fromkeys(services.ATTRIBUTION_KEYS)


def _rows(system, spec):
    return [services.FlashRow(system, mid, qty, dict(ATTR)) for mid, qty in spec]


def _kind(res):
    if isinstance(res, Order):
        return "order"
    return getattr(res, "code", type(res).__name__)


def test_batch_gives_each_row_the_one_buyer_outcome(system, product, tenant):
    fs = _flash(system, product, stock=5, limit=2, min_relationship_level=1)
    a, b, d, e, f, g = (make_member(tenant, n, level=1) for n in "abdefg")
    c = make_member(tenant, "c", level=0)
    services.do_flash_buy(system, fs.pk, member_id=d.pk)  # d already bought; 4 left
    out = services.do_write_flash_batch(fs.pk, _rows(system, [
        (a.pk, 1), (999_999_999, 1), (c.pk, 1), (d.pk, 1), (a.pk, 1), (b.pk, 3), (e.pk, 2), (f.pk, 2), (g.pk, 1),
    ]))
    kinds = [_kind(r) for r in out.results]
    # f (2) does not fit after a and e, but g (1) does: no unit is left unsold while a buyer wants it
    assert kinds == ["order", "not_found", "ineligible", "already_bought", "already_bought", "over_limit",
                     "order", "sold_out", "order"]
    assert isinstance(out.results[1], NotFound) and isinstance(out.results[2], Invalid)
    assert isinstance(out.results[3], Conflict) and isinstance(out.results[7], services.SoldOut)
    assert out.remaining == 0
    assert FlashSale.objects.get(pk=fs.pk).stock == 0
    orders = {o.member_id: o for o in Order.objects.filter(flash_sale=fs)}
    assert set(orders) == {a.pk, d.pk, e.pk, g.pk}
    assert orders[e.pk].total_fen == 2 * 990 == out.results[6].total_fen
    assert out.results[0].pk == orders[a.pk].pk and out.results[8].pk == orders[g.pk].pk
    line = OrderLine.objects.get(order=orders[e.pk])
    assert (line.quantity, line.unit_price_fen, line.list_price_fen, line.amount_fen) == (2, 990, 9900, 1980)
    assert FlashReservation.objects.filter(flash_sale=fs).count() == 4
    assert AuditLog.objects.filter(action="commerce.order.create",
                                   object_id__in=[str(o.pk) for o in orders.values()]).count() == 4


def test_batch_retakes_a_released_seat_and_refuses_after_the_window(system, product, tenant):
    fs = _flash(system, product, stock=2)
    a, b = make_member(tenant, "a"), make_member(tenant, "b")
    first = services.do_flash_buy(system, fs.pk, member_id=a.pk).order
    services.do_cancel_order(system, first.pk, reason="changed mind")
    out = services.do_write_flash_batch(fs.pk, _rows(system, [(a.pk, 1), (b.pk, 1)]))
    assert [_kind(r) for r in out.results] == ["order", "order"]
    assert FlashReservation.objects.get(flash_sale=fs, member=a).order_id == out.results[0].pk
    assert FlashSale.objects.get(pk=fs.pk).stock == 0
    FlashSale.objects.filter(pk=fs.pk).update(starts_at=timezone.now() - dt.timedelta(hours=2),
                                              ends_at=timezone.now() - dt.timedelta(hours=1))
    late = services.do_write_flash_batch(fs.pk, _rows(system, [(make_member(tenant, "c").pk, 1)]))
    assert [_kind(r) for r in late.results] == ["ended"]


@pytest.mark.postgres
def test_stock_taken_meanwhile_rolls_back_and_retries_under_the_lock(system, product, tenant, monkeypatch):
    """The optimistic read saw 3 more units than there are (another batch took them): the
    conditional decrement refuses, the batch rolls back whole and runs again with FOR UPDATE."""
    assert connection.vendor == "postgresql"
    fs = _flash(system, product, stock=2)
    members = [make_member(tenant, f"m{i}") for i in range(4)]
    real = flash._flash_head
    calls = []

    def stale(cur, flash_sale_id, *, locked):
        calls.append(locked)
        head = real(cur, flash_sale_id, locked=locked)
        return head if locked or head is None else (head[0], head[1] + 3, *head[2:])

    monkeypatch.setattr(flash, "_flash_head", stale)
    out = services.do_write_flash_batch(fs.pk, _rows(system, [(m.pk, 1) for m in members]))
    assert calls == [False, True]
    assert [_kind(r) for r in out.results] == ["order", "order", "sold_out", "sold_out"]
    assert FlashSale.objects.get(pk=fs.pk).stock == 0
    assert Order.objects.filter(flash_sale=fs).count() == 2  # nothing of the rolled-back try is left
    assert FlashReservation.objects.filter(flash_sale=fs).count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_sell_exactly_the_stock(system, product, tenant):
    """Eight writers (as eight app processes would) race batches of 20 for 137 units, some members in
    two writers' batches at once: exactly 137 units sold, one order per member, none lost."""
    services.do_adjust_stock(system, Sku.objects.filter(product=product).first().pk, 200)
    fs = _flash(system, product, stock=137)
    members = Member.objects.bulk_create(
        [Member(tenant=tenant, display_name=f"m{i}", first_seen_at=timezone.now()) for i in range(800)])
    ids = [m.pk for m in members]

    def writer(w):
        done = []
        for b in range(5):
            chunk = ids[(w * 5 + b) * 20:(w * 5 + b) * 20 + 20]
            chunk += ids[b * 3:b * 3 + 3]  # the same few members in everybody's batches
            out = services.do_write_flash_batch(fs.pk, _rows(system, [(m, 1) for m in chunk]))
            done.extend(zip(chunk, out.results, strict=True))
        return done

    per_writer = race(writer, 8)
    assert not [r for r in per_writer if isinstance(r, Exception)], per_writer
    results = [pair for done in per_writer for pair in done]
    kinds = [_kind(r) for _m, r in results]
    assert set(kinds) <= {"order", "sold_out", "already_bought"}
    ordered = [m for m, r in results if isinstance(r, Order)]
    assert len(ordered) == len(set(ordered)) == 137
    assert FlashSale.objects.get(pk=fs.pk).stock == 0
    assert sorted(Order.objects.filter(flash_sale=fs).values_list("member_id", flat=True)) == sorted(ordered)
    assert FlashReservation.objects.filter(flash_sale=fs).count() == 137


@pytest.mark.django_db(transaction=True)
def test_api_flash_buy_with_group_commit(system, product, tenant, monkeypatch):
    """``SHEQUN_FLASH_BATCH=1``: the API's flash-sale endpoint goes through the writer thread and
    answers as without it (the order, then 409 for the same member, 422 for a bad quantity, 409 sold
    out)."""
    monkeypatch.setenv("SHEQUN_FLASH_BATCH", "1")
    _k, secret = do_create_api_key(system, name="t", scopes=["commerce.write"])
    c = Client(headers={"Authorization": f"Bearer {secret}"})
    fs = _flash(system, product, stock=2)
    a, b, c_ = make_member(tenant, "a"), make_member(tenant, "b"), make_member(tenant, "c")
    url = f"/api/v1/commerce/flash-sales/{fs.pk}/buy"

    def buy(body):
        return c.post(url, data=json.dumps(body), content_type="application/json")

    r = buy({"member_id": a.pk})
    assert r.status_code == 200, r.content
    assert r.json()["order"]["total_fen"] == 990
    assert Order.objects.get(flash_sale=fs, member=a).pk == r.json()["order"]["id"]
    assert buy({"member_id": a.pk}).json()["code"] == "already_bought"
    r = buy({"member_id": b.pk, "quantity": 0})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "body.body.quantity"  # schema bound
    assert buy({"member_id": b.pk}).status_code == 200
    r = buy({"member_id": c_.pk})
    assert r.status_code == 409 and r.json()["code"] == "sold_out"
    assert FlashSale.objects.get(pk=fs.pk).stock == 0
    assert sorted(Order.objects.filter(flash_sale=fs).values_list("member_id", flat=True)) == [a.pk, b.pk]
