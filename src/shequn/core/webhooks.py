"""Outgoing webhooks: the tenant's business events POSTed, signed, to the URLs of other systems.

Model (``core.models``): a :class:`WebhookEndpoint` (URL, subscribed event types, a signing secret
encrypted at rest like connector secrets) receives :class:`WebhookEvent` rows (one per business
fact, idempotent on a source key) through :class:`WebhookDelivery` rows — the delivery log.

Sources. Events are *emitted* (:func:`emit`) inside the transaction of the fact they announce, so an
event exists if and only if its fact committed, and the delivery task is enqueued in that same
transaction:

* ``order.paid`` / ``order.refunded`` — commerce's order events, through an order listener on the
  shared delivery mechanism (:mod:`shequn.core.streams`; a failing listener is retried with backoff
  and dead-lettered like any other subscriber);
* ``member.joined`` / ``member.left`` — an activity consumer on the same mechanism (:func:`on_activity`);
* ``commission.available``, ``withdrawal.paid`` (referrals), ``violation.created`` (moderation),
  ``health.alert`` (engagement) — emitted by the engine's service where the fact is written.

Delivery. ``core.tasks.send_due_webhooks`` (every minute) and :func:`deliver_webhooks` (enqueued
when :func:`emit`'s transaction commits) claim due
pending deliveries with a conditional update (a lease, so two workers never send the same row at
once), POSTs each **outside any transaction** (a slow receiver must not hold a database lock) with a
:data:`TIMEOUT` and no redirects, and records the outcome. 2xx is success; anything else (status,
timeout, refused connection) is a failed attempt, retried after :data:`RETRY_BASE` × 2ⁿ⁻¹ (1 min,
2 min, … about 8.5 hours over :data:`MAX_ATTEMPTS` attempts). A delivery that exhausts its attempts
is given up (``failed``); if the endpoint has had no success since that delivery was created, the
endpoint is **disabled** (``disabled_reason``) and the console shows a notice until staff fix the
receiver and enable it again. Staff (console or API) can *replay* any delivery: a new delivery row
of the same event, sent at once, which keeps the log honest.

Signature (documented for receivers in ``docs/subsystems/webhooks.md``)::

    Shequn-Signature: t=1733280000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

``v1`` is the lowercase hex HMAC-SHA256, keyed with the endpoint's secret, of
``f"{t}.{raw_body}"``; ``t`` is the Unix time of the attempt. A receiver recomputes it over the raw
bytes, compares in constant time and refuses timestamps older than a few minutes (replay
protection); :func:`verify_signature` does exactly that. The body is the same for every attempt and
replay of an event (``id`` is stable, so receivers de-duplicate on it)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import F
from django.tasks import task
from django.utils import timezone
from django.utils.translation import gettext as _

from . import fieldcrypt, netguard
from .errors import Conflict, Forbidden, Invalid
from .models import Tenant, WebhookDelivery, WebhookEndpoint, WebhookEvent, WebhookEventType
from .permissions import Principal
from .services import do_audit

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Shequn-Signature"
#: failed attempts (the first included) before a delivery is given up
MAX_ATTEMPTS = 10
#: delay before the first retry; doubles after each further failure (1 min … 256 min; ~8.5 h in all)
RETRY_BASE = dt.timedelta(minutes=1)
#: a claimed delivery is pushed this far ahead, so a concurrent run does not send it too
CLAIM_LEASE = dt.timedelta(minutes=5)
#: seconds to wait for a receiver
TIMEOUT = 10.0
#: the default tolerance of :func:`verify_signature`
TOLERANCE_S = 300
MAX_ENDPOINTS = 20
EVENT_TYPES = [t.value for t in WebhookEventType]


# -- signing ---------------------------------------------------------------------------------------


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Shequn-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: str, header: str, body: bytes, *, tolerance: int = TOLERANCE_S,
                     now: float | None = None) -> bool:
    """What a receiver does: parse ``t=…,v1=…`` (several ``v1`` are allowed, e.g. during a secret
    rotation), refuse a timestamp outside ``tolerance`` seconds, compare in constant time."""
    parts: dict[str, list[str]] = {}
    for item in (header or "").split(","):
        key, _sep, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        ts = int(parts.get("t", [""])[0])
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    expected = sign(secret, body, ts).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, v) for v in parts.get("v1", []))


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def endpoint_secret(endpoint: WebhookEndpoint) -> str:
    return fieldcrypt.decrypt(endpoint.secret_encrypted).get("secret", "")


# -- endpoints (staff and API) ---------------------------------------------------------------------


def _require(principal: Principal, permission: str) -> None:
    if not principal.can(permission):
        raise Forbidden(_("没有权限: %(p)s") % {"p": permission})


def check_url(url: str) -> str:
    url = (url or "").strip()
    max_len = WebhookEndpoint._meta.get_field("url").max_length or 500
    if not url:
        raise Invalid(_("请填写接收地址"), details={"field": "url"})
    if len(url) > max_len:
        raise Invalid(_("接收地址最长 %(n)d 个字符") % {"n": max_len}, details={"field": "url"})
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(_("接收地址必须是 http:// 或 https:// 开头的完整网址"), details={"field": "url"})
    if parts.username or parts.password:
        raise Invalid(_("接收地址不能包含用户名或密码"), details={"field": "url"})
    try:
        port = parts.port
        netguard.check_host(parts.hostname, port, unresolvable_ok=True)
    except ValueError:
        raise Invalid(_("接收地址的端口无效"), details={"field": "url"}) from None
    except netguard.BlockedAddress:
        raise Invalid(_("接收地址不能指向内网、本机或云服务器元数据地址"), code="url_not_public",
                      details={"field": "url"}) from None
    return url


def check_event_types(event_types: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(str(t) for t in event_types))
    if not chosen:
        raise Invalid(_("请至少选择一种事件"), details={"field": "event_types"})
    unknown = [t for t in chosen if t not in EVENT_TYPES]
    if unknown:
        raise Invalid(_("未知的事件类型: %(t)s") % {"t": ", ".join(unknown)},
                      details={"field": "event_types", "allowed": EVENT_TYPES})
    return [t for t in EVENT_TYPES if t in chosen]


def check_description(description: str) -> str:
    description = (description or "").strip()
    max_len = WebhookEndpoint._meta.get_field("description").max_length or 120
    if len(description) > max_len:
        raise Invalid(_("说明最长 %(n)d 个字符") % {"n": max_len}, details={"field": "description"})
    return description


@transaction.atomic
def do_create_endpoint(principal: Principal, *, url: str, event_types: Iterable[str], description: str = "",
                       is_active: bool = True) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint; returns it and its signing secret (shown to the caller once, stored
    encrypted). Needs ``settings.write``."""
    _require(principal, "settings.write")
    url = check_url(url)
    types = check_event_types(event_types)
    description = check_description(description)
    if WebhookEndpoint.objects.filter(tenant_id=principal.tenant_id).count() >= MAX_ENDPOINTS:
        raise Conflict(_("每个组织最多 %(n)d 个 Webhook 端点") % {"n": MAX_ENDPOINTS}, code="too_many")
    secret = new_secret()
    endpoint = WebhookEndpoint.objects.create(
        tenant_id=principal.tenant_id, url=url, event_types=types, description=description, is_active=is_active,
        secret_encrypted=fieldcrypt.encrypt({"secret": secret}), secret_hint=fieldcrypt.hint(secret))
    do_audit(principal, "webhooks.endpoint.create", "WebhookEndpoint", endpoint.pk,
             data={"url": url, "event_types": types})
    return endpoint, secret


