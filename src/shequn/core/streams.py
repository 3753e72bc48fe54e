"""Event streams and their subscribers: the one delivery mechanism (with retries and a dead letter)
shared by the activity stream and the order events.

A *stream* (``"activity"``, ``"order_events"``) is defined by the app that owns the items, with a
loader that turns item references (primary keys) into the items a subscriber receives. Other apps
*subscribe* to it by name (from the wiring module; ``activity.registry.register_consumer`` and
``commerce.events.register_order_listener`` are thin adapters over :func:`subscribe`).

Delivery contract (:func:`deliver`):

* each subscriber runs in its own transaction (a savepoint when the caller already has one); one
  that raises is rolled back alone and recorded as a :class:`~shequn.core.models.DeliveryFailure`
  (stream, subscriber, tenant, the item references, the error), the others still run;
* the scheduled task ``core.tasks.retry_stream_deliveries`` re-runs *only* the failed subscriber for
  *only* those items when ``next_attempt_at`` is due; the delay doubles after each failed attempt
  (:data:`RETRY_BASE` × 2ⁿ⁻¹: 10 min, 20 min, … about 21 hours over :data:`MAX_ATTEMPTS` attempts);
* after :data:`MAX_ATTEMPTS` failed attempts the row is dead-lettered (``state = dead``): it is never
  retried again on its own, and staff see it, with the reason, in the console (retry now / mark
  resolved). A success (by retry, by a replay of the same batch, or by staff) resolves the row;
* subscribers must be idempotent: a replay after a crash, or a retry, may hand them items again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from .models import DeliveryFailure
from .permissions import Principal
from .services import do_audit

log = logging.getLogger(__name__)

#: failed attempts (the first delivery included) before a row is dead-lettered
MAX_ATTEMPTS = 8
#: delay before the first retry; it doubles after every further failure (10 min … ~10.7 h; ~21 h in all)
RETRY_BASE = dt.timedelta(minutes=10)
#: a retry run pushes a claimed row this far ahead, so a concurrent run does not take it too
CLAIM_LEASE = dt.timedelta(minutes=15)
MAX_NAME = 64

Loader = Callable[[int, Sequence[int]], Sequence[Any]]
Handler = Callable[[int, Sequence[Any]], None]

OPEN_STATES = (DeliveryFailure.State.PENDING, DeliveryFailure.State.DEAD)


@dataclass(frozen=True)
class Stream:
    name: str
    #: ``(tenant_id, refs) -> items`` in delivery order; items no longer present are left out
    load: Loader
    #: an item's reference (what is stored on a failure row)
    ref: Callable[[Any], int]


@dataclass(frozen=True)
class Subscriber:
    stream: str
    name: str
    #: ``(tenant_id, items) -> None``; raise to fail the whole batch (it is retried as a unit)
    handler: Handler
    #: which items this subscriber wants (None: all)
    accepts: Callable[[Any], bool] | None = None
    #: free-form details kept for the owning adapter (e.g. the activity kinds)
    info: Any = None


_STREAMS: dict[str, Stream] = {}
_SUBSCRIBERS: dict[str, dict[str, Subscriber]] = {}


def _pk(item: Any) -> int:
    return int(item.pk)


def define_stream(name: str, load: Loader, *, ref: Callable[[Any], int] = _pk) -> None:
    """Declare a stream (by the app that owns its items). Re-defining a name replaces it."""
    if not name or len(name) > 32:
        raise ValueError("stream name must be 1-32 characters")
    _STREAMS[name] = Stream(name, load, ref)


def subscribe(stream: str, name: str, handler: Handler, *, accepts: Callable[[Any], bool] | None = None,
              info: Any = None) -> None:
    """Subscribe ``handler`` to ``stream`` under ``name``. Re-subscribing a name replaces it."""
    if not name or len(name) > MAX_NAME:
        raise ValueError(f"subscriber name must be 1-{MAX_NAME} characters")
    _SUBSCRIBERS.setdefault(stream, {})[name] = Subscriber(stream, name, handler, accepts, info)


def unsubscribe(stream: str, name: str) -> None:
    _SUBSCRIBERS.get(stream, {}).pop(name, None)


def subscribers(stream: str) -> list[Subscriber]:
    return list(_SUBSCRIBERS.get(stream, {}).values())


def streams() -> dict[str, Stream]:
    return dict(_STREAMS)


def _stream(name: str) -> Stream:
    try:
        return _STREAMS[name]
    except KeyError:
        raise LookupError(f"stream {name!r} is not defined") from None


def _run(sub: Subscriber, tenant_id: int, batch: Sequence[Any]) -> str | None:
    """Call one subscriber in its own transaction; the error text, or None on success."""
    try:
        with transaction.atomic():
            sub.handler(tenant_id, batch)
    except Exception as exc:
        log.exception("%s subscriber %s failed on %d items", sub.stream, sub.name, len(batch))
        return f"{type(exc).__name__}: {exc}"[:4000]
    return None


def _backoff(attempts: int) -> dt.timedelta:
    factor: int = 2 ** max(0, attempts - 1)
    return RETRY_BASE * factor


def _record_failure(row: DeliveryFailure | None, *, stream: str, subscriber: str, tenant_id: int,
                    refs: list[int], error: str, dead_stays_dead: bool = True,
                    now: dt.datetime | None = None) -> DeliveryFailure:
    """Count a failed attempt on ``row`` (or a new row): schedule the next retry or dead-letter it."""
    now = now or timezone.now()
    if row is None:
        row = DeliveryFailure(tenant_id=tenant_id, stream=stream, subscriber=subscriber, refs=refs, attempts=0)
    row.attempts += 1
    row.error = error
    if (row.state == DeliveryFailure.State.DEAD and dead_stays_dead) or row.attempts >= MAX_ATTEMPTS:
        row.state = DeliveryFailure.State.DEAD
        row.next_attempt_at = None
        log.error("%s subscriber %s dead-lettered after %d attempts (failure #%s): %s",
                  stream, subscriber, row.attempts, row.pk or "new", error)
    else:
        row.state = DeliveryFailure.State.PENDING
        row.next_attempt_at = now + _backoff(row.attempts)
    row.resolved_at = None
    row.resolved_by = ""
    row.save()
    return row


def _resolve(row: DeliveryFailure, by: str) -> None:
    row.state = DeliveryFailure.State.RESOLVED
    row.next_attempt_at = None
    row.resolved_at = timezone.now()
    row.resolved_by = by[:120]
    row.save(update_fields=["state", "next_attempt_at", "resolved_at", "resolved_by", "updated_at"])


def deliver(stream: str, tenant_id: int, refs: Sequence[int], *, only: str | None = None,
            items: Sequence[Any] | None = None) -> dict[str, str]:
    """Hand the items ``refs`` of ``stream`` to every subscriber (or only to ``only``), each in its
    own transaction. Returns ``{subscriber: "ok" | error type}``; subscribers that want none of the
    items are not called and not listed.

    A failure is recorded for retry; replaying the same batch updates the open failure rows of that
    batch instead of adding new ones (and resolves them when it now succeeds). ``items``: the loaded
    items, when the caller already has them."""
    definition = _stream(stream)
    subs = [s for s in subscribers(stream) if only is None or s.name == only]
    if not subs:
        return {}
    loaded = list(items) if items is not None else list(definition.load(tenant_id, refs))
    if not loaded:
        return {}
    key = [int(r) for r in refs]
    open_rows = {row.subscriber: row for row in DeliveryFailure.objects.filter(
        tenant_id=tenant_id, stream=stream, state__in=OPEN_STATES, refs=key).order_by("pk")}
    outcome: dict[str, str] = {}
    for sub in subs:
        batch = loaded if sub.accepts is None else [i for i in loaded if sub.accepts(i)]
        if not batch:
            continue
        error = _run(sub, tenant_id, batch)
        row = open_rows.get(sub.name)
        if error is None:
            outcome[sub.name] = "ok"
            if row is not None:
                _resolve(row, "replay")
        else:
            outcome[sub.name] = error.split(":", 1)[0]
            _record_failure(row, stream=stream, subscriber=sub.name, tenant_id=tenant_id, refs=key, error=error,
                            dead_stays_dead=False)
    return outcome


def retry(failure: DeliveryFailure, *, by: str = "retry", now: dt.datetime | None = None) -> bool:
    """Re-run the failed subscriber of ``failure`` for its items. True when it now succeeded (the row
    is resolved); False when it failed again (counted; dead-lettered after ``MAX_ATTEMPTS``; a dead
    row retried by staff stays dead)."""
    if failure.state == DeliveryFailure.State.RESOLVED:
        return True
    definition = _STREAMS.get(failure.stream)
    sub = _SUBSCRIBERS.get(failure.stream, {}).get(failure.subscriber)
    error: str | None
    if definition is None or sub is None:
        error = f"LookupError: subscriber {failure.stream}/{failure.subscriber} is not registered"
    else:
        items = list(definition.load(failure.tenant_id, failure.refs))
        batch = items if sub.accepts is None else [i for i in items if sub.accepts(i)]
        if not batch:
            _resolve(failure, f"{by}: nothing left to deliver")
            return True
        error = _run(sub, failure.tenant_id, batch)
    if error is None:
        _resolve(failure, by)
        return True
    _record_failure(failure, stream=failure.stream, subscriber=failure.subscriber, tenant_id=failure.tenant_id,
                    refs=list(failure.refs), error=error, now=now)
    return False


def retry_due(*, limit: int = 100, now: dt.datetime | None = None, stream: str | None = None) -> int:
    """Retry the pending failures (of every stream, or of ``stream``) whose ``next_attempt_at`` has come
    (oldest first); returns how many now succeeded. Each row is claimed first (its ``next_attempt_at``
    pushed ahead by a conditional update), so two concurrent runs never retry the same row twice."""
    now = now or timezone.now()
    rows = DeliveryFailure.objects.filter(state=DeliveryFailure.State.PENDING, next_attempt_at__lte=now)
    if stream is not None:
        rows = rows.filter(stream=stream)
    due = list(rows.order_by("next_attempt_at", "pk").values_list("pk", "next_attempt_at")[:limit])
    fixed = 0
    for pk, when in due:
        claimed = DeliveryFailure.objects.filter(pk=pk, state=DeliveryFailure.State.PENDING,
                                                 next_attempt_at=when).update(next_attempt_at=now + CLAIM_LEASE)
        if not claimed:
            continue
        row = DeliveryFailure.objects.get(pk=pk)
        if retry(row, now=now):
            fixed += 1
    return fixed


# -- staff actions (console) -----------------------------------------------------------------------


def do_retry_failure(principal: Principal, failure: DeliveryFailure) -> bool:
    """Staff "retry now" (pending or dead rows). Audited."""
    if failure.tenant_id != principal.tenant_id:
        raise LookupError("failure of another tenant")
    ok = retry(failure, by=f"staff: {principal.label}")
    do_audit(principal, "delivery.retry", "DeliveryFailure", failure.pk,
             data={"stream": failure.stream, "subscriber": failure.subscriber, "ok": ok})
    return ok


def do_resolve_failure(principal: Principal, failure: DeliveryFailure, *, reason: str = "") -> None:
    """Staff "mark resolved": the failure is handled by hand and will not be retried. Audited."""
    if failure.tenant_id != principal.tenant_id:
        raise LookupError("failure of another tenant")
    if failure.state == DeliveryFailure.State.RESOLVED:
        return
    with transaction.atomic():
        _resolve(failure, f"staff: {principal.label}")
        do_audit(principal, "delivery.resolve", "DeliveryFailure", failure.pk, reason=reason,
                 data={"stream": failure.stream, "subscriber": failure.subscriber, "error": failure.error[:500]})


def open_failure_counts(tenant_id: int) -> dict[str, int]:
    """``{"pending": n, "dead": n}`` for the console home."""
    counts = {DeliveryFailure.State.PENDING.value: 0, DeliveryFailure.State.DEAD.value: 0}
    rows = (DeliveryFailure.objects.filter(tenant_id=tenant_id, state__in=OPEN_STATES)
            .values("state").annotate(n=Count("pk")).order_by())
    for row in rows:
        counts[row["state"]] = row["n"]
    return counts
