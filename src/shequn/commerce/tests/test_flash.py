from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from types import SimpleNamespace

import pytest
import redis as redis_lib
from django.tasks import default_task_backend
from django.test import Client, override_settings
from django.utils import timezone

from shequn.commerce import batching, redis_gate, services
from shequn.commerce.gateways import SandboxGateway
from shequn.commerce.models import FlashReservation, FlashSale, Order, Sku
from shequn.commerce.services import flash as flash_services
from shequn.communities.models import Membership
from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.services import do_create_api_key
from shequn.core.testing import race
from shequn.members.models import Member

from .conftest import make_member, pay, sku, window


def _flash(system, product, stock=3, limit=1, **kw):
    start, end = window()
    return services.do_create_flash_sale(system, name="秒杀", sku_id=sku(product).pk, price_fen=990, stock=stock,
                                         starts_at=kw.pop("starts_at", start), ends_at=kw.pop("ends_at", end),
                                         per_member_limit=limit, **kw)


def test_flash_buy_limit_and_sold_out(system, product, tenant):
    fs = _flash(system, product, stock=2)
    assert Sku.objects.get(pk=sku(product).pk).stock == 8  # carved out of the SKU
    a, b, c = (make_member(tenant, n) for n in "abc")
    r = services.do_flash_buy(system, fs.pk, member_id=a.pk)
    assert r.order.total_fen == 990
    with pytest.raises(Conflict) as exc:
        services.do_flash_buy(system, fs.pk, member_id=a.pk)
    assert exc.value.code == "already_bought"
    assert FlashSale.objects.get(pk=fs.pk).stock == 1  # the duplicate did not consume stock
    services.do_flash_buy(system, fs.pk, member_id=b.pk)
    with pytest.raises(services.SoldOut):
        services.do_flash_buy(system, fs.pk, member_id=c.pk)
    assert not FlashReservation.objects.filter(member=c).exists()  # nothing half-written
    assert FlashSale.objects.get(pk=fs.pk).stock == 0


def test_flash_bad_input(system, product, tenant, community, member):
    fs = _flash(system, product, stock=5, limit=2, eligible_community_id=community.pk)
    with pytest.raises(Invalid) as exc:
        services.do_flash_buy(system, fs.pk, member_id=member.pk)
    assert exc.value.code == "ineligible"
    Membership.objects.create(tenant=tenant, member=member, community=community, joined_at=timezone.now())
    for q in (0, -1, 3):
        with pytest.raises(Invalid):
            services.do_flash_buy(system, fs.pk, member_id=member.pk, quantity=q)
    past = services.do_create_flash_sale(system, name="过期", sku_id=sku(product).pk, price_fen=1, stock=1,
                                         starts_at=timezone.now() - dt.timedelta(hours=2),
                                         ends_at=timezone.now() - dt.timedelta(hours=1))
    with pytest.raises(Invalid) as exc:
        services.do_flash_buy(system, past.pk, member_id=member.pk)
    assert exc.value.code == "ended"
    lvl = _flash(system, product, stock=1, min_relationship_level=3)
    with pytest.raises(Invalid):
        services.do_flash_buy(system, lvl.pk, member_id=member.pk)
    assert Order.objects.count() == 0
    services.do_flash_buy(system, fs.pk, member_id=member.pk, quantity=2)


def test_reservation_expiry_releases_and_late_payment_refunds_when_gone(system, product, tenant):
    fs = _flash(system, product, stock=1)
    a, b = make_member(tenant, "a"), make_member(tenant, "b")
    order = services.do_flash_buy(system, fs.pk, member_id=a.pk).order
    p = services.do_start_payment(system, order.pk)
    services.do_expire_orders(now=timezone.now() + dt.timedelta(hours=1))
    assert FlashSale.objects.get(pk=fs.pk).stock == 1
    assert FlashReservation.objects.get(member=a).status == "released"
    services.do_flash_buy(system, fs.pk, member_id=b.pk)  # b takes the released unit
    assert services.do_sandbox_pay(p.out_trade_no)["outcome"] == "refunding"
    order.refresh_from_db()
    assert order.status == "cancelled" and FlashSale.objects.get(pk=fs.pk).stock == 0
    assert order.payments.get().refunds.get().status == "succeeded"


