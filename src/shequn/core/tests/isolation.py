"""Tenant-isolation probes of the outgoing-webhooks API (see ``shequn.api.tests.test_isolation``):
an endpoint (get, change, rotate its secret, delete) and a delivery of one of its events (replay)."""

from __future__ import annotations

from typing import Any

from shequn.core import webhooks
from shequn.core.models import Tenant, WebhookDelivery, WebhookEndpoint
from shequn.core.permissions import Principal

P = "/api/v1/webhooks"

PROBES: dict[tuple[str, str], Any] = {
    ("get", f"{P}/endpoints/{{endpoint_id}}"): None,
    ("patch", f"{P}/endpoints/{{endpoint_id}}"): {"description": "被篡改"},
    ("delete", f"{P}/endpoints/{{endpoint_id}}"): None,
    ("post", f"{P}/endpoints/{{endpoint_id}}/rotate-secret"): None,
    ("post", f"{P}/deliveries/{{delivery_id}}/replay"): None,
}


def build_ids(tenant: Tenant, ids: dict[str, int]) -> dict[str, int]:
    owner = Principal.system(tenant.pk, label="test")
    endpoint, _secret = webhooks.do_create_endpoint(owner, url="https://erp.invalid/hook",
                                                    event_types=["order.paid"])
    webhooks.emit(tenant.pk, "order.paid", f"iso:{tenant.pk}", {"order_id": 1})
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    return {"endpoint_id": endpoint.pk, "delivery_id": delivery.pk}


def snapshot(tenant: Tenant) -> object:
    return (sorted(WebhookDelivery.objects.filter(tenant=tenant).values_list("pk", flat=True)),
            sorted(WebhookEndpoint.objects.filter(tenant=tenant).values_list("pk", "description", "secret_hint")))
