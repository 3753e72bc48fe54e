"""The outbox worker: claim due actions, deliver them through the platform adapters, record the
outcome.

Guarantees and rules:

* **Claiming** runs in one short transaction: due rows (``pending`` with ``next_attempt_at <= now``,
  or ``sending`` whose lease expired because a worker died) are locked with
  ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent workers take disjoint rows
  (SQLite's IMMEDIATE transactions serialise workers anyway). A claimed row becomes ``sending`` with a
  fresh ``lease_token`` and a lease (``next_attempt_at = now + LEASE``); ``attempts`` goes up.
* **Rate limits** are token buckets (:class:`RateBucket`) per bot account and per group, defined in
  :mod:`shequn.connectors.capabilities`. They are locked in key order inside the claim transaction,
  so all workers share them. A row without a token is pushed to the moment one frees up (no attempt
  is counted). A platform 429 blocks the whole bucket until ``retry_after`` has passed.
* **Delivery** happens outside any transaction (platform calls never hold row locks).
* **Recording** is a conditional UPDATE on ``(pk, status='sending', lease_token)``: a worker whose
  lease expired and whose row was re-claimed cannot overwrite the newer outcome.
* Transient errors retry with exponential backoff and jitter; after ``MAX_ATTEMPTS`` the row goes
  to the dead-letter state (``dead``), visible in the console with a "retry" action. Permanent errors
  mark the row ``failed`` with the reason. ``delegate`` opens a human task.

**Crash recovery** (a worker killed between claiming and recording): the lease token names the
claiming process (``<host tag>:<pid>:<process nonce><round>``), so :func:`release_abandoned` — run
by the delivery loop when it starts and every half minute — ends at once the leases of a process of
this host that is gone; a worker on another host that died is recovered when its lease expires.
A re-claimed row whose outcome was never recorded is delivered again only when that cannot repeat
what a member sees: the platform de-duplicates it or it sets a state (``Profile.resend_safe``:
Matrix sends carry the transaction id ``shequn-<action id>``; a ban twice is one ban), or the
platform was never called for it — for the other kinds (a Telegram or WeCom message) the engine
commits ``attempt_started_at`` just before the call. A row whose call may have reached the platform
goes to the dead letter for a person to check ("may already be in the group") and retry or cancel:
never lost, never blindly sent twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import math
import os
import queue
import random
import secrets as pysecrets
import socket
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.activity.models import ActivityEvent
from shequn.communities.models import ChatGroup
from shequn.members.models import Identity

from .. import secrets
from ..adapters import SEND_GATE, ActionItem, ConnInfo, DeliveryError, adapter_platforms, get_adapter
from ..capabilities import Limit, profile
from ..models import Connection, OutboxAction, RateBucket, Room
from ..selectors import resolve_connection_id
from ..signals import send_action_settled
from .human_tasks import open_human_task

log = logging.getLogger(__name__)

LEASE = dt.timedelta(minutes=5)
#: PostgreSQL channel that wakes the real-time delivery thread (:mod:`shequn.connectors.realtime`)
CHANNEL = "shequn_outbox"
#: actions that act on a member or a message: a permanent refusal becomes a human task
ENFORCEMENT = frozenset({"delete", "mute", "unmute", "kick", "ban", "unban", "approve_join", "decline_join"})
BACKOFF_BASE = 10.0  # seconds
BACKOFF_CAP = 3600.0
#: this host in lease tokens (a container's hostname is its id) and this process's nonce: a pid
#: reused by the next incarnation of a container's worker still tells the two apart
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_NONCE = pysecrets.token_hex(3)


def max_attempts() -> int:
    return int(getattr(settings, "SHEQUN", {}).get("OUTBOX_MAX_ATTEMPTS", 8))


def backoff_seconds(attempts: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": half the exponential delay plus a random half."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    r = (rng or random).random()
    return float(delay / 2 + r * delay / 2)


@dataclass
class DeliveryStats:
    claimed: int = 0
    done: int = 0
    retried: int = 0
    rate_limited: int = 0
    deferred: int = 0
    failed: int = 0
    dead: int = 0
    delegated: int = 0
    stale: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}


# --- rate buckets ---------------------------------------------------------------------------------

def _bucket_keys(row: OutboxAction, limits: tuple[Limit, ...]) -> list[tuple[str, Limit]]:
    keys = []
    for lim in limits:
        if lim.kinds is not None and row.kind not in lim.kinds:
            continue
        if lim.scope == "connection" and row.connection_id is not None:
            keys.append((f"conn:{row.connection_id}:{lim.name}", lim))
        elif lim.scope == "group" and row.group_id is not None:
            keys.append((f"group:{row.group_id}:{lim.name}", lim))
    return keys


def _refill(bucket: RateBucket, lim: Limit, now: dt.datetime) -> None:
    elapsed = max(0.0, (now - bucket.updated_at).total_seconds())
    bucket.tokens = min(float(lim.burst), bucket.tokens + elapsed * lim.rate)
    bucket.updated_at = now


def _lock_buckets(wanted: dict[str, Limit], now: dt.datetime) -> dict[str, RateBucket]:
    if not wanted:
        return {}
    RateBucket.objects.bulk_create(
        [RateBucket(key=k, tokens=float(lim.burst), updated_at=now) for k, lim in wanted.items()],
        ignore_conflicts=True,
    )
    qs = RateBucket.objects.filter(key__in=list(wanted)).order_by("key")
    if db_connection.features.has_select_for_update:
        qs = qs.select_for_update()
    return {b.key: b for b in qs}


# --- crash recovery -------------------------------------------------------------------------------

def lease_token() -> str:
    """``<host tag>:<pid>:<process nonce><round>`` (≤ 32 characters), one per claim round."""
    return f"{HOST_TAG}:{os.getpid()}:{_NONCE}{pysecrets.token_hex(3)}"


def _claimer_gone(token: str) -> bool:
    parts = token.split(":")
    if len(parts) != 3 or parts[0] != HOST_TAG or not parts[1].isdigit():
        return False  # another host's (or an old-style) lease: it runs out
    pid = int(parts[1])
    if pid == os.getpid():
        return not parts[2].startswith(_NONCE)  # this pid's previous incarnation
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def release_abandoned(now: dt.datetime | None = None) -> int:
    """End the leases held by delivery processes of this host that are gone (kill -9, OOM, a crash):
    their ``sending`` rows fall due now instead of when the lease expires, and the next claim applies
    the recovery rule (module docstring). Returns how many rows were released."""
    now = now or timezone.now()
    tokens = set(OutboxAction.objects.filter(status=OutboxAction.Status.SENDING, next_attempt_at__gt=now,
                                             lease_token__startswith=f"{HOST_TAG}:")
                 .values_list("lease_token", flat=True))
    released = 0
    for token in tokens:
        if _claimer_gone(token):
            released += OutboxAction.objects.filter(status=OutboxAction.Status.SENDING, lease_token=token).update(
                next_attempt_at=now)
    if released:
        log.warning("outbox: %d actions of a delivery process that is gone released", released)
    return released


def resend_safe(platform: str, kind: str) -> bool:
    """May an action whose platform call may have happened be delivered again (``Profile.resend_safe``)?"""
    prof = profile(platform)
    return prof is not None and kind in prof.resend_safe


def interrupted_reason() -> str:
    """The dead letter's reason for an action whose platform call a crash interrupted."""
    return _("投递中断: 发送途中工作进程退出, 平台可能已经执行。请到群里核对, 未执行再重试, 已执行则取消。")