def test_late_payment_revives_when_stock_left(system, product, tenant):
    fs = _flash(system, product, stock=2)
    a = make_member(tenant, "a")
    order = services.do_flash_buy(system, fs.pk, member_id=a.pk).order
    p = services.do_start_payment(system, order.pk)
    services.do_expire_orders(now=timezone.now() + dt.timedelta(hours=1))
    assert services.do_sandbox_pay(p.out_trade_no)["outcome"] == "revived"
    assert FlashSale.objects.get(pk=fs.pk).stock == 1
    assert FlashReservation.objects.get(member=a).status == "paid"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("batched", [False, True], ids=["per-buyer", "group-commit"])
def test_concurrent_flash_sale_never_oversells(tenant, system, product, batched):
    """300 buyers (each trying twice) race for 37 units on PostgreSQL: exactly 37 sold, one per member."""
    services.do_adjust_stock(system, sku(product).pk, 100)
    fs = _flash(system, product, stock=37)
    members = Member.objects.bulk_create(
        [Member(tenant=tenant, display_name=f"m{i}", first_seen_at=timezone.now()) for i in range(300)]
    )

    def attempt(i):  # every member tries twice, from two threads
        return services.do_flash_buy(system, fs.pk, member_id=members[i % len(members)].pk, batched=batched)

    try:
        results = race(attempt, 2 * len(members), threads=16)
    finally:
        batching.shutdown()
    outcomes = Counter("sold_out" if isinstance(r, services.SoldOut) else "dup" if isinstance(r, Conflict)
                       else "other" if isinstance(r, Exception) else "ok" for r in results)
    assert outcomes["other"] == 0
    assert outcomes["ok"] == 37
    assert FlashSale.objects.get(pk=fs.pk).stock == 0
    assert Order.objects.filter(flash_sale=fs).count() == 37
    assert FlashReservation.objects.filter(flash_sale=fs).count() == 37
    per_member = Order.objects.filter(flash_sale=fs).values_list("member_id", flat=True)
    assert len(set(per_member)) == 37


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_plain_orders_never_oversell(tenant, system, product):
    s = sku(product, "XX-2")  # 5 in stock
    members = Member.objects.bulk_create(
        [Member(tenant=tenant, display_name=f"m{i}", first_seen_at=timezone.now()) for i in range(40)]
    )
    line = {"sku_id": s.pk, "quantity": 1}
    results = race(lambda i: services.do_create_order(system, member_id=members[i].pk, lines=[line]), len(members),
                   threads=12)
    ok = [r for r in results if isinstance(r, Order)]
    assert all(isinstance(r, (Order, services.SoldOut)) for r in results), results
    assert len(ok) == 5 and Sku.objects.get(pk=s.pk).stock == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_callbacks_book_once(tenant, system, product, member):
    order = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    p = services.do_start_payment(system, order.pk)
    headers, body = SandboxGateway().pay(p.out_trade_no, p.amount_fen)
    results = race(lambda _i: services.do_handle_notification("sandbox", headers, body)["outcome"], 8)
    assert sorted(results) == ["duplicate"] * 7 + ["paid"]
    order.refresh_from_db()
    assert order.paid_fen == 9900


@pytest.mark.redis
def test_redis_gate_feeds_idempotent_consumer(system, product, tenant, django_capture_on_commit_callbacks):
    fs = _flash(system, product, stock=3, use_redis_gate=True)
    g = redis_gate.gate()
    g.reset(fs.pk)
    try:
        members = [make_member(tenant, f"r{i}") for i in range(5)]
        results = []
        for m in members:
            try:
                results.append(services.do_flash_buy(system, fs.pk, member_id=m.pk).status)
            except services.SoldOut:
                results.append("sold_out")
        with pytest.raises(Conflict):
            services.do_flash_buy(system, fs.pk, member_id=members[0].pk)
        assert results == ["queued"] * 3 + ["sold_out"] * 2
        # sold out is remembered by this process: the next buyer is refused without the gate's
        # script, and a buyer whose attempt the gate holds (a retry whose answer was lost) is told
        # "already bought", not "sold out"
        assert batching.sold_out(fs.pk)
        with pytest.raises(Conflict) as exc:
            services.do_flash_buy(system, fs.pk, member_id=members[1].pk)
        assert exc.value.code == "already_bought"
        with pytest.raises(services.SoldOut):
            services.do_flash_buy(system, fs.pk, member_id=members[4].pk)
        # the consumer ran (immediate task backend); running it again is a no-op
        assert services.do_consume_flash_gate(fs.pk) == 0
        assert Order.objects.filter(flash_sale=fs).count() == 3
        assert FlashSale.objects.get(pk=fs.pk).stock == 0
        # expiry releases the unit in the database and in the gate
        order = Order.objects.filter(flash_sale=fs).first()
        with django_capture_on_commit_callbacks(execute=True):
            services.do_cancel_order(system, order.pk, reason="t")
        assert g.stock(fs.pk) == 1 and FlashSale.objects.get(pk=fs.pk).stock == 1
        # ... and forgets it when a unit comes back: the unit is sold again at once
        assert not batching.sold_out(fs.pk)
        late = make_member(tenant, "late")
        assert services.do_flash_buy(system, fs.pk, member_id=late.pk).status == "queued"
    finally:
        g.reset(fs.pk)


