"""Outgoing webhooks against a local receiver (a real socket: http.server in a thread): the signature
a receiver verifies, retries with backoff, replay, disabling after persistent failure; the sources
(order events, activity) through the shared delivery mechanism; the API and the console pages."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from shequn.activity.models import ActivityEvent
from shequn.commerce.events import STREAM as ORDER_STREAM
from shequn.commerce.events import OrderEventData
from shequn.core import streams, webhooks
from shequn.core.models import AuditLog, StaffRole, Tenant, WebhookDelivery, WebhookEndpoint, WebhookEvent
from shequn.core.permissions import Principal
from shequn.core.services import do_create_operator
from shequn.members.models import Member


class Receiver:
    """A local webhook receiver: records every request; answers the next queued status (200 when the
    queue is empty, or ``default``)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.default = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body, "path": self.path})
                status = receiver.statuses.pop(0) if receiver.statuses else receiver.default
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"receiver error")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/shequn"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver on 127.0.0.1, which the SSRF guard refuses unless SHEQUN_WEBHOOK_ALLOW_PRIVATE."""
    r = Receiver()
    with override_settings(SHEQUN_WEBHOOK_ALLOW_PRIVATE=True):
        yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def owner(tenant: Tenant) -> Principal:
    return Principal(tenant_id=tenant.pk, kind="staff", actor_id="1", label="owner",
                     permissions=frozenset({"settings.read", "settings.write"}))


def _endpoint(owner: Principal, url: str, types: list[str] | None = None) -> tuple[WebhookEndpoint, str]:
    return webhooks.do_create_endpoint(owner, url=url, event_types=types or ["order.paid", "member.joined"],
                                       description="ERP")


def _emit(tenant: Tenant, key: str = "k1", type_: str = "order.paid") -> WebhookEvent:
    event = webhooks.emit(tenant.pk, type_, key, {"order_id": 7, "amount_fen": 1990})
    assert event is not None
    return event


def test_receiver_verifies_the_signature_over_the_raw_body(tenant: Tenant, owner: Principal,
                                                           receiver: Receiver) -> None:
    endpoint, secret = _endpoint(owner, receiver.url)
    assert secret.startswith("whsec_") and secret not in endpoint.secret_encrypted  # encrypted at rest
    event = _emit(tenant)
    assert webhooks.deliver_due() == 1

    [req] = receiver.requests
    headers, body = req["headers"], req["body"]
    assert webhooks.verify_signature(secret, headers["Shequn-Signature"], body)
    assert not webhooks.verify_signature("whsec_wrong", headers["Shequn-Signature"], body)
    assert not webhooks.verify_signature(secret, headers["Shequn-Signature"], body.replace(b"1990", b"1"))
    # a captured request replayed later than the tolerance is refused
    assert not webhooks.verify_signature(secret, headers["Shequn-Signature"], body, now=time.time() + 3600)
    payload = json.loads(body)
    assert payload == {"id": f"evt_{event.pk}", "type": "order.paid", "created": payload["created"],
                       "tenant": "acme", "data": {"order_id": 7, "amount_fen": 1990}}
    assert headers["Shequn-Event-Type"] == "order.paid" and headers["Shequn-Event-Id"] == f"evt_{event.pk}"
    row = WebhookDelivery.objects.get()
    assert row.state == WebhookDelivery.State.SUCCEEDED and row.last_status_code == 200 and row.attempts == 1


@settings(max_examples=50, deadline=None)
@given(body=st.binary(max_size=300), secret=st.text(min_size=1, max_size=40), flip=st.integers(min_value=0))
def test_signature_accepts_exactly_the_signed_body(body: bytes, secret: str, flip: int) -> None:
    ts = int(time.time())
    header = webhooks.sign(secret, body, ts)
    assert webhooks.verify_signature(secret, header, body, now=ts)
    if body:
        i = flip % len(body)
        tampered = body[:i] + bytes([body[i] ^ 1]) + body[i + 1:]
        assert not webhooks.verify_signature(secret, header, tampered, now=ts)