def _interrupted(rows: list[OutboxAction], now: dt.datetime, stats: DeliveryStats) -> None:
    """Dead-letter re-claimed rows whose platform call a crash interrupted (inside the claim)."""
    reason = interrupted_reason()
    for row in rows:
        n = OutboxAction.objects.filter(pk=row.pk, status=OutboxAction.Status.SENDING,
                                        lease_token=row.lease_token).update(
            status=OutboxAction.Status.DEAD, last_error=reason, lease_token="", next_attempt_at=None)
        if not n:
            continue
        stats.dead += 1
        send_action_settled(tenant_id=row.tenant_id, action_id=row.pk, kind=row.kind,
                            status=str(OutboxAction.Status.DEAD), source=row.source,
                            idempotency_key=row.idempotency_key, error=reason)


# --- claim ----------------------------------------------------------------------------------------

def claim(limit: int = 100, *, now: dt.datetime | None = None, platforms: list[str] | None = None,
          stats: DeliveryStats | None = None) -> list[ActionItem]:
    """Claim up to ``limit`` due actions for this worker (see the module docstring)."""
    now = now or timezone.now()
    stats = stats or DeliveryStats()
    platforms = platforms or adapter_platforms()
    with transaction.atomic():
        due = Q(status=OutboxAction.Status.PENDING) | Q(status=OutboxAction.Status.SENDING)
        qs = (OutboxAction.objects.filter(due, next_attempt_at__lte=now, platform__in=platforms)
              .order_by("next_attempt_at", "pk"))
        if db_connection.features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True, of=("self",))
        rows = list(qs[:limit])
        if not rows:
            return []
        for row in rows:
            if row.connection_id is None:
                row.connection_id = resolve_connection_id(row.tenant_id, row.platform, row.group_id)
        wanted: dict[str, Limit] = {}
        row_keys: dict[int, list[tuple[str, Limit]]] = {}
        for row in rows:
            prof = profile(row.platform)
            keys = _bucket_keys(row, prof.limits if prof else ())
            row_keys[row.pk] = keys
            wanted.update(dict(keys))
        buckets = _lock_buckets(wanted, now)
        for key, bucket in buckets.items():
            _refill(bucket, wanted[key], now)
        claimed: list[OutboxAction] = []
        token = lease_token()  # one lease token per claim round
        deferred: list[OutboxAction] = []
        interrupted: list[OutboxAction] = []
        for row in rows:
            if (row.status == OutboxAction.Status.SENDING and row.attempt_started_at is not None
                    and not resend_safe(row.platform, row.kind)):
                interrupted.append(row)  # its lease ran out after the platform call began
                continue
            wait = 0.0
            for key, lim in row_keys[row.pk]:
                b = buckets[key]
                if b.blocked_until and b.blocked_until > now:
                    wait = max(wait, (b.blocked_until - now).total_seconds())
                elif b.tokens < 1.0:
                    wait = max(wait, (1.0 - b.tokens) / lim.rate)
            if wait > 0:
                row.status = OutboxAction.Status.PENDING
                row.next_attempt_at = now + dt.timedelta(seconds=math.ceil(wait * 1000) / 1000)
                row.lease_token = ""
                deferred.append(row)
                continue
            for key, _lim in row_keys[row.pk]:
                buckets[key].tokens -= 1.0
            row.status = OutboxAction.Status.SENDING
            row.lease_token = token
            row.next_attempt_at = now + LEASE
            row.attempts += 1
            claimed.append(row)
        # few statements: one UPDATE per connection for the claimed rows, one per deferred row
        by_conn: dict[int | None, list[int]] = defaultdict(list)
        for row in claimed:
            by_conn[row.connection_id].append(row.pk)
        for conn_id, ids in by_conn.items():
            OutboxAction.objects.filter(pk__in=ids).update(
                status=OutboxAction.Status.SENDING, lease_token=token, next_attempt_at=now + LEASE,
                attempts=F("attempts") + 1, connection_id=conn_id, attempt_started_at=None)
        for row in deferred:
            OutboxAction.objects.filter(pk=row.pk).update(status=row.status, next_attempt_at=row.next_attempt_at,
                                                          lease_token="", connection_id=row.connection_id)
        stats.deferred += len(deferred)
        _interrupted(interrupted, now, stats)
        for b in buckets.values():
            RateBucket.objects.filter(pk=b.pk).update(tokens=b.tokens, updated_at=b.updated_at)
        stats.claimed += len(claimed)
        return _snapshots(claimed)