def test_flash_member_of_other_tenant_is_not_found(system, product, other_tenant):
    fs = _flash(system, product, stock=2)
    stranger = make_member(other_tenant, "外人")
    for mid in (stranger.pk, 987654):
        with pytest.raises(NotFound):
            services.do_flash_buy(system, fs.pk, member_id=mid)
    assert FlashSale.objects.get(pk=fs.pk).stock == 2 and Order.objects.count() == 0


def test_flash_tier_eligibility(system, product, community, member):
    entry, _partner = services.do_seed_tiers(system, community.pk)
    fs = _flash(system, product, stock=2, eligible_tier_id=entry.pk)
    with pytest.raises(Invalid) as exc:
        services.do_flash_buy(system, fs.pk, member_id=member.pk)
    assert exc.value.code == "ineligible"
    o = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": entry.skus.get().pk, "quantity": 1}])
    pay(system, o.pk)
    assert services.do_flash_buy(system, fs.pk, member_id=member.pk).order.total_fen == 990


def test_flash_api(system, product, member):
    _k, secret = do_create_api_key(system, name="t", scopes=["commerce.write"])
    c = Client(headers={"Authorization": f"Bearer {secret}"})
    fs = _flash(system, product, stock=1)
    url = f"/api/v1/commerce/flash-sales/{fs.pk}/buy"
    r = c.post(url, data=json.dumps({"member_id": member.pk}), content_type="application/json")
    assert r.status_code == 200 and r.json()["order"]["total_fen"] == 990
    r = c.post(url, data=json.dumps({"member_id": member.pk}), content_type="application/json")
    assert r.status_code == 409
    r = c.post(url, data=json.dumps({"member_id": member.pk, "quantity": 0}), content_type="application/json")
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "body.body.quantity"  # schema bound


@pytest.mark.redis
def test_gate_many_decides_like_one_attempt_at_a_time(system, product, tenant):
    """One round trip for many attempts gives what the single-attempt script gives in the same order."""
    g = redis_gate.gate()
    one, many = _flash(system, product, stock=1), _flash(system, product, stock=1)
    attempts = [(1, 1, "{}"), (2, 2, "{}"), (1, 1, "{}"), (3, 1, "{}"), (4, 1, "{}"), (5, 1, "{}")]
    try:
        assert g.attempt_many(many.pk, attempts) == [redis_gate.NOT_PREPARED] * 6
        for fs in (one, many):
            g.reset(fs.pk)
            g.prepare(fs.pk, 4, [5])  # 4 units; member 5 already holds a reservation
        singles = [g.attempt(one.pk, m, q, a) for m, q, a in attempts]
        # the first acceptance set the wake flag (2: its caller wakes the consumer), the others see it
        assert singles == [2, 1, -1, 1, 0, -1]
        assert g.attempt_many(many.pk, attempts) == singles
        assert g.stock(many.pk) == g.stock(one.pk) == 0
        assert g.conn.xlen(redis_gate.keys(many.pk)[2]) == 3
        # through the per-process batcher, from many threads at once: each gets its own answer
        g.reset(many.pk)
        g.prepare(many.pk, 10, [])
        assert g.attempt_batched(many.pk, 100, 1, "{}") == 2
        got = race(lambda i: g.attempt_batched(many.pk, 100 + i, 1, "{}"), 31, threads=16)
        assert got[0] == -1 and sorted(got[1:]) == [0] * 21 + [1] * 9
        assert g.stock(many.pk) == 0
    finally:
        g.reset(one.pk)
        g.reset(many.pk)


