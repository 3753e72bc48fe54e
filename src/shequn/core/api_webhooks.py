"""REST API of outgoing webhooks (:mod:`shequn.core.webhooks`), mounted at ``/api/v1/webhooks``:
endpoints (the secret is in the creation and rotation answers only), the delivery log, replay.
Reading needs ``settings.read``, changing ``settings.write``."""


import datetime as dt
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Router, Schema, Status
from ninja.params import P, QueryEx

from . import webhooks
from .errors import NotFound
from .http import ERRORS, BodyIn, Id, idempotent, max_len, patch_changes, require
from .models import WebhookDelivery, WebhookEndpoint, WebhookEventType
from .pagination import KeysetPagination, paginate
from .selectors import webhook_deliveries, webhook_endpoints

router = Router(tags=["webhooks"])

EventType = Literal[
    "order.paid", "order.refunded", "member.joined", "member.left", "commission.available", "withdrawal.paid",
    "violation.created", "health.alert",
]
assert set(EventType.__args__) == set(webhooks.EVENT_TYPES)  # type: ignore[attr-defined]
Url = Annotated[str, Field(min_length=1, max_length=max_len(WebhookEndpoint, "url"))]
Description = Annotated[str, Field(max_length=max_len(WebhookEndpoint, "description"))]


class EventTypeOut(Schema):
    code: str
    label: str


class EndpointIn(BodyIn):
    url: Url = Field(description="http(s) URL receiving signed POSTs")
    event_types: list[EventType] = Field(min_length=1, max_length=len(webhooks.EVENT_TYPES))
    description: Description = ""
    is_active: bool = True


class EndpointPatch(BodyIn):
    url: Url | None = None
    event_types: list[EventType] | None = Field(None, min_length=1, max_length=len(webhooks.EVENT_TYPES))
    description: Description | None = None
    is_active: bool | None = Field(None, description="true re-enables an endpoint the platform disabled")


class EndpointOut(Schema):
    id: int
    url: str
    description: str
    event_types: list[str]
    secret_hint: str = Field(description="the last characters of the signing secret")
    is_active: bool
    disabled_at: dt.datetime | None
    disabled_reason: str
    consecutive_failures: int
    last_success_at: dt.datetime | None
    created_at: dt.datetime


class EndpointCreatedOut(EndpointOut):
    secret: str = Field(description="signing secret, shown once; store it now")


class SecretOut(Schema):
    id: int
    secret: str = Field(description="the new signing secret, shown once")


class EndpointDeletedOut(Schema):
    id: int
    deleted: bool


class DeliveryOut(Schema):
    id: int
    endpoint_id: int
    event_id: str
    event_type: str
    replay_of: int | None
    state: str = Field(description="pending | succeeded | failed")
    attempts: int
    next_attempt_at: dt.datetime | None
    last_status_code: int | None
    last_error: str
    response_excerpt: str
    duration_ms: int | None
    delivered_at: dt.datetime | None
    created_at: dt.datetime
    payload: dict[str, Any] = Field(description="the event's data")


def _endpoint_out(e: WebhookEndpoint) -> dict[str, Any]:
    return {"id": e.pk, "url": e.url, "description": e.description, "event_types": list(e.event_types),
            "secret_hint": e.secret_hint, "is_active": e.is_active, "disabled_at": e.disabled_at,
            "disabled_reason": e.disabled_reason, "consecutive_failures": e.consecutive_failures,
            "last_success_at": e.last_success_at, "created_at": e.created_at}


def _delivery_out(d: WebhookDelivery) -> dict[str, Any]:
    return {"id": d.pk, "endpoint_id": d.endpoint_id, "event_id": f"evt_{d.event_id}", "event_type": d.event.type,
            "replay_of": d.replay_of_id, "state": d.state, "attempts": d.attempts,
            "next_attempt_at": d.next_attempt_at, "last_status_code": d.last_status_code, "last_error": d.last_error,
            "response_excerpt": d.response_excerpt, "duration_ms": d.duration_ms, "delivered_at": d.delivered_at,
            "created_at": d.created_at, "payload": d.event.data}