def _snapshots(rows: list[OutboxAction]) -> list[ActionItem]:
    group_ids = {r.group_id for r in rows if r.group_id is not None}
    rooms: dict[tuple[int | None, int], Room] = {}
    externals = dict(ChatGroup.objects.filter(pk__in=group_ids).values_list("pk", "external_id"))
    for found in Room.objects.filter(group_id__in=group_ids):
        rooms[(found.connection_id, found.group_id or 0)] = found
    # the send time of the message to delete (Telegram may delete only messages < 48 h old)
    msg_ids = {(r.tenant_id, r.platform, r.message_external_id) for r in rows if r.message_external_id}
    sent_at: dict[tuple[int, str, str], dt.datetime] = {}
    for tenant_id, platform, mid in msg_ids:
        ev = (ActivityEvent.objects.filter(tenant_id=tenant_id, platform=platform, platform_event_id=mid)
              .values_list("occurred_at", flat=True).first())
        if ev is not None:
            sent_at[(tenant_id, platform, mid)] = ev
    items = []
    for r in rows:
        room: Room | None = rooms.get((r.connection_id, r.group_id or 0))
        room_secrets = secrets.decrypt(room.secrets_encrypted) if room and room.secrets_encrypted else {}
        items.append(ActionItem(
            id=r.pk, tenant_id=r.tenant_id, kind=r.kind, platform=r.platform, connection_id=r.connection_id,
            group_id=r.group_id, room=externals.get(r.group_id, "") if r.group_id else "",
            target=r.target_external_id or _target_from_member(r), message=r.message_external_id,
            payload=dict(r.payload or {}), attempts=r.attempts, created_at=r.created_at,
            lease_token=r.lease_token, reason=r.reason,
            message_sent_at=sent_at.get((r.tenant_id, r.platform, r.message_external_id)),
            room_secrets=room_secrets,
        ))
    return items


