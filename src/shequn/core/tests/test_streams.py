"""The one event-delivery mechanism (core.streams): per-subscriber transactions, backoff retries of
only the failed subscriber, dead letter after MAX_ATTEMPTS, staff actions and the console page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from shequn.core import streams
from shequn.core.models import AuditLog, DeliveryFailure, StaffRole, Tenant
from shequn.core.permissions import Principal
from shequn.core.services import do_audit, do_create_operator

STREAM = "t-stream"


def _load(tenant_id: int, refs: Any) -> list[SimpleNamespace]:
    return [SimpleNamespace(pk=int(r), even=int(r) % 2 == 0) for r in refs]


@pytest.fixture
def stream() -> Iterator[dict[str, Any]]:
    """A test stream with three subscribers: ``ok`` (writes an audit row), ``bad`` (writes one, then
    raises while ``state["fail"]``) and ``evens`` (only wants even items)."""
    state: dict[str, Any] = {"fail": True, "calls": {"ok": 0, "bad": 0, "evens": 0}, "evens_seen": []}

    def ok(tenant_id: int, items: Any) -> None:
        state["calls"]["ok"] += 1
        do_audit(Principal.system(tenant_id), "test.ok", "Item", items[0].pk)

    def bad(tenant_id: int, items: Any) -> None:
        state["calls"]["bad"] += 1
        do_audit(Principal.system(tenant_id), "test.bad", "Item", items[0].pk)  # rolled back on failure
        if state["fail"]:
            raise ValueError("value too long for type character varying(64)")

    def evens(tenant_id: int, items: Any) -> None:
        state["calls"]["evens"] += 1
        state["evens_seen"].extend(i.pk for i in items)

    streams.define_stream(STREAM, _load)
    streams.subscribe(STREAM, "ok", ok)
    streams.subscribe(STREAM, "bad", bad)
    streams.subscribe(STREAM, "evens", evens, accepts=lambda i: i.even)
    try:
        yield state
    finally:
        for name in ("ok", "bad", "evens"):
            streams.unsubscribe(STREAM, name)


def test_a_failing_subscriber_is_rolled_back_alone_and_others_are_not_held_back(tenant: Tenant, stream: Any) -> None:
    out = streams.deliver(STREAM, tenant.pk, [1, 2, 3])
    assert out == {"ok": "ok", "bad": "ValueError", "evens": "ok"}
    assert stream["evens_seen"] == [2]  # the subscriber's filter is honoured
    assert AuditLog.objects.filter(action="test.ok").count() == 1
    assert not AuditLog.objects.filter(action="test.bad").exists()  # its transaction rolled back alone
    row = DeliveryFailure.objects.get()
    assert (row.stream, row.subscriber, row.tenant_id, row.refs) == (STREAM, "bad", tenant.pk, [1, 2, 3])
    assert row.state == "pending" and row.attempts == 1
    assert "ValueError: value too long" in row.error
    assert row.next_attempt_at is not None
    assert abs((row.next_attempt_at - timezone.now()) - streams.RETRY_BASE) < dt.timedelta(seconds=30)


def test_a_subscriber_that_always_fails_is_retried_with_backoff_then_dead_lettered(tenant: Tenant,
                                                                                    stream: Any) -> None:
    streams.deliver(STREAM, tenant.pk, [7])
    row = DeliveryFailure.objects.get()
    assert streams.retry_due() == 0  # not due yet
    assert stream["calls"]["bad"] == 1
    delays = []
    for attempt in range(2, streams.MAX_ATTEMPTS + 1):
        due = row.next_attempt_at
        assert due is not None
        assert streams.retry_due(now=due) == 0
        row.refresh_from_db()
        assert row.attempts == attempt and stream["calls"]["bad"] == attempt
        if row.next_attempt_at is not None:
            delays.append(row.next_attempt_at - due)
    # only the failed subscriber was re-run, for only its items
    assert stream["calls"]["ok"] == 1 and stream["calls"]["evens"] == 0
    assert [round(d / streams.RETRY_BASE) for d in delays] == [2, 4, 8, 16, 32, 64]
    assert sum(delays, streams.RETRY_BASE) > dt.timedelta(hours=20)  # spread over about a day
    assert row.state == "dead" and row.next_attempt_at is None
    assert "value too long" in row.error
    # dead: never retried again on its own
    assert streams.retry_due(now=timezone.now() + dt.timedelta(days=365)) == 0
    assert stream["calls"]["bad"] == streams.MAX_ATTEMPTS
    assert streams.open_failure_counts(tenant.pk) == {"pending": 0, "dead": 1}


def test_a_success_after_a_failure_resolves_the_row(tenant: Tenant, stream: Any) -> None:
    streams.deliver(STREAM, tenant.pk, [4])
    row = DeliveryFailure.objects.get()
    stream["fail"] = False
    assert streams.retry_due(now=row.next_attempt_at) == 1
    row.refresh_from_db()
    assert row.state == "resolved" and row.resolved_at is not None and row.next_attempt_at is None
    assert AuditLog.objects.filter(action="test.bad").count() == 1
    assert stream["calls"] == {"ok": 1, "bad": 2, "evens": 1}
    assert streams.retry_due(now=timezone.now() + dt.timedelta(days=2)) == 0


def test_replaying_a_batch_is_harmless(tenant: Tenant, stream: Any) -> None:
    streams.deliver(STREAM, tenant.pk, [1, 2])
    streams.deliver(STREAM, tenant.pk, [1, 2])  # the delivery task ran twice (crash, redelivery)
    row = DeliveryFailure.objects.get()  # the same failure row, counted twice
    assert row.attempts == 2 and row.state == "pending"
    stream["fail"] = False
    assert streams.deliver(STREAM, tenant.pk, [1, 2]) == {"ok": "ok", "bad": "ok", "evens": "ok"}
    row.refresh_from_db()
    assert row.state == "resolved"
    assert streams.deliver(STREAM, tenant.pk, [1, 2], only="bad") == {"bad": "ok"}
    assert DeliveryFailure.objects.count() == 1


def test_an_unregistered_subscriber_is_counted_not_skipped_forever(tenant: Tenant, stream: Any) -> None:
    streams.deliver(STREAM, tenant.pk, [3])
    row = DeliveryFailure.objects.get()
    streams.unsubscribe(STREAM, "bad")
    assert streams.retry_due(now=row.next_attempt_at) == 0
    row.refresh_from_db()
    assert row.attempts == 2 and "not registered" in row.error


def test_staff_retry_and_resolve_are_audited(tenant: Tenant, stream: Any) -> None:
    staff = Principal(tenant_id=tenant.pk, kind="staff", actor_id="1", label="小王")
    streams.deliver(STREAM, tenant.pk, [5])
    streams.deliver(STREAM, tenant.pk, [6])
    first, second = DeliveryFailure.objects.order_by("pk")
    DeliveryFailure.objects.filter(pk=first.pk).update(state="dead", next_attempt_at=None,
                                                      attempts=streams.MAX_ATTEMPTS)
    first.refresh_from_db()
    assert not streams.do_retry_failure(staff, first)  # still failing: stays dead, counted
    first.refresh_from_db()
    assert first.state == "dead" and first.attempts == streams.MAX_ATTEMPTS + 1
    stream["fail"] = False
    assert streams.do_retry_failure(staff, first)
    first.refresh_from_db()
    assert first.state == "resolved" and "小王" in first.resolved_by
    streams.do_resolve_failure(staff, second, reason="补录完成")
    second.refresh_from_db()
    assert second.state == "resolved"
    assert AuditLog.objects.filter(action="delivery.retry").count() == 2
    assert AuditLog.objects.get(action="delivery.resolve").reason == "补录完成"
    other = Tenant.objects.create(slug="other", name="other")
    with pytest.raises(LookupError):
        streams.do_resolve_failure(Principal.system(other.pk), second)


# -- the console page ------------------------------------------------------------------------------


@pytest.fixture
def console(tenant: Tenant) -> Client:
    staff = do_create_operator(tenant=tenant, username="owner", password="pw-123456", role=StaffRole.OWNER)
    c = Client()
    c.force_login(staff.user)
    return c


def test_console_dead_letter_page_shows_the_reason_and_retry_now_works(tenant: Tenant, stream: Any,
                                                                       console: Client) -> None:
    streams.deliver(STREAM, tenant.pk, [9])
    row = DeliveryFailure.objects.get()
    DeliveryFailure.objects.filter(pk=row.pk).update(state="dead", next_attempt_at=None)
    other = Tenant.objects.create(slug="other", name="other")
    DeliveryFailure.objects.create(tenant=other, stream=STREAM, subscriber="secret-sub", refs=[1], error="x")

    page = console.get("/console/core/deliveryfailure/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "value too long" in html and "死信" in html
    assert "secret-sub" not in html  # another tenant's rows are not shown
    detail = console.get(f"/console/core/deliveryfailure/{row.pk}/change/")
    assert detail.status_code == 200 and "value too long" in detail.content.decode()
    home = console.get("/console/")
    assert any(k["href"].endswith("/core/deliveryfailure/") for k in home.context["shequn_kpis"])

    stream["fail"] = False
    assert console.get(f"/console/core/deliveryfailure/{row.pk}/retry/").status_code == 200  # confirmation only
    row.refresh_from_db()
    assert row.state != "resolved"
    r = console.post(f"/console/core/deliveryfailure/{row.pk}/retry/")
    assert r.status_code == 302
    row.refresh_from_db()
    assert row.state == "resolved"
    assert AuditLog.objects.filter(action="delivery.retry", object_id=str(row.pk)).exists()


def test_console_mark_resolved_list_action(tenant: Tenant, stream: Any, console: Client) -> None:
    streams.deliver(STREAM, tenant.pk, [11])
    row = DeliveryFailure.objects.get()
    r = console.post("/console/core/deliveryfailure/", {"action": "resolve_selected",
                                                         "_selected_action": [str(row.pk)]})
    assert r.status_code == 302
    row.refresh_from_db()
    assert row.state == "resolved"


def test_console_page_needs_settings_read(tenant: Tenant) -> None:
    staff = do_create_operator(tenant=tenant, username="cs", password="pw-123456", role=StaffRole.CUSTOMER_SERVICE)
    c = Client()
    c.force_login(staff.user)
    assert c.get("/console/core/deliveryfailure/").status_code == 403