def _endpoint(tenant_id: int, endpoint_id: int) -> WebhookEndpoint:
    e = webhook_endpoints(tenant_id).filter(pk=endpoint_id).first()
    if e is None:
        raise NotFound(_("Webhook 端点不存在"), details={"endpoint_id": endpoint_id})
    return e


@router.get("/event-types", response={200: list[EventTypeOut], **ERRORS}, summary="可订阅的事件类型")
def event_types(request: HttpRequest) -> Any:
    require(request, "settings.read")
    return [{"code": t.value, "label": str(t.label)} for t in WebhookEventType]


@router.get("/endpoints", response={200: list[EndpointOut], **ERRORS}, summary="Webhook 端点列表")
@paginate(KeysetPagination, item=_endpoint_out)
def list_endpoints(request: HttpRequest) -> Any:
    p = require(request, "settings.read")
    return webhook_endpoints(p.tenant_id)


@router.post("/endpoints", response={201: EndpointCreatedOut, **ERRORS}, summary="创建 Webhook 端点")
@idempotent
def create_endpoint(request: HttpRequest, payload: EndpointIn) -> Any:
    p = require(request, "settings.write")
    endpoint, secret = webhooks.do_create_endpoint(p, url=payload.url, event_types=payload.event_types,
                                                   description=payload.description, is_active=payload.is_active)
    return Status(201, EndpointCreatedOut(**_endpoint_out(endpoint), secret=secret))


@router.get("/endpoints/{endpoint_id}", response={200: EndpointOut, **ERRORS}, summary="Webhook 端点详情")
def get_endpoint(request: HttpRequest, endpoint_id: Id) -> Any:
    p = require(request, "settings.read")
    return _endpoint_out(_endpoint(p.tenant_id, endpoint_id))


@router.patch("/endpoints/{endpoint_id}", response={200: EndpointOut, **ERRORS}, summary="修改 Webhook 端点")
def update_endpoint(request: HttpRequest, endpoint_id: Id, payload: EndpointPatch) -> Any:
    p = require(request, "settings.write")
    endpoint = _endpoint(p.tenant_id, endpoint_id)
    changes = patch_changes(payload, param="payload")
    return _endpoint_out(webhooks.do_update_endpoint(p, endpoint, **changes))


@router.delete("/endpoints/{endpoint_id}", response={200: EndpointDeletedOut, **ERRORS}, summary="删除 Webhook 端点")
def delete_endpoint(request: HttpRequest, endpoint_id: Id) -> Any:
    p = require(request, "settings.write")
    webhooks.do_delete_endpoint(p, _endpoint(p.tenant_id, endpoint_id))
    return {"id": endpoint_id, "deleted": True}


@router.post("/endpoints/{endpoint_id}/rotate-secret", response={200: SecretOut, **ERRORS},
             summary="更换签名密钥")
@idempotent
def rotate_secret(request: HttpRequest, endpoint_id: Id) -> Any:
    p = require(request, "settings.write")
    endpoint = _endpoint(p.tenant_id, endpoint_id)
    return {"id": endpoint.pk, "secret": webhooks.do_rotate_secret(p, endpoint)}


@router.get("/deliveries", response={200: list[DeliveryOut], **ERRORS}, summary="投递记录")
@paginate(KeysetPagination, item=_delivery_out)
def list_deliveries(request: HttpRequest, endpoint_id: QueryEx[int | None, P(ge=1)] = None,
                    state: Literal["pending", "succeeded", "failed"] | None = None) -> Any:
    p = require(request, "settings.read")
    return webhook_deliveries(p.tenant_id, endpoint_id=endpoint_id, state=state)


@router.post("/deliveries/{delivery_id}/replay", response={201: DeliveryOut, **ERRORS}, summary="重放投递")
@idempotent
def replay_delivery(request: HttpRequest, delivery_id: Id) -> Any:
    p = require(request, "settings.write")
    delivery = webhook_deliveries(p.tenant_id).filter(pk=delivery_id).first()
    if delivery is None:
        raise NotFound(_("投递记录不存在"), details={"delivery_id": delivery_id})
    replay = webhooks.do_replay(p, delivery)
    return Status(201, _delivery_out(webhook_deliveries(p.tenant_id).get(pk=replay.pk)))