def _target_from_member(row: OutboxAction) -> str:
    if row.target_member_id is None:
        return ""
    ext = (Identity.objects.filter(tenant_id=row.tenant_id, member_id=row.target_member_id, platform=row.platform)
           .values_list("external_id", flat=True).first())
    return str(ext or "")


# --- deliver --------------------------------------------------------------------------------------

def _conn_infos(ids: set[int]) -> dict[int, ConnInfo]:
    out = {}
    for c in Connection.objects.filter(pk__in=ids, is_active=True):
        out[c.pk] = ConnInfo(id=c.pk, tenant_id=c.tenant_id, platform=c.platform, config=dict(c.config or {}),
                             secrets=secrets.decrypt(c.secrets_encrypted))
    return out


Gate = Callable[[ActionItem], Awaitable[bool]]


async def _deliver_all(batches: list[tuple[ConnInfo, list[ActionItem]]],
                       gate: Gate | None = None) -> list[list[dict[str, Any] | DeliveryError]]:
    SEND_GATE.set(gate)  # the adapters' tasks below inherit it

    async def one(conn: ConnInfo, items: list[ActionItem]) -> list[dict[str, Any] | DeliveryError]:
        adapter = get_adapter(conn.platform)
        if adapter is None:
            return [DeliveryError(DeliveryError.RETRY, "no adapter")] * len(items)
        try:
            return await adapter.deliver_batch(conn, items)
        except Exception as exc:  # an adapter bug must not lose the outcome of the whole batch
            log.exception("adapter %s failed on a batch of %d", conn.platform, len(items))
            return [DeliveryError(DeliveryError.RETRY, f"{type(exc).__name__}")] * len(items)

    return list(await asyncio.gather(*(one(c, its) for c, its in batches)))


def deliver_due(limit: int = 100, *, now: dt.datetime | None = None,
                platforms: list[str] | None = None) -> DeliveryStats:
    """One delivery round: claim, deliver, record. Returns counters."""
    stats = DeliveryStats()
    items = claim(limit, now=now, platforms=platforms, stats=stats)
    if not items:
        return stats
    conns = _conn_infos({i.connection_id for i in items if i.connection_id is not None})
    batches: dict[int, list[ActionItem]] = defaultdict(list)
    for item in items:
        if item.connection_id is None or item.connection_id not in conns:
            record(item, DeliveryError(DeliveryError.RETRY, "没有可用的平台连接 (no active connection)"),
                   stats=stats)
            continue
        pre = _precheck(item)
        if pre is not None:
            record(item, pre, stats=stats)
            continue
        batches[item.connection_id].append(item)
    if batches:
        pairs = [(conns[cid], its) for cid, its in batches.items()]
        results = _run_round(pairs)
        with transaction.atomic():  # one commit for the round; each record is its own savepoint
            for (_conn, its), outcomes in zip(pairs, results, strict=True):
                for item, outcome in zip(its, outcomes, strict=True):
                    record(item, outcome, stats=stats)
    return stats