def test_failed_attempts_are_retried_with_doubling_backoff(tenant: Tenant, owner: Principal,
                                                           receiver: Receiver) -> None:
    _endpoint(owner, receiver.url)
    _emit(tenant)
    receiver.statuses = [500, 503]
    t0 = timezone.now()

    assert webhooks.deliver_due(now=t0) == 0
    row = WebhookDelivery.objects.get()
    assert row.state == "pending" and row.attempts == 1 and row.last_status_code == 500
    assert row.next_attempt_at == t0 + dt.timedelta(minutes=1)
    assert row.response_excerpt == "receiver error"

    assert webhooks.deliver_due(now=t0 + dt.timedelta(seconds=30)) == 0  # not due yet: nothing sent
    assert len(receiver.requests) == 1

    t1 = t0 + dt.timedelta(minutes=1)
    assert webhooks.deliver_due(now=t1) == 0
    row.refresh_from_db()
    assert row.attempts == 2 and row.next_attempt_at == t1 + dt.timedelta(minutes=2)  # doubled
    assert WebhookEndpoint.objects.get().consecutive_failures == 2

    t2 = t1 + dt.timedelta(minutes=2)
    assert webhooks.deliver_due(now=t2) == 1
    row.refresh_from_db()
    assert row.state == "succeeded" and row.attempts == 3 and row.delivered_at == t2
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.consecutive_failures == 0 and endpoint.last_success_at == t2
    # every attempt carried the same body (same event id), each freshly signed
    bodies = {r["body"] for r in receiver.requests}
    assert len(receiver.requests) == 3 and len(bodies) == 1


def test_an_unreachable_receiver_is_a_failed_attempt(tenant: Tenant, owner: Principal, receiver: Receiver) -> None:
    url = receiver.url
    receiver.server.shutdown()
    receiver.server.server_close()  # nothing listens on that port any more
    _endpoint(owner, url)
    _emit(tenant)
    assert webhooks.deliver_due() == 0
    row = WebhookDelivery.objects.get()
    assert row.state == "pending" and row.last_status_code is None and "Connection" in row.last_error


def test_replay_sends_the_same_event_again_as_a_new_delivery(tenant: Tenant, owner: Principal,
                                                            receiver: Receiver) -> None:
    _endpoint(owner, receiver.url)
    event = _emit(tenant)
    webhooks.deliver_due()
    original = WebhookDelivery.objects.get()

    replay = webhooks.do_replay(owner, original)
    assert replay.pk != original.pk and replay.replay_of_id == original.pk and replay.state == "pending"
    assert webhooks.deliver_due() == 1
    assert len(receiver.requests) == 2
    assert json.loads(receiver.requests[1]["body"])["id"] == f"evt_{event.pk}"
    assert receiver.requests[1]["headers"]["Shequn-Delivery-Id"] == str(replay.pk)
    replay.refresh_from_db()
    assert replay.state == "succeeded"
    assert AuditLog.objects.filter(action="webhooks.delivery.replay", object_id=str(original.pk)).exists()