@pytest.mark.redis
def test_one_consumer_task_per_run_not_per_buyer(system, product, tenant, monkeypatch):
    """The wake flag: of many acceptances before the consumer runs, one enqueues it; the run clears
    the flag first, so the next acceptance (even one made while it drains) enqueues again; a lost
    wake (the enqueuing process died) is drained by the minute sweep."""
    fs = _flash(system, product, stock=10, use_redis_gate=True)
    g = redis_gate.gate()
    g.reset(fs.pk)
    enqueued: list[int] = []
    monkeypatch.setattr(flash_services, "consume_flash_gate", SimpleNamespace(enqueue=enqueued.append))
    try:
        members = [make_member(tenant, f"w{i}") for i in range(6)]
        for m in members[:3]:
            assert services.do_flash_buy(system, fs.pk, member_id=m.pk).status == "queued"
        assert enqueued == [fs.pk]  # one task for three buyers
        assert services.do_consume_flash_gate(fs.pk) == 3
        services.do_flash_buy(system, fs.pk, member_id=members[3].pk)
        assert enqueued == [fs.pk, fs.pk]  # the run cleared the flag: the next buyer wakes it again
        # a wake whose enqueue never happened (the flag stands, no task): the sweep drains the stream
        services.do_flash_buy(system, fs.pk, member_id=members[4].pk)
        assert len(enqueued) == 2
        assert services.do_sweep_flash_gates() == 2
        assert Order.objects.filter(flash_sale=fs).count() == 5
        # a sale ended more than a day ago is left alone by the sweep
        FlashSale.objects.filter(pk=fs.pk).update(starts_at=timezone.now() - dt.timedelta(days=3),
                                                  ends_at=timezone.now() - dt.timedelta(days=2))
        assert services.do_sweep_flash_gates() == 0
    finally:
        g.reset(fs.pk)


def test_a_consumer_run_that_meets_redis_down_runs_again_later(system, product, monkeypatch):
    """Its wake flag may outlive the outage (append-only file): the run schedules itself again rather
    than leave buyers accepted after Redis returns waiting for the flag to expire."""
    fs = _flash(system, product, stock=2)

    def down(_pk):
        raise redis_lib.ConnectionError("Connection refused")

    monkeypatch.setattr(flash_services, "do_consume_flash_gate", down)
    with override_settings(TASKS={"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}):
        default_task_backend.clear()
        before = timezone.now()
        assert flash_services.consume_flash_gate.call(fs.pk) == 0
        (again,) = default_task_backend.results
        assert again.args == [fs.pk, 1] and again.task.run_after >= before + dt.timedelta(seconds=1)
        # the last try gives up (the task queue's requeue and the minute sweep take over)
        with pytest.raises(redis_lib.ConnectionError):
            flash_services.consume_flash_gate.call(fs.pk, flash_services.GATE_RETRIES)


@pytest.mark.redis
def test_consumer_gives_the_gate_back_a_unit_the_database_refuses(system, product, tenant):
    fs = _flash(system, product, stock=2, use_redis_gate=True)
    g = redis_gate.gate()
    g.reset(fs.pk)
    try:
        services.do_prepare_flash_gate(fs.pk)
        a = make_member(tenant, "a")
        assert g.attempt(fs.pk, a.pk, 1, "{}") == redis_gate.ACCEPTED_WAKE  # first: wakes the consumer
        assert g.attempt(fs.pk, 987_654_321, 1, "{}") == redis_gate.ACCEPTED  # no such member
        assert g.stock(fs.pk) == 0
        assert services.do_consume_flash_gate(fs.pk) == 1
        assert g.stock(fs.pk) == 1 and FlashSale.objects.get(pk=fs.pk).stock == 1
        b = make_member(tenant, "b")
        # the unit is sold again (and wakes the consumer: its run cleared the flag)
        assert g.attempt(fs.pk, b.pk, 1, "{}") == redis_gate.ACCEPTED_WAKE
    finally:
        g.reset(fs.pk)