def _run_round(pairs: list[tuple[ConnInfo, list[ActionItem]]]) -> list[list[dict[str, Any] | DeliveryError]]:
    """Run the adapters on the round's batches. When some action cannot be safely re-sent after a crash
    (:func:`resend_safe`), the event loop runs in a helper thread and this thread — the one holding
    the database connection — commits each such action's ``attempt_started_at`` before the adapter
    may call the platform for it (the adapters ask :func:`~shequn.connectors.adapters.may_send`)."""
    guarded = {item.id for _conn, its in pairs for item in its if not resend_safe(item.platform, item.kind)}
    if not guarded:
        return asyncio.run(_deliver_all(pairs))
    requests: queue.SimpleQueue[tuple[ActionItem, asyncio.AbstractEventLoop, asyncio.Future[bool]] | None] = (
        queue.SimpleQueue())
    box: dict[str, Any] = {}

    async def gate(item: ActionItem) -> bool:
        if item.id not in guarded:
            return True
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()
        requests.put((item, loop, answer))
        return await answer

    def run() -> None:
        try:
            box["out"] = asyncio.run(_deliver_all(pairs, gate))
        except BaseException as exc:  # re-raised in the caller's thread
            box["exc"] = exc
        finally:
            requests.put(None)

    runner = threading.Thread(target=run, name="shequn-outbox-send", daemon=True)
    runner.start()
    while (req := requests.get()) is not None:
        item, loop, answer = req
        try:
            ok = _mark_started(item)
        except Exception:  # the database is gone: do not call the platform without the mark
            log.warning("outbox: marking action %s started failed", item.id, exc_info=True)
            ok = False
        loop.call_soon_threadsafe(_resolve, answer, ok)
    runner.join()
    if "exc" in box:
        raise box["exc"]
    return cast(list[list[dict[str, Any] | DeliveryError]], box["out"])


def _resolve(answer: asyncio.Future[bool], ok: bool) -> None:
    if not answer.done():
        answer.set_result(ok)


def _mark_started(item: ActionItem) -> bool:
    """Commit that the platform call of ``item`` begins (False: the lease is no longer this round's)."""
    return bool(OutboxAction.objects.filter(pk=item.id, status=OutboxAction.Status.SENDING,
                                            lease_token=item.lease_token).update(attempt_started_at=timezone.now()))