def test_persistent_failure_gives_up_and_disables_the_endpoint(tenant: Tenant, owner: Principal,
                                                              receiver: Receiver, client: Client) -> None:
    _endpoint(owner, receiver.url)
    _emit(tenant)
    receiver.default = 500
    now = timezone.now()
    for _ in range(webhooks.MAX_ATTEMPTS):
        webhooks.deliver_due(now=now)
        row = WebhookDelivery.objects.get()
        now = (row.next_attempt_at or now) + dt.timedelta(seconds=1)
    row = WebhookDelivery.objects.get()
    assert row.state == "failed" and row.attempts == webhooks.MAX_ATTEMPTS and row.next_attempt_at is None
    assert len(receiver.requests) == webhooks.MAX_ATTEMPTS
    endpoint = WebhookEndpoint.objects.get()
    assert not endpoint.is_active and endpoint.disabled_at is not None
    assert f"#{row.pk}" in endpoint.disabled_reason
    assert AuditLog.objects.filter(action="webhooks.endpoint.disabled").exists()

    # a disabled endpoint gets no new events and cannot be replayed to
    assert webhooks.emit(tenant.pk, "order.paid", "k2", {}) is None
    with pytest.raises(Exception, match="停用"):
        webhooks.do_replay(owner, row)

    # the console shows a notice on the home page and on the endpoints page
    staff = do_create_operator(tenant=tenant, username="owner", password="pw-123456", role=StaffRole.OWNER)
    client.force_login(staff.user)
    home = client.get("/console/")
    assert "Webhook 端点因持续失败已停用" in home.content.decode()
    page = client.get("/console/core/webhookendpoint/")
    assert "已被自动停用" in page.content.decode()

    # staff fix the receiver and enable it again: the counters reset and new events flow
    receiver.default = 200
    webhooks.do_update_endpoint(owner, endpoint, is_active=True)
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.consecutive_failures == 0 and endpoint.disabled_reason == ""
    webhooks.do_replay(owner, row)
    assert webhooks.deliver_due() == 1


def test_an_endpoint_that_succeeded_meanwhile_is_not_disabled(tenant: Tenant, owner: Principal,
                                                              receiver: Receiver) -> None:
    """One poison delivery (e.g. a receiver bug on one payload) gives up alone while others succeed."""
    _endpoint(owner, receiver.url)
    _emit(tenant, "bad")
    now = timezone.now()
    receiver.statuses = [500] * (webhooks.MAX_ATTEMPTS - 1)
    for _ in range(webhooks.MAX_ATTEMPTS - 1):
        webhooks.deliver_due(now=now)
        now = WebhookDelivery.objects.get().next_attempt_at + dt.timedelta(seconds=1)
    _emit(tenant, "good")
    webhooks.deliver_due(now=now - dt.timedelta(seconds=2))  # only the new one is due: it succeeds
    receiver.statuses = [500]
    webhooks.deliver_due(now=now)
    states = dict(WebhookDelivery.objects.values_list("event__key", "state"))
    assert states == {"bad": "failed", "good": "succeeded"}
    assert WebhookEndpoint.objects.get().is_active


def test_emit_is_idempotent_and_only_reaches_subscribed_endpoints(tenant: Tenant, other_tenant: Tenant,
                                                                  owner: Principal, receiver: Receiver) -> None:
    orders, _ = _endpoint(owner, receiver.url, ["order.paid"])
    joins, _ = _endpoint(owner, receiver.url + "?j", ["member.joined"])
    event = _emit(tenant)
    assert webhooks.emit(tenant.pk, "order.paid", "k1", {"order_id": 7}) is None  # the same source again
    assert list(WebhookDelivery.objects.values_list("endpoint_id", flat=True)) == [orders.pk]
    assert webhooks.emit(other_tenant.pk, "order.paid", "k1", {}) is None  # no endpoints there
    assert WebhookEvent.objects.count() == 1 and event.tenant_id == tenant.pk
    assert joins.event_types == ["member.joined"]