@transaction.atomic
def do_update_endpoint(principal: Principal, endpoint: WebhookEndpoint, *, url: str | None = None,
                       event_types: Iterable[str] | None = None, description: str | None = None,
                       is_active: bool | None = None) -> WebhookEndpoint:
    """Change an endpoint. Enabling a disabled endpoint clears its failure count and reason; its
    pending deliveries are sent again."""
    _require(principal, "settings.write")
    if endpoint.tenant_id != principal.tenant_id:
        raise LookupError("endpoint of another tenant")
    changed: dict[str, Any] = {}
    if url is not None:
        endpoint.url = changed["url"] = check_url(url)
    if event_types is not None:
        endpoint.event_types = changed["event_types"] = check_event_types(event_types)
    if description is not None:
        endpoint.description = changed["description"] = check_description(description)
    if is_active is not None and is_active != endpoint.is_active:
        endpoint.is_active = changed["is_active"] = is_active
        if is_active:
            endpoint.consecutive_failures = 0
            endpoint.disabled_at = None
            endpoint.disabled_reason = ""
            WebhookDelivery.objects.filter(endpoint=endpoint, state=WebhookDelivery.State.PENDING).update(
                next_attempt_at=timezone.now())
            transaction.on_commit(_nudge)
        else:
            endpoint.disabled_at = timezone.now()
            endpoint.disabled_reason = _("员工手动停用")
    endpoint.save()
    do_audit(principal, "webhooks.endpoint.update", "WebhookEndpoint", endpoint.pk, data=changed)
    return endpoint


