"""Writers for the activity stream: the one idempotent bulk ingest every connector goes through."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import NOT_PROVIDED
from django.tasks import task
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from shequn.communities.models import ChatGroup
from shequn.communities.services import (
    MembershipChange,
    PlatformJoinRequest,
    do_record_membership_changes,
    do_record_platform_join_requests,
)
from shequn.core import streams
from shequn.core.models import Platform
from shequn.core.permissions import Principal
from shequn.members.models import Identity, Member
from shequn.members.services import export_rows

from .models import ActivityEvent, EventKey, EventKind
from .registry import STREAM, consumers

log = logging.getLogger(__name__)

MAX_BATCH = 5000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_KINDS = frozenset(EventKind.values)
_PLATFORMS = frozenset(Platform.values)


@dataclass
class IngestError:
    index: int
    field: str
    message: str


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    errors: list[IngestError] = field(default_factory=list)
    event_ids: list[int] = field(default_factory=list)
    created_members: int = 0


@dataclass(slots=True)
class _Clean:
    index: int
    platform: str
    event_id: str
    kind: str
    occurred_at: dt.datetime
    sender: str | None
    sender_name: str
    group: str | None
    member_id: int | None
    payload: dict[str, Any]


def _clean(index: int, raw: Mapping[str, Any], errors: list[IngestError]) -> _Clean | None:
    """Validate one raw event; append errors naming the field and return None when it is bad."""
    if not isinstance(raw, Mapping):
        errors.append(IngestError(index, "", _("事件必须是对象")))
        return None
    platform = raw.get("platform")
    if platform not in _PLATFORMS:
        errors.append(IngestError(index, "platform", _("未知的平台: %(v)s") % {"v": platform}))
        return None
    event_id = raw.get("event_id")
    if not isinstance(event_id, str | int) or not str(event_id).strip() or len(str(event_id)) > 191:
        errors.append(IngestError(index, "event_id", _("缺少平台事件 ID 或长度超过 191")))
        return None
    kind = raw.get("kind")
    if kind not in _KINDS:
        kind = EventKind.OTHER if isinstance(kind, str) and kind else None
        if kind is None:
            errors.append(IngestError(index, "kind", _("缺少事件类型")))
            return None
    occurred = raw.get("occurred_at")
    if isinstance(occurred, str):
        occurred = parse_datetime(occurred)
    elif isinstance(occurred, int | float):
        occurred = dt.datetime.fromtimestamp(occurred, tz=dt.UTC)
    if not isinstance(occurred, dt.datetime):
        errors.append(IngestError(index, "occurred_at", _("发生时间无效, 需要 ISO 8601 或 Unix 时间戳")))
        return None
    if timezone.is_naive(occurred):
        occurred = timezone.make_aware(occurred)
    sender = raw.get("sender")
    member_id = raw.get("member_id")
    if sender is None and member_id is None and kind not in (EventKind.OTHER,):
        errors.append(IngestError(index, "sender", _("需要 sender (平台账号) 或 member_id")))
        return None
    if member_id is not None and not isinstance(member_id, int):
        errors.append(IngestError(index, "member_id", _("member_id 必须是整数")))
        return None
    payload = raw.get("payload") or {}
    if not isinstance(payload, dict):
        errors.append(IngestError(index, "payload", _("payload 必须是对象")))
        return None
    if raw.get("kind") not in _KINDS:
        payload = {**payload, "raw_kind": raw.get("kind")}
    group = raw.get("group")
    return _Clean(
        index=index, platform=str(platform), event_id=str(event_id), kind=str(kind), occurred_at=occurred,
        sender=str(sender) if sender is not None else None, sender_name=str(raw.get("sender_name") or "")[:120],
        group=str(group) if group is not None else None, member_id=member_id, payload=payload,
    )


def do_ingest(tenant_id: int, events: Sequence[Mapping[str, Any]], *, create_members: bool = True) -> IngestResult:
    """Store a batch of platform events in the activity stream, once each.

    Each raw event: ``platform``, ``event_id`` (unique per platform), ``kind``, ``occurred_at``,
    ``sender`` (the platform's user id; or ``member_id``), optional ``sender_name``, ``group`` (the
    platform's room id) and ``payload``. Bad events are reported by index and skipped; good ones are
    stored. Unknown kinds are stored as ``other`` with the raw kind kept in the payload.

    Idempotency: events already stored (same tenant, platform, event id) are counted as duplicates;
    the insert uses ``ON CONFLICT DO NOTHING`` so two concurrent ingests of the same event store it
    once. Join/leave events open/close memberships, and members' ``last_active_at`` advances, only for
    newly stored events. One transaction per call; the engine dispatch task is enqueued inside it so
    it commits with the events it names.
    """
    result = IngestResult()
    if len(events) > MAX_BATCH:
        result.errors.append(IngestError(-1, "", _("一批最多 %(n)d 个事件") % {"n": MAX_BATCH}))
        return result
    cleaned: list[_Clean] = []
    seen: set[tuple[str, str]] = set()
    for i, raw in enumerate(events):
        c = _clean(i, raw, result.errors)
        if c is None:
            continue
        if (c.platform, c.event_id) in seen:
            result.duplicates += 1
            continue
        seen.add((c.platform, c.event_id))
        cleaned.append(c)
    if not cleaned:
        return result

    now = timezone.now()
    with transaction.atomic():
        # 1. drop events already stored (one indexed lookup per platform, no model instances)
        existing: set[tuple[str, str]] = set()
        by_platform: dict[str, list[str]] = {}
        for c in cleaned:
            by_platform.setdefault(c.platform, []).append(c.event_id)
        for platform, ids in by_platform.items():
            existing.update((platform, eid) for eid in _existing_event_ids(tenant_id, platform, ids))
        fresh = [c for c in cleaned if (c.platform, c.event_id) not in existing] if existing else cleaned
        result.duplicates += len(cleaned) - len(fresh)
        if not fresh:
            return result

        # 2. resolve groups and members
        groups = _resolve_groups(tenant_id, fresh)
        members, created = _resolve_members(tenant_id, fresh, result.errors, create=create_members)
        result.created_members = created

        direct_ok: set[int] = members.get("__direct__", set())
        rows: list[_Row] = []
        for c in fresh:
            member_id = c.member_id if c.member_id is not None else members.get((c.platform, c.sender or ""))
            if c.member_id is not None and c.member_id not in direct_ok:
                result.errors.append(IngestError(c.index, "member_id", _("会员不存在")))
                continue
            g = groups.get((c.platform, c.group or ""))
            rows.append(_Row(member_id, g[1] if g else None, g[0] if g else None, c.platform, c.event_id, c.kind,
                             c.occurred_at, c.payload))
        # one insert order for everyone, so two concurrent ingests of overlapping batches cannot deadlock
        rows.sort(key=lambda r: (r.platform, r.event_id))
        # INSERT … ON CONFLICT DO NOTHING RETURNING: the ids of exactly the rows this call stored
        stored_ids = _insert_events(tenant_id, rows, now)
        result.stored = len(stored_ids)
        result.duplicates += len(rows) - len(stored_ids)
        result.event_ids = sorted(stored_ids.values())
        stored_rows = [r for r in rows if (r.platform, r.event_id) in stored_ids] \
            if len(stored_ids) != len(rows) else rows
        _apply_side_effects(tenant_id, stored_rows)
        if result.event_ids and consumers():
            for chunk in _chunks(result.event_ids, 1000):
                dispatch_events.enqueue(tenant_id, list(chunk))
    return result


@dataclass(slots=True)
class _Row:
    member_id: int | None
    community_id: int | None
    group_id: int | None
    platform: str
    event_id: str
    kind: str
    occurred_at: dt.datetime
    payload: dict[str, Any]


def _is_pg() -> bool:
    return connection.vendor == "postgresql"


def _in(values: Sequence[Any]) -> tuple[str, Any]:
    """A membership test against a whole list bound as ONE parameter: ``= ANY(%s)`` (PostgreSQL array)
    or ``IN (SELECT value FROM json_each(%s))`` (SQLite). The statement text stays short and constant,
    so neither driver re-parses a 1000-placeholder query on every batch, and there is no 999-variable
    chunking."""
    if _is_pg():
        return "= ANY(%s)", list(values)
    return "IN (SELECT value FROM json_each(%s))", json.dumps(list(values), ensure_ascii=False)


def _existing_event_ids(tenant_id: int, platform: str, ids: Sequence[str]) -> list[str]:
    """The ids of ``ids`` already stored. PostgreSQL: looked up in ``activity_eventkey`` (one unique
    index, filled in the statement that stores each event) — the monthly-partitioned event table
    would probe the index of every partition, since an event id says nothing of its month."""
    table = (EventKey if _is_pg() else ActivityEvent)._meta.db_table
    test, param = _in(ids)
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT platform_event_id FROM "{table}" WHERE tenant_id = %s AND platform = %s '  # noqa: S608
                       f"AND platform_event_id {test}", [tenant_id, platform, param])
        return [r[0] for r in cursor.fetchall()]


def _chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _resolve_groups(tenant_id: int, events: Sequence[_Clean]) -> dict[tuple[str, str], tuple[int, int]]:
    by_platform: dict[str, set[str]] = {}
    for c in events:
        if c.group:
            by_platform.setdefault(c.platform, set()).add(c.group)
    out: dict[tuple[str, str], tuple[int, int]] = {}
    table = ChatGroup._meta.db_table
    for platform, gids in by_platform.items():
        test, param = _in(sorted(gids))
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT external_id, id, community_id FROM "{table}" '  # noqa: S608
                           f"WHERE tenant_id = %s AND platform = %s AND external_id {test}",
                           [tenant_id, platform, param])
            for gid, pk, community_id in cursor.fetchall():
                out[(platform, gid)] = (pk, community_id)
    return out


def _lookup_identities(tenant_id: int, platform: str, senders: Sequence[str]) -> list[tuple[str, int]]:
    """(external id, member id) for known senders; a merged member resolves to the one it was merged into."""
    identity, member = Identity._meta.db_table, Member._meta.db_table
    test, param = _in(senders)
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT i.external_id, COALESCE(m.merged_into_id, i.member_id) FROM "{identity}" i '  # noqa: S608
                       f'JOIN "{member}" m ON m.id = i.member_id '
                       f"WHERE i.tenant_id = %s AND i.platform = %s AND i.external_id {test}",
                       [tenant_id, platform, param])
        return cursor.fetchall()


def _resolve_members(
    tenant_id: int, events: Sequence[_Clean], errors: list[IngestError], *, create: bool
) -> tuple[dict[Any, Any], int]:
    """Map (platform, sender) → member id, creating member + identity for unknown senders."""
    wanted: dict[tuple[str, str], _Clean] = {}
    for c in events:
        if c.member_id is None and c.sender is not None:
            wanted.setdefault((c.platform, c.sender), c)
    out: dict[Any, Any] = {}
    by_platform: dict[str, list[str]] = {}
    for platform, sender in wanted:
        by_platform.setdefault(platform, []).append(sender)
    for platform, senders in by_platform.items():
        for ext, member_id in _lookup_identities(tenant_id, platform, senders):
            out[(platform, ext)] = member_id
    direct = {c.member_id for c in events if c.member_id is not None}
    if direct:
        out["__direct__"] = set(
            Member.objects.filter(tenant_id=tenant_id, pk__in=direct).values_list("pk", flat=True)
        )
    created = 0
    missing = sorted(k for k in wanted if k not in out)  # sorted: concurrent ingests lock in one order
    if not missing or not create:
        return out, created

    def new_member(k: tuple[str, str]) -> Member:
        return Member(tenant_id=tenant_id, display_name=(wanted[k].sender_name or k[1])[:120],
                      first_seen_at=wanted[k].occurred_at, source_channel=k[0])

    def new_identity(k: tuple[str, str], member_id: int) -> Identity:
        return Identity(tenant_id=tenant_id, member_id=member_id, platform=k[0], external_id=k[1],
                        display_name=wanted[k].sender_name, verified=True)

    try:
        with transaction.atomic():  # fast path: nobody else is creating these senders right now
            member_ids = _insert_returning_ids(Member, [
                {"tenant_id": tenant_id, "display_name": (wanted[k].sender_name or k[1])[:120],
                 "first_seen_at": wanted[k].occurred_at, "source_channel": k[0]} for k in missing])
            _insert_returning_ids(Identity, [
                {"tenant_id": tenant_id, "member_id": member_id, "platform": k[0], "external_id": k[1],
                 "display_name": wanted[k].sender_name[:120], "verified": True}
                for k, member_id in zip(missing, member_ids, strict=True)])
        for k, member_id in zip(missing, member_ids, strict=True):
            out[k] = member_id
        return out, len(missing)
    except IntegrityError:
        pass
    # a concurrent ingest created some of them: one savepoint per sender, reuse the winner's member
    for k in missing:
        try:
            with transaction.atomic():
                member = new_member(k)
                member.save()
                new_identity(k, member.pk).save()
            out[k] = member.pk
            created += 1
        except IntegrityError:
            out[k] = Identity.objects.get(tenant_id=tenant_id, platform=k[0], external_id=k[1]).member_id
    return out, created


def _iso(value: Any) -> str:
    """JSON for datetimes with full microseconds (DjangoJSONEncoder rounds to milliseconds)."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _insert_returning_ids(model: type[Any], rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` (attname → value; other fields take their model default, ``auto_now[_add]``
    fields now) in one statement per chunk and return the new ids in row order, as Django's own
    ``bulk_create`` does from RETURNING (both databases return rows in insertion order).

    Why not ``bulk_create``: building a model instance and compiling every field per row cost ~0.5 ms
    a member here. PostgreSQL: ``json_populate_recordset`` of the table's row type, one parameter;
    SQLite: multi-row VALUES of ``get_db_prep_save`` values."""
    if not rows:
        return []
    now = timezone.now()

    # fields with a database default are left to the database unless a row names them
    named = {k for r in rows for k in r}
    fields = [f for f in model._meta.concrete_fields if not f.primary_key
              and (f.db_default is NOT_PROVIDED or f.attname in named)]
    defaults: dict[str, Any] = {}
    for f in fields:
        auto = getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
        defaults[f.attname] = now if auto else f.get_default()
    table = model._meta.db_table
    columns = ", ".join(f'"{f.column}"' for f in fields)
    ids: list[int] = []
    with connection.cursor() as cursor:
        if _is_pg():
            sql = (f'INSERT INTO "{table}" ({columns}) SELECT {columns} '  # noqa: S608
                   f'FROM json_populate_recordset(NULL::"{table}", %s::json) RETURNING id')
            for chunk in _chunks(rows, 5000):
                payload = json.dumps([{f.column: r.get(f.attname, defaults[f.attname]) for f in fields}
                                      for r in chunk], default=_iso, ensure_ascii=False)
                cursor.execute(sql, [payload])
                ids += [pk for (pk,) in cursor.fetchall()]
        else:
            one = "(" + ", ".join(["%s"] * len(fields)) + ")"
            per_chunk = max(1, min(1000, _sqlite_max_vars() // len(fields)))
            for chunk in _chunks(rows, per_chunk):
                params = [f.get_db_prep_save(r.get(f.attname, defaults[f.attname]), connection)
                          for r in chunk for f in fields]
                cursor.execute(f'INSERT INTO "{table}" ({columns}) VALUES '  # noqa: S608
                               f'{", ".join([one] * len(chunk))} RETURNING id', params)
                ids += [pk for (pk,) in cursor.fetchall()]
    return ids


_EVENT_COLUMNS = ("tenant_id", "member_id", "community_id", "group_id", "platform", "platform_event_id", "kind",
                  "occurred_at", "received_at", "payload")


def _sqlite_max_vars() -> int:
    raw = connection.connection
    return int(raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)) if hasattr(raw, "getlimit") else 999


def _insert_events(tenant_id: int, rows: Sequence[_Row], now: dt.datetime) -> dict[tuple[str, str], int]:
    """Store ``rows`` with ``INSERT … ON CONFLICT DO NOTHING RETURNING id``; return the ids of the rows
    this statement stored (a row another ingest stored first is not returned, so it counts as a duplicate).

    Raw SQL, no model instances: the ORM's per-field compile step costs more than the database itself
    here. PostgreSQL: one short statement binding one array per column (``INSERT … SELECT FROM
    unnest(…)``), so psycopg neither re-parses a 10,000-placeholder query nor sends one; the event keys
    go into ``EventKey`` in the same statement (the partitioned table's uniqueness). SQLite (≥ 3.35
    for RETURNING): multi-row VALUES up to the variable limit. Values are bound parameters only."""
    if not rows:
        return {}
    table = ActivityEvent._meta.db_table
    columns = ", ".join(f'"{c}"' for c in _EVENT_COLUMNS)
    conflict = "ON CONFLICT (tenant_id, platform, platform_event_id) DO NOTHING"
    returning = "RETURNING id, platform, platform_event_id"
    dumps = json.dumps
    out: dict[tuple[str, str], int] = {}
    with connection.cursor() as cursor:
        if _is_pg():
            # the table is partitioned by month (migration 0005): its unique key cannot span months, so
            # the event key goes into activity_eventkey first (ON CONFLICT DO NOTHING) and only the
            # events whose key this statement inserted are stored — one statement, one snapshot
            keys = EventKey._meta.db_table
            sql = (f"WITH u AS MATERIALIZED (SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], "  # noqa: S608
                   f"%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::text[]) "
                   f"WITH ORDINALITY AS u(m, c, g, p, e, k, t, j, n)), "
                   f'k AS (INSERT INTO "{keys}" (tenant_id, platform, platform_event_id, occurred_at) '
                   f"SELECT %s, u.p, u.e, u.t FROM u ORDER BY u.n {conflict} RETURNING platform, platform_event_id) "
                   f'INSERT INTO "{table}" ({columns}) SELECT %s, u.m, u.c, u.g, u.p, u.e, u.k, u.t, %s, '
                   f"u.j::jsonb FROM u JOIN k ON k.platform = u.p AND k.platform_event_id = u.e ORDER BY u.n "
                   f"{returning}")
            for chunk in _chunks(rows, 5000):
                cursor.execute(sql, [
                    [r.member_id for r in chunk], [r.community_id for r in chunk], [r.group_id for r in chunk],
                    [r.platform for r in chunk], [r.event_id for r in chunk], [r.kind for r in chunk],
                    [r.occurred_at for r in chunk], [dumps(r.payload, ensure_ascii=False) for r in chunk],
                    tenant_id, tenant_id, now,
                ])
                for pk, platform, eid in cursor.fetchall():
                    out[(platform, eid)] = pk
        else:
            def when(value: dt.datetime) -> str:
                return str(value.astimezone(dt.UTC).replace(tzinfo=None))

            received = when(now)
            per_chunk = max(1, min(1000, _sqlite_max_vars() // len(_EVENT_COLUMNS)))
            one = "(" + ", ".join(["?"] * len(_EVENT_COLUMNS)) + ")"

            raw = cursor.cursor  # Django's SQLite wrapper; the base execute skips its %s → ? rewrite
            for chunk in _chunks(rows, per_chunk):
                params: list[Any] = []
                for r in chunk:
                    params += (tenant_id, r.member_id, r.community_id, r.group_id, r.platform, r.event_id, r.kind,
                               when(r.occurred_at), received, dumps(r.payload, ensure_ascii=False))
                with connection.wrap_database_errors:
                    sqlite3.Cursor.execute(raw, f'INSERT INTO "{table}" ({columns}) '  # noqa: S608
                                           f'VALUES {", ".join([one] * len(chunk))} {conflict} {returning}',
                                           params)
                for pk, platform, eid in raw.fetchall():
                    out[(platform, eid)] = pk
    return out


def _advance_last_active(items: Sequence[tuple[int, dt.datetime]]) -> None:
    """``last_active_at = max(last_active_at, t)`` for many members in one statement.

    Raw ``UPDATE … FROM`` a list bound as one parameter (PostgreSQL: ``unnest`` of two arrays; SQLite
    ≥ 3.33: ``json_each``): a CASE expression through the ORM costs ~0.4 ms per member on SQLite. The
    WHERE keeps the value monotonic under concurrent ingests; rows are updated in member-id order."""
    if not items:
        return
    table = Member._meta.db_table
    with connection.cursor() as cursor:
        if _is_pg():
            cursor.execute(
                f'UPDATE "{table}" SET last_active_at = v.t FROM unnest(%s::bigint[], %s::timestamptz[]) '  # noqa: S608
                f'AS v(id, t) WHERE "{table}".id = v.id AND ("{table}".last_active_at IS NULL '
                f'OR "{table}".last_active_at < v.t)',
                [[m for m, _t in items], [t for _m, t in items]])
        else:
            adapt = connection.ops.adapt_datetimefield_value
            payload = json.dumps([[m, adapt(t)] for m, t in items])
            cursor.execute(
                f'UPDATE "{table}" SET last_active_at = v.t FROM (SELECT json_extract(value, \'$[0]\') AS id, '  # noqa: S608
                f"json_extract(value, '$[1]') AS t FROM json_each(%s)) AS v "
                f'WHERE "{table}".id = v.id AND ("{table}".last_active_at IS NULL '
                f'OR "{table}".last_active_at < v.t)', [payload])


#: the raw kind of a platform's join request (stored as ``other``; see :func:`_apply_side_effects`)
JOIN_REQUEST_KIND = "join_request"


def _apply_side_effects(tenant_id: int, rows: Sequence[_Row]) -> None:
    """Advance members' last_active_at; open/close memberships for join/leave events in time order."""
    last_active: dict[int, dt.datetime] = {}
    for r in rows:
        if r.member_id and r.kind != EventKind.LEAVE and r.occurred_at > last_active.get(r.member_id, _EPOCH):
            last_active[r.member_id] = r.occurred_at
    _advance_last_active(sorted(last_active.items()))
    changes = []
    for r in sorted((r for r in rows if r.kind in (EventKind.JOIN, EventKind.LEAVE)), key=lambda r: r.occurred_at):
        if r.member_id is None or r.community_id is None:
            continue
        payload = r.payload if isinstance(r.payload, dict) else {}
        if r.kind == EventKind.JOIN:
            changes.append(MembershipChange.join(
                r.member_id, r.community_id, r.group_id, r.occurred_at,
                source=payload.get("join_source"), inviter_id=payload.get("inviter_member_id")))
        else:
            changes.append(MembershipChange.leave(r.member_id, r.community_id, r.group_id, r.occurred_at,
                                                  reason=str(payload.get("reason", ""))))
    do_record_membership_changes(tenant_id, changes)
    # a platform asks whether someone may join (Telegram chat_join_request, Matrix knock): the entry
    # threshold decides, and the answer goes back through the outbox (communities → connectors)
    requests = []
    for r in rows:
        payload = r.payload if isinstance(r.payload, dict) else {}
        if (r.kind == EventKind.OTHER and payload.get("raw_kind") == JOIN_REQUEST_KIND and r.member_id
                and r.community_id and r.group_id):
            requests.append(PlatformJoinRequest(r.member_id, r.community_id, r.group_id, r.platform,
                                                invite_code=str(payload.get("invite_code") or "")[:32],
                                                message=str(payload.get("message") or "")[:200]))
    do_record_platform_join_requests(tenant_id, requests)