def test_order_events_and_joins_arrive_through_the_shared_delivery_mechanism(tenant: Tenant, owner: Principal,
                                                                            receiver: Receiver) -> None:
    _endpoint(owner, receiver.url, ["order.paid", "order.refunded", "member.joined", "member.left"])
    data = OrderEventData(tenant_id=tenant.pk, event_id=41, kind="paid", order_id=9, member_id=3, amount_fen=1990,
                          lines=[{"product_id": 1, "sku_id": 2, "product_kind": "tier", "quantity": 1,
                                  "amount_fen": 1990, "order_line_id": 5}])
    out = streams.deliver(ORDER_STREAM, tenant.pk, [41], only="webhooks", items=[data])
    assert out == {"webhooks": "ok"}
    streams.deliver(ORDER_STREAM, tenant.pk, [41], only="webhooks", items=[data])  # replayed: nothing new
    member = Member.objects.create(tenant=tenant, display_name="小王", first_seen_at=timezone.now())
    join = ActivityEvent.objects.create(tenant=tenant, member=member, platform="matrix", platform_event_id="$j",
                                        kind="join", occurred_at=timezone.now(), received_at=timezone.now())
    message = ActivityEvent.objects.create(tenant=tenant, member=member, platform="matrix", platform_event_id="$m",
                                           kind="message", occurred_at=timezone.now(), received_at=timezone.now())
    assert streams.deliver("activity", tenant.pk, [join.pk, message.pk], only="webhooks") == {"webhooks": "ok"}

    webhooks.deliver_due()
    got = [json.loads(r["body"]) for r in receiver.requests]
    assert [(g["type"], g["data"].get("order_id"), g["data"].get("member_id")) for g in got] == [
        ("order.paid", 9, 3), ("member.joined", None, member.pk)]
    assert got[0]["data"]["lines"] == [{"product_id": 1, "sku_id": 2, "product_kind": "tier", "quantity": 1,
                                        "amount_fen": 1990}]


# -- API -------------------------------------------------------------------------------------------


def test_api_endpoint_crud_secret_once_and_field_errors(tenant: Tenant, make_client: Any,
                                                        receiver: Receiver) -> None:
    api = make_client(tenant, ["settings.write"])
    bad = api.post("/api/v1/webhooks/endpoints", {"url": "ftp://x", "event_types": ["order.paid"]})
    assert bad.status_code == 422 and bad.json()["details"]["field"] == "url"
    bad = api.post("/api/v1/webhooks/endpoints", {"url": receiver.url, "event_types": ["order.shipped"]})
    assert bad.status_code == 422 and "event_types" in json.dumps(bad.json()["details"])
    assert WebhookEndpoint.objects.count() == 0

    created = api.post("/api/v1/webhooks/endpoints", {"url": receiver.url, "event_types": ["withdrawal.paid"],
                                                      "description": "财务系统"},
                       headers={"Idempotency-Key": "create-1"})
    assert created.status_code == 201
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and body["secret_hint"] == "••••" + secret[-4:]
    eid = body["id"]
    shown = api.get(f"/api/v1/webhooks/endpoints/{eid}").json()
    assert "secret" not in shown and secret not in json.dumps(api.get("/api/v1/webhooks/endpoints").json())

    patched = api.patch(f"/api/v1/webhooks/endpoints/{eid}", {"event_types": ["withdrawal.paid", "health.alert"]})
    assert patched.status_code == 200 and patched.json()["event_types"] == ["withdrawal.paid", "health.alert"]
    rotated = api.post(f"/api/v1/webhooks/endpoints/{eid}/rotate-secret").json()["secret"]
    assert rotated != secret

    webhooks.emit(tenant.pk, "health.alert", "h1", {"kind": "dead_group"})
    webhooks.deliver_due()
    assert webhooks.verify_signature(rotated, receiver.requests[0]["headers"]["Shequn-Signature"],
                                     receiver.requests[0]["body"])
    log = api.get("/api/v1/webhooks/deliveries", {"endpoint_id": eid}).json()["items"]
    assert [(d["event_type"], d["state"], d["last_status_code"]) for d in log] == [("health.alert", "succeeded", 200)]
    replay = api.post(f"/api/v1/webhooks/deliveries/{log[0]['id']}/replay")
    assert replay.status_code == 201 and replay.json()["replay_of"] == log[0]["id"]
    webhooks.deliver_due()
    assert len(receiver.requests) == 2
    assert api.delete(f"/api/v1/webhooks/endpoints/{eid}").json() == {"id": eid, "deleted": True}
    assert not WebhookEndpoint.objects.exists()