@transaction.atomic
def do_rotate_secret(principal: Principal, endpoint: WebhookEndpoint) -> str:
    """A new signing secret (the old one stops working at once); returned once."""
    _require(principal, "settings.write")
    if endpoint.tenant_id != principal.tenant_id:
        raise LookupError("endpoint of another tenant")
    secret = new_secret()
    endpoint.secret_encrypted = fieldcrypt.encrypt({"secret": secret})
    endpoint.secret_hint = fieldcrypt.hint(secret)
    endpoint.save(update_fields=["secret_encrypted", "secret_hint", "updated_at"])
    do_audit(principal, "webhooks.endpoint.rotate_secret", "WebhookEndpoint", endpoint.pk)
    return secret


@transaction.atomic
def do_delete_endpoint(principal: Principal, endpoint: WebhookEndpoint) -> None:
    _require(principal, "settings.write")
    if endpoint.tenant_id != principal.tenant_id:
        raise LookupError("endpoint of another tenant")
    do_audit(principal, "webhooks.endpoint.delete", "WebhookEndpoint", endpoint.pk, data={"url": endpoint.url})
    endpoint.delete()


@transaction.atomic
def do_replay(principal: Principal, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send ``delivery``'s event to its endpoint again, as a new delivery (sent at once)."""
    _require(principal, "settings.write")
    if delivery.tenant_id != principal.tenant_id:
        raise LookupError("delivery of another tenant")
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=delivery.endpoint_id)
    if not endpoint.is_active:
        raise Conflict(_("端点已停用, 请先启用再重放"), code="endpoint_disabled")
    replay = WebhookDelivery.objects.create(
        tenant_id=delivery.tenant_id, endpoint=endpoint, event_id=delivery.event_id,
        replay_of=delivery.replay_of or delivery, next_attempt_at=timezone.now())
    do_audit(principal, "webhooks.delivery.replay", "WebhookDelivery", delivery.pk, data={"replay_id": replay.pk})
    transaction.on_commit(_nudge)
    return replay


def disabled_endpoints(tenant_id: int) -> list[WebhookEndpoint]:
    """Endpoints the platform disabled (the console notice)."""
    return list(WebhookEndpoint.objects.filter(tenant_id=tenant_id, is_active=False)
                .exclude(disabled_reason="").order_by("pk"))


# -- emitting --------------------------------------------------------------------------------------