def _precheck(item: ActionItem) -> DeliveryError | None:
    prof = profile(item.platform)
    if (item.kind == "delete" and prof is not None and prof.delete_max_age is not None
            and item.message_sent_at is not None and timezone.now() - item.message_sent_at >= prof.delete_max_age):
        hours = int(prof.delete_max_age.total_seconds() // 3600)
        return DeliveryError(DeliveryError.DELEGATE, f"消息超过 {hours} 小时, 机器人无法删除, 请管理员手动删除")
    return None


# --- record ---------------------------------------------------------------------------------------

def record(item: ActionItem, outcome: dict[str, Any] | DeliveryError, *, stats: DeliveryStats | None = None,
           now: dt.datetime | None = None) -> str:
    """Store the outcome of one delivery attempt; returns the new status (or "stale")."""
    stats = stats or DeliveryStats()
    now = now or timezone.now()
    Status = OutboxAction.Status
    mine = OutboxAction.objects.filter(pk=item.id, status=Status.SENDING, lease_token=item.lease_token)
    with transaction.atomic():
        if isinstance(outcome, dict):
            n = mine.update(status=Status.DONE, done_at=now, result=outcome, last_error="", lease_token="",
                            next_attempt_at=None)
            status, counter = Status.DONE, "done"
        elif outcome.kind == DeliveryError.RATE_LIMITED:
            wait = float(outcome.retry_after or 5.0)
            until = now + dt.timedelta(seconds=wait)
            n = mine.update(status=Status.PENDING, next_attempt_at=until, lease_token="",
                            attempts=max(0, item.attempts - 1),  # a 429 is the platform's pace, not a failure
                            last_error=f"429 retry_after={wait:g}s: {outcome.message}"[:2000])
            _block_bucket(item, outcome.scope, until)
            status, counter = Status.PENDING, "rate_limited"
        elif outcome.kind == DeliveryError.PERMANENT and item.kind in ENFORCEMENT:
            # the platform refused (the bot lacks the right: M_FORBIDDEN, "not enough rights"):
            # retrying cannot help, a person can — never count it as done, never drop it
            message = _("机器人无法执行 (%(error)s)。请手动处理, 或提升机器人在群里的权限。") % {
                "error": outcome.message[:300]}
            n = mine.update(status=Status.DELEGATED, last_error=outcome.message[:2000], lease_token="",
                            next_attempt_at=None)
            if n:
                open_human_task(item.tenant_id, item.id, message)
            status, counter = Status.DELEGATED, "delegated"
        elif outcome.kind == DeliveryError.PERMANENT:
            n = mine.update(status=Status.FAILED, last_error=outcome.message[:2000], lease_token="",
                            next_attempt_at=None, done_at=now)
            status, counter = Status.FAILED, "failed"
        elif outcome.kind == DeliveryError.DELEGATE:
            n = mine.update(status=Status.DELEGATED, last_error=outcome.message[:2000], lease_token="",
                            next_attempt_at=None)
            if n:
                open_human_task(item.tenant_id, item.id, outcome.message)
            status, counter = Status.DELEGATED, "delegated"
        elif item.attempts >= max_attempts():
            n = mine.update(status=Status.DEAD, last_error=outcome.message[:2000], lease_token="",
                            next_attempt_at=None)
            status, counter = Status.DEAD, "dead"
        else:
            delay = backoff_seconds(item.attempts)
            n = mine.update(status=Status.PENDING, last_error=outcome.message[:2000], lease_token="",
                            next_attempt_at=now + dt.timedelta(seconds=delay))
            status, counter = Status.PENDING, "retried"
        if not n:
            stats.stale += 1
            return "stale"
        if status == Status.DONE and item.kind == "mute":
            _schedule_unmute(item, now)
        if status in (Status.FAILED, Status.DEAD, Status.DELEGATED):
            _settled(item, str(status), "" if isinstance(outcome, dict) else outcome.message)
        refused = isinstance(outcome, DeliveryError) and outcome.kind == DeliveryError.PERMANENT
        if item.connection_id is not None and (counter in ("retried", "dead", "failed") or refused):
            Connection.objects.filter(pk=item.connection_id).update(
                error_count=F("error_count") + 1, last_error=_clip(outcome), last_error_at=now)
    setattr(stats, counter, getattr(stats, counter) + 1)
    return str(status)


def unmute_key(mute_action_id: int) -> str:
    """The idempotency key of the unmute that ends mute action ``mute_action_id``."""
    return f"unmute-after:{mute_action_id}"


def _schedule_unmute(item: ActionItem, now: dt.datetime) -> None:
    """A timed mute on a platform whose mutes do not expire (Matrix): queue the unmute now, due at
    the mute's end. The outbox is the scheduler: the real-time thread delivers it when it falls due."""
    prof = profile(item.platform)
    seconds = float(item.payload.get("seconds") or 0)
    if prof is None or prof.timed_mute or seconds <= 0 or not item.target:
        return
    row = OutboxAction.objects.get(pk=item.id)
    OutboxAction.objects.get_or_create(
        tenant_id=item.tenant_id, idempotency_key=unmute_key(item.id),
        defaults={"kind": "unmute", "platform": item.platform, "group_id": item.group_id,
                  "connection_id": item.connection_id, "target_member_id": row.target_member_id,
                  "target_external_id": item.target, "payload": {"ends_mute": item.id}, "source": row.source,
                  "reason": _("禁言到期"), "status": OutboxAction.Status.PENDING,
                  "next_attempt_at": now + dt.timedelta(seconds=seconds)})


def _settled(item: ActionItem, status: str, error: str) -> None:
    source, key = OutboxAction.objects.filter(pk=item.id).values_list("source", "idempotency_key").first() or ("", "")
    send_action_settled(tenant_id=item.tenant_id, action_id=item.id, kind=item.kind, status=status,
                        source=str(source), idempotency_key=str(key), error=error[:500])


def _clip(outcome: Any) -> str:
    return str(getattr(outcome, "message", ""))[:500]


def _block_bucket(item: ActionItem, scope: str, until: dt.datetime) -> None:
    if scope == "connection" and item.connection_id is not None:
        prefix = f"conn:{item.connection_id}:"
    elif item.group_id is not None:
        prefix = f"group:{item.group_id}:"
    else:
        return
    RateBucket.objects.filter(key__startswith=prefix).update(blocked_until=until)
    # also the rows waiting in the same scope: nothing to do, the claim honours blocked_until


def notify_outbox() -> None:
    """Wake the delivery threads (PostgreSQL ``NOTIFY``; a no-op elsewhere, where they poll)."""
    conn = db_connection
    if conn.vendor != "postgresql":
        return
    try:
        with conn.cursor() as cur:
            cur.execute(f"NOTIFY {CHANNEL}")
    except Exception:  # waking is an optimisation: the poll and the cron sweep still deliver
        log.warning("NOTIFY %s failed", CHANNEL, exc_info=True)