def test_api_needs_settings_permissions(tenant: Tenant, make_client: Any) -> None:
    reader = make_client(tenant, ["members.read"])
    assert reader.get("/api/v1/webhooks/endpoints").status_code == 403
    settings_reader = make_client(tenant, ["settings.read"])
    resp = settings_reader.post("/api/v1/webhooks/endpoints", {"url": "https://erp.example/h",
                                                              "event_types": ["order.paid"]})
    assert resp.status_code == 403


# -- console ---------------------------------------------------------------------------------------


def test_console_creates_an_endpoint_shows_the_secret_once_and_replays(tenant: Tenant, client: Client,
                                                                       receiver: Receiver) -> None:
    staff = do_create_operator(tenant=tenant, username="owner", password="pw-123456", role=StaffRole.OWNER)
    client.force_login(staff.user)
    add = "/console/core/webhookendpoint/add/"
    page = client.get(add).content.decode()
    assert 'name="event_types"' in page and "订单已支付" in page and 'type="checkbox"' in page

    bad = client.post(add, {"url": "ftp://x", "description": "", "event_types": ["order.paid"], "is_active": "on"})
    assert bad.status_code == 200 and "http:// 或 https://" in bad.content.decode()
    assert not WebhookEndpoint.objects.exists()

    resp = client.post(add, {"url": receiver.url, "description": "ERP", "event_types": ["order.paid", "member.left"],
                             "is_active": "on"}, follow=True)
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.event_types == ["order.paid", "member.left"]
    html = resp.content.decode()
    assert "只显示这一次" in html
    secret = html.split("whsec_", 1)[1][:43]
    assert webhooks.endpoint_secret(endpoint) == "whsec_" + secret
    listing = client.get("/console/core/webhookendpoint/").content.decode()
    assert "whsec_" not in listing and "订单已支付、成员退群" in listing

    _emit(tenant)
    webhooks.deliver_due()
    delivery = WebhookDelivery.objects.get()
    log = client.get("/console/core/webhookdelivery/").content.decode()
    assert "订单已支付" in log and "已送达" in log
    detail = client.get(f"/console/core/webhookdelivery/{delivery.pk}/change/").content.decode()
    assert "重放" in detail and "1990" in detail
    client.get(f"/console/core/webhookdelivery/{delivery.pk}/replay/")  # asks for confirmation only
    assert not WebhookDelivery.objects.filter(replay_of=delivery).exists()
    client.post(f"/console/core/webhookdelivery/{delivery.pk}/replay/")
    assert WebhookDelivery.objects.filter(replay_of=delivery).count() == 1
    webhooks.deliver_due()
    assert len(receiver.requests) == 2


def test_joins_are_not_stored_without_a_member_subscription(tenant: Tenant, owner: Principal,
                                                             receiver: Receiver) -> None:
    _endpoint(owner, receiver.url, ["order.paid"])
    member = Member.objects.create(tenant=tenant, display_name="小李", first_seen_at=timezone.now())
    join = ActivityEvent.objects.create(tenant=tenant, member=member, platform="matrix", platform_event_id="$j2",
                                        kind="join", occurred_at=timezone.now(), received_at=timezone.now())
    assert streams.deliver("activity", tenant.pk, [join.pk], only="webhooks") == {"webhooks": "ok"}
    assert not WebhookEvent.objects.exists()
    assert webhooks.subscribed_types(tenant.pk) == {"order.paid"}


def test_an_undecryptable_secret_is_a_visible_failed_attempt(tenant: Tenant, owner: Principal,
                                                            receiver: Receiver) -> None:
    endpoint, _secret = _endpoint(owner, receiver.url)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret_encrypted="gAAAA-not-a-token")
    _emit(tenant)
    assert webhooks.deliver_due() == 0
    row = WebhookDelivery.objects.get()
    assert row.state == "pending" and row.attempts == 1 and "decrypted" in row.last_error
    assert receiver.requests == []  # nothing unsigned ever leaves