def emit(tenant_id: int, type_: str, key: str, data: dict[str, Any]) -> WebhookEvent | None:
    """Announce a fact to the tenant's endpoints subscribed to ``type_``. Call inside the fact's
    transaction: the event, its deliveries and the delivery task commit (or roll back) with it.
    Idempotent on ``key``; does nothing (and stores nothing) when no active endpoint wants it."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {type_!r}")
    active = WebhookEndpoint.objects.filter(tenant_id=tenant_id, is_active=True).only("pk", "event_types")
    endpoints = [e for e in active if type_ in (e.event_types or [])]
    if not endpoints:
        return None
    payload = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    with transaction.atomic():
        try:
            with transaction.atomic():
                event = WebhookEvent.objects.create(tenant_id=tenant_id, type=type_, key=key[:120], data=payload)
        except IntegrityError:
            return None  # announced before (a replayed source)
        now = timezone.now()
        WebhookDelivery.objects.bulk_create([
            WebhookDelivery(tenant_id=tenant_id, endpoint_id=e.pk, event=event, next_attempt_at=now)
            for e in endpoints])
        transaction.on_commit(_nudge)
    return event


def on_order_event(data: Any) -> None:
    """Commerce order listener (``OrderEventData``): ``paid`` and ``refunded`` become webhooks."""
    kinds = {"paid": WebhookEventType.ORDER_PAID, "refunded": WebhookEventType.ORDER_REFUNDED}
    type_ = kinds.get(str(data.kind))
    if type_ is None:
        return
    emit(int(data.tenant_id), type_, f"order_event:{data.event_id}", {
        "order_id": data.order_id, "member_id": data.member_id, "amount_fen": data.amount_fen,
        "lines": [{k: line.get(k) for k in ("product_id", "sku_id", "product_kind", "quantity", "amount_fen")}
                  for line in data.lines],
        "attribution": dict(data.attribution), "occurred_at": data.occurred_at,
    })


ACTIVITY_KINDS = {"join": WebhookEventType.MEMBER_JOINED, "leave": WebhookEventType.MEMBER_LEFT}


def subscribed_types(tenant_id: int) -> set[str]:
    """The event types some active endpoint of the tenant wants (one query)."""
    rows = WebhookEndpoint.objects.filter(tenant_id=tenant_id, is_active=True).values_list("event_types", flat=True)
    return {str(t) for types in rows for t in (types or [])}


def on_activity(tenant_id: int, events: Sequence[Any]) -> None:
    """Activity consumer (kinds ``join``/``leave``): each becomes ``member.joined``/``member.left``.
    A tenant without such a subscription costs one query per batch, not one per event."""
    if not subscribed_types(tenant_id) & {str(t) for t in ACTIVITY_KINDS.values()}:
        return
    for e in events:
        type_ = ACTIVITY_KINDS.get(str(e.kind))
        if type_ is None:
            continue
        emit(tenant_id, type_, f"activity:{e.pk}", {
            "member_id": e.member_id, "community_id": e.community_id, "group_id": e.group_id,
            "platform": e.platform, "occurred_at": e.occurred_at,
        })


# -- delivering ------------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is a failed delivery, never followed


#: every connection checks each address of the host first (``core.netguard``: no private, loopback,
#: link-local or metadata address unless ``SHEQUN_WEBHOOK_ALLOW_PRIVATE``), redirects are not followed
_OPENER = netguard.guarded_opener(_NoRedirect)


def event_body(event: WebhookEvent, tenant_slug: str) -> bytes:
    """The JSON body of ``event`` (identical for every attempt and replay)."""
    body = {"id": f"evt_{event.pk}", "type": event.type, "created": event.created_at, "tenant": tenant_slug,
            "data": event.data}
    return json.dumps(body, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":")).encode()


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str, str]:
    """POST; returns ``(status or None, response excerpt, error)``."""
    if urlsplit(url).scheme not in ("http", "https"):  # check_url refused others; never file: or ftp:
        return None, "", "unsupported URL scheme"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 (checked)
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as response:
            return int(response.status), response.read(500).decode("utf-8", "replace"), ""
    except urllib.error.HTTPError as exc:
        try:
            excerpt = exc.read(500).decode("utf-8", "replace")
        except Exception:  # a broken error body is still just a failed attempt
            excerpt = ""
        return int(exc.code), excerpt, f"HTTP {exc.code}"
    except Exception as exc:  # timeouts, refused connections, TLS, a refused address: a failed attempt
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, netguard.BlockedAddress):
            return None, "", f"blocked: {reason}"[:500]
        return None, "", f"{type(exc).__name__}: {reason}"[:500]


def _backoff(attempts: int) -> dt.timedelta:
    factor: int = 2 ** max(0, attempts - 1)
    return RETRY_BASE * factor


def send(delivery: WebhookDelivery, *, now: dt.datetime | None = None) -> bool:
    """One attempt of ``delivery`` (outside any transaction), then its outcome recorded. True on 2xx."""
    endpoint = delivery.endpoint
    event = delivery.event
    tenant_slug = Tenant.objects.filter(pk=delivery.tenant_id).values_list("slug", flat=True).first() or ""
    body = event_body(event, tenant_slug)
    started = time.monotonic()
    try:
        secret = endpoint_secret(endpoint)
    except ValueError:  # FIELD_KEY / SECRET_KEY changed: a failed attempt staff can see, not a crash
        status, excerpt, error = None, "", "signing secret cannot be decrypted (FIELD_KEY changed?)"
    else:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "shequn-webhooks/1",
            "Shequn-Event-Id": f"evt_{event.pk}",
            "Shequn-Event-Type": event.type,
            "Shequn-Delivery-Id": str(delivery.pk),
            SIGNATURE_HEADER: sign(secret, body, int(time.time())),
        }
        status, excerpt, error = _post(endpoint.url, body, headers)
    elapsed = int((time.monotonic() - started) * 1000)
    ok = status is not None and 200 <= status < 300
    _record(delivery, ok=ok, status=status, excerpt=excerpt, error=error, duration_ms=elapsed,
            now=now or timezone.now())
    return ok


@transaction.atomic
def _record(delivery: WebhookDelivery, *, ok: bool, status: int | None, excerpt: str, error: str,
            duration_ms: int, now: dt.datetime) -> None:
    """Book an attempt. Locking: the endpoint row (``select_for_update``), then the delivery row."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=delivery.endpoint_id)
    row = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
    if row.state != WebhookDelivery.State.PENDING:
        return
    row.attempts += 1
    row.last_status_code = status
    row.response_excerpt = excerpt[:500]
    row.duration_ms = duration_ms
    if ok:
        row.state = WebhookDelivery.State.SUCCEEDED
        row.delivered_at = now
        row.next_attempt_at = None
        row.last_error = ""
        endpoint.consecutive_failures = 0
        endpoint.last_success_at = now
        endpoint.save(update_fields=["consecutive_failures", "last_success_at", "updated_at"])
    else:
        row.last_error = error[:500]
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(consecutive_failures=F("consecutive_failures") + 1)
        if row.attempts >= MAX_ATTEMPTS:
            row.state = WebhookDelivery.State.FAILED
            row.next_attempt_at = None
            if endpoint.is_active and (endpoint.last_success_at is None or endpoint.last_success_at < row.created_at):
                _disable(endpoint, row, now)
        else:
            row.next_attempt_at = now + _backoff(row.attempts)
    row.save()