@task(queue_name="engines")
def dispatch_events(tenant_id: int, event_ids: list[int]) -> dict[str, str]:
    """Hand a committed batch of new events to the engines (enqueued by :func:`do_ingest`)."""
    return do_dispatch(tenant_id, event_ids)


def do_dispatch(tenant_id: int, event_ids: Sequence[int], *, only: str | None = None) -> dict[str, str]:
    """Hand stored events to every registered engine consumer (or only to ``only``), each in its own
    transaction, through the shared delivery mechanism (:func:`shequn.core.streams.deliver`).

    A consumer that raises is rolled back alone and recorded as a
    :class:`~shequn.core.models.DeliveryFailure` (retried with backoff, dead-lettered after too many
    attempts); the others still run. Returns ``{consumer: "ok" | error type}``."""
    return streams.deliver(STREAM, tenant_id, list(event_ids), only=only)


def on_member_merged(tenant_id: int, from_member_id: int, to_member_id: int) -> dict[str, int]:
    """The members merge hook of the activity stream (declared in :mod:`shequn.wiring`): the merged
    member's events are re-attributed to the kept member."""
    moved = ActivityEvent.objects.filter(tenant_id=tenant_id, member_id=from_member_id).update(
        member_id=to_member_id)
    return {"events": moved}


