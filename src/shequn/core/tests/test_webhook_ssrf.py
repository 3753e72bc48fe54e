"""The SSRF guard of outgoing webhooks (``core.netguard``): a URL pointing at the platform's own
network (loopback, private, link-local/metadata, shared, unspecified; IP literals and names that
resolve there) is refused when saved and again when delivered — the delivery resolves the name
itself and checks every address — unless ``SHEQUN_WEBHOOK_ALLOW_PRIVATE``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client, override_settings

from shequn.api.testing import key_for
from shequn.core import netguard, webhooks
from shequn.core.errors import Invalid
from shequn.core.models import Tenant, WebhookDelivery, WebhookEndpoint
from shequn.core.permissions import Principal


@pytest.fixture
def owner(tenant: Tenant) -> Principal:
    return Principal(tenant_id=tenant.pk, kind="staff", actor_id="1", label="owner",
                     permissions=frozenset({"settings.read", "settings.write"}))


@pytest.fixture
def hits() -> Iterator[tuple[list[bytes], int]]:
    """A receiver on 127.0.0.1 that records what reaches it."""
    got: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield got, int(server.server_address[1])
    server.shutdown()
    server.server_close()


REFUSED = [
    "http://127.0.0.1/h", "http://127.1.2.3:8080/h", "http://localhost/h", "http://[::1]/h",
    "http://10.0.0.5/h", "http://172.16.3.4/h", "http://192.168.1.1/h", "http://169.254.169.254/latest/meta-data",
    "http://100.100.100.200/latest/meta-data", "http://0.0.0.0/h", "http://[fd00:ec2::254]/h",
    "http://[::ffff:127.0.0.1]/h", "http://[fe80::1]/h", "http://224.0.0.1/h", "http://2130706433/h",
]


@pytest.mark.parametrize("url", REFUSED)
def test_private_addresses_are_refused_at_save_time(url: str, owner: Principal) -> None:
    with pytest.raises(Invalid) as err:
        webhooks.do_create_endpoint(owner, url=url, event_types=["order.paid"])
    assert err.value.details == {"field": "url"}
    assert "内网" in err.value.message
    assert not WebhookEndpoint.objects.exists()


def test_a_name_resolving_to_a_private_address_is_refused(owner: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every address of the name is checked: one private address among public ones is enough."""
    monkeypatch.setattr(netguard, "resolve", lambda host, port: ["93.184.216.34", "10.1.2.3"])
    with pytest.raises(Invalid):
        webhooks.check_url("https://erp.example.com/hook")
    monkeypatch.setattr(netguard, "resolve", lambda host, port: ["93.184.216.34", "2606:2800:220:1::1"])
    assert webhooks.check_url("https://erp.example.com/hook") == "https://erp.example.com/hook"


def test_the_api_names_the_url_field(tenant: Tenant) -> None:
    _key, secret = key_for(tenant)
    r = Client().post("/api/v1/webhooks/endpoints", data=json.dumps({"url": "http://169.254.169.254/x",
                                                                     "event_types": ["order.paid"]}),
                      content_type="application/json",
                      headers={"Authorization": f"Bearer {secret}", "Idempotency-Key": "ssrf-1"})
    assert r.status_code == 422 and r.json()["details"]["field"] == "url", r.content


def test_allow_private_setting_lets_a_local_receiver_be_saved(owner: Principal) -> None:
    with override_settings(SHEQUN_WEBHOOK_ALLOW_PRIVATE=True):
        endpoint, _secret = webhooks.do_create_endpoint(owner, url="http://127.0.0.1:9/h", event_types=["order.paid"])
    assert endpoint.url == "http://127.0.0.1:9/h"


def _queue(owner: Principal, url: str) -> WebhookDelivery:
    with override_settings(SHEQUN_WEBHOOK_ALLOW_PRIVATE=True):
        webhooks.do_create_endpoint(owner, url=url, event_types=["order.paid"])
    webhooks.emit(owner.tenant_id, "order.paid", "order_event:1", {"order_id": 1})
    return WebhookDelivery.objects.get()


def test_delivery_to_a_private_address_is_refused(owner: Principal, hits: tuple[list[bytes], int]) -> None:
    """An endpoint saved while allowed (or whose name now resolves inward) is still not reached:
    the connection checks the address itself; the attempt fails and is retried like any other."""
    got, port = hits
    with override_settings(TASKS={"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}):
        delivery = _queue(owner, f"http://127.0.0.1:{port}/h")
    assert webhooks.deliver_due() == 0
    delivery.refresh_from_db()
    assert got == []
    assert delivery.state == WebhookDelivery.State.PENDING and delivery.attempts == 1
    assert delivery.last_error.startswith("blocked:"), delivery.last_error
    with override_settings(SHEQUN_WEBHOOK_ALLOW_PRIVATE=True):
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=delivery.created_at)
        assert webhooks.deliver_due() == 1
    assert len(got) == 1


def test_delivery_resolves_the_name_and_checks_every_address(owner: Principal, hits: tuple[list[bytes], int],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name looked public when saved, resolves to 127.0.0.1 when delivered."""
    got, port = hits
    monkeypatch.setattr(netguard, "resolve", lambda host, port: ["93.184.216.34"])
    with override_settings(TASKS={"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}):
        webhooks.do_create_endpoint(owner, url=f"http://hooks.example.com:{port}/h", event_types=["order.paid"])
        webhooks.emit(owner.tenant_id, "order.paid", "order_event:2", {"order_id": 2})
    monkeypatch.setattr(netguard, "resolve", lambda host, p: ["93.184.216.34", "127.0.0.1"])
    assert webhooks.deliver_due() == 0
    assert got == []
    assert WebhookDelivery.objects.get().last_error.startswith("blocked:")


@pytest.mark.parametrize("address,blocked", [
    ("8.8.8.8", False), ("2001:4860:4860::8888", False), ("127.0.0.1", True), ("::1", True), ("10.9.8.7", True),
    ("169.254.169.254", True), ("100.64.0.1", True), ("::ffff:10.0.0.1", True), ("::ffff:8.8.8.8", False),
    ("fc00::1", True), ("not-an-ip", True),
])
def test_is_blocked(address: str, blocked: bool) -> None:
    assert netguard.is_blocked(address) is blocked