def _disable(endpoint: WebhookEndpoint, row: WebhookDelivery, now: dt.datetime) -> None:
    endpoint.is_active = False
    endpoint.disabled_at = now
    endpoint.disabled_reason = (_("投递 #%(d)s 重试 %(n)d 次仍失败 (%(e)s), 此后没有成功过; 修复接收端后请重新启用")
                                % {"d": row.pk, "n": row.attempts, "e": row.last_error[:80]})[:255]
    endpoint.save(update_fields=["is_active", "disabled_at", "disabled_reason", "updated_at"])
    do_audit(Principal.system(endpoint.tenant_id, label="webhooks"), "webhooks.endpoint.disabled",
             "WebhookEndpoint", endpoint.pk, reason=endpoint.disabled_reason)
    log.warning("webhook endpoint %s disabled after delivery %s failed %d times", endpoint.pk, row.pk, row.attempts)


def deliver_due(*, limit: int = 100, now: dt.datetime | None = None) -> int:
    """Send the pending deliveries that are due (to active endpoints), oldest first; returns how many
    succeeded. Each row is claimed first (``next_attempt_at`` pushed ahead by a conditional update)."""
    now = now or timezone.now()
    due = list(WebhookDelivery.objects.filter(
        state=WebhookDelivery.State.PENDING, next_attempt_at__lte=now, endpoint__is_active=True,
    ).order_by("next_attempt_at", "pk").values_list("pk", "next_attempt_at")[:limit])
    sent = 0
    for pk, when in due:
        claimed = WebhookDelivery.objects.filter(pk=pk, state=WebhookDelivery.State.PENDING,
                                                 next_attempt_at=when).update(next_attempt_at=now + CLAIM_LEASE)
        if not claimed:
            continue
        row = WebhookDelivery.objects.select_related("endpoint", "event").get(pk=pk)
        if not row.endpoint.is_active:
            continue
        sent += int(send(row, now=now))
    return sent


def _nudge() -> None:
    """Ask a worker to send now. After commit (an immediate task backend must not POST inside the
    business transaction); a lost nudge only delays: ``core.tasks.send_due_webhooks`` runs every minute."""
    deliver_webhooks.enqueue()


@task(queue_name="default")
def deliver_webhooks() -> int:
    """Send due webhook deliveries (enqueued by :func:`emit` and replays; also scheduled)."""
    return deliver_due(limit=200)