#: payload keys that say nothing about a person (kept when a member's data is erased)
NON_PERSONAL_PAYLOAD_KEYS = frozenset({"raw_kind", "sender_is_admin", "duration_s", "seconds", "state", "pin",
                                       "message_id", "reply_to_message_id"})


def do_scrub_member_events(tenant_id: int, member_id: int) -> int:
    """Erase the personal fields (message text, names, mentions, media, links, edits…) of every
    event of one member, keeping the event itself (kind, time, community, group) so that counts and
    dashboards stay right. Returns the number of events scrubbed. The members app's erasure calls it."""
    n = 0
    qs = ActivityEvent.objects.filter(tenant_id=tenant_id, member_id=member_id).only("pk", "payload")
    for event in qs.iterator(chunk_size=500):
        payload = event.payload if isinstance(event.payload, dict) else {}
        kept = {k: v for k, v in payload.items() if k in NON_PERSONAL_PAYLOAD_KEYS}
        ActivityEvent.objects.filter(pk=event.pk).update(payload={**kept, "erased": True})
        n += 1
    return n


def member_export(tenant_id: int, member_id: int) -> list[dict[str, Any]]:
    """The member's events for their data export (a members export section, declared in the wiring)."""
    return export_rows(ActivityEvent.objects.filter(tenant_id=tenant_id, member_id=member_id).order_by("occurred_at"),
                       ["platform", "kind", "occurred_at", "community__name", "group__name", "payload"])


def on_member_erased(principal: Principal, member_id: int) -> int:
    """The members erasure step of the activity stream (declared in the wiring): scrub the events."""
    return do_scrub_member_events(principal.tenant_id, member_id)
