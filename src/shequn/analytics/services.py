"""Writers of the analytics app: the rollups, member-day facts and journeys (with ``summaries``, which
moves the members' lifetime rows in the same day writes).

Maintenance is *deterministic recomputation per day bucket*:

* the activity consumer (:func:`on_activity`) and the order listener (:func:`on_order_event`) only
  mark the local days they touch as dirty — one ``INSERT … ON CONFLICT DO NOTHING`` per batch, so
  ingest pays a few microseconds per event and a replayed or retried batch marks the same days again;
* :func:`do_refresh` (scheduled every minute, and on demand) recomputes each dirty day from the
  source tables (activity events, orders, refunds, link clicks, commissions): it first recomputes
  the journeys (firsts) of the members seen that day, marks the other days whose figures depend on a
  first that moved (a back-dated first message or first order), then replaces the day's rows;
* :func:`do_rebuild` recomputes every journey and every day from scratch (``shequn analytics rebuild``).

Because a day's rows are a pure function of the source tables, the incremental result equals the
rebuild whatever the order, duplication or replay of the events (tested with hypothesis)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Case, Count, Max, Min, QuerySet, Sum, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from shequn.activity.models import ActivityEvent, EventKind
from shequn.commerce.events import OrderEventData
from shequn.commerce.models import Order, Refund
from shequn.communities.models import Community
from shequn.core.models import Tenant
from shequn.referrals.models import Commission, InviteLink, LinkEvent, LinkEventKind

from .models import (
    CohortCell,
    DailyDistinct,
    DailyRollup,
    DirtyDay,
    MemberDay,
    MemberJourney,
    MemberPeriod,
    MemberSummary,
)
from .presence import do_rebuild_presence
from .summaries import apply_member_summaries, do_fill_member_summaries

DEFAULT_TZ = "Asia/Shanghai"

#: kinds that make a member "active" on a day (a leave, edit or delete does not)
ACTIVE_KINDS = frozenset({EventKind.MESSAGE, EventKind.REPLY, EventKind.REACTION, EventKind.CHECK_IN,
                          EventKind.PURCHASE, EventKind.LIVE_VIEW, EventKind.CONTENT_VIEW, EventKind.INVITE,
                          EventKind.JOIN})
MESSAGE_KINDS = frozenset({EventKind.MESSAGE, EventKind.REPLY})

_zones: dict[int, ZoneInfo] = {}


def tenant_zone(tenant_id: int) -> ZoneInfo:
    zone = _zones.get(tenant_id)
    if zone is None:
        name = Tenant.objects.filter(pk=tenant_id).values_list("time_zone", flat=True).first() or DEFAULT_TZ
        zone = _zones[tenant_id] = ZoneInfo(name)
    return zone


def local_day(at: dt.datetime, zone: ZoneInfo) -> dt.date:
    return at.astimezone(zone).date()


def day_bounds(day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
    return start, dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)


#: the member-period rollups (``MemberPeriod``): local ISO weeks and calendar months
GRAINS = ("week", "month")


def period_start(day: dt.date, grain: str) -> dt.date:
    """The Monday of ``day``'s ISO week, or the first of its month."""
    return day - dt.timedelta(days=day.weekday()) if grain == "week" else day.replace(day=1)


# -- the subscriptions: mark days dirty ------------------------------------------------------------

def do_mark_dirty(tenant_id: int, days: Iterable[dt.date]) -> int:
    rows = [DirtyDay(tenant_id=tenant_id, day=d) for d in sorted(set(days))]
    if rows:
        DirtyDay.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def on_activity(tenant_id: int, events: Sequence[ActivityEvent]) -> None:
    """Activity consumer: the local days of the batch become dirty (idempotent on replay)."""
    zone = tenant_zone(tenant_id)
    do_mark_dirty(tenant_id, {local_day(e.occurred_at, zone) for e in events})


def on_order_event(data: OrderEventData) -> None:
    """Order listener: the event's day, the order's paid day and (for a refund) its refunds' days
    become dirty (idempotent)."""
    zone = tenant_zone(data.tenant_id)
    days = set()
    if data.occurred_at is not None:
        days.add(local_day(data.occurred_at, zone))
    paid_at = Order.objects.filter(tenant_id=data.tenant_id, pk=data.order_id).values_list("paid_at", flat=True).first()
    if paid_at is not None:
        days.add(local_day(paid_at, zone))
    if data.kind == "refunded":  # the refund's own completion time (the event may be written a moment later)
        days |= {local_day(t, zone) for t in Refund.objects.filter(
            tenant_id=data.tenant_id, order_id=data.order_id, completed_at__isnull=False).values_list(
            "completed_at", flat=True) if t is not None}
    do_mark_dirty(data.tenant_id, days)


# -- journeys ---------------------------------------------------------------------------------------

_JOURNEY_DATES = ("clicked_at", "joined_at", "first_message_at", "first_order_at", "second_order_at")


def _links(tenant_id: int, codes: Iterable[str]) -> dict[str, tuple[int, str, str]]:
    codes = {c for c in codes if c}
    if not codes:
        return {}
    return {code: (cid or 0, campaign, channel) for code, cid, campaign, channel in InviteLink.objects.filter(
        tenant_id=tenant_id, code__in=codes).values_list("code", "community_id", "campaign", "channel")}


def do_recompute_journeys(tenant_id: int, member_ids: Iterable[int] | None) -> set[dt.date]:
    """Recompute the journeys of ``member_ids`` (every member of the tenant when None) from the
    source tables; return the local days whose figures depend on a first that moved."""
    zone = tenant_zone(tenant_id)
    ids = None if member_ids is None else sorted({m for m in member_ids if m})
    if ids is not None and not ids:
        return set()
    chunks: list[list[int] | None] = [None] if ids is None else [ids[i:i + 500] for i in range(0, len(ids), 500)]
    moved: set[dt.date] = set()
    for chunk in chunks:
        moved |= _recompute_journey_chunk(tenant_id, chunk, zone)
    return moved


def _recompute_journey_chunk(tenant_id: int, ids: list[int] | None, zone: ZoneInfo) -> set[dt.date]:
    events = ActivityEvent.objects.filter(tenant_id=tenant_id, member_id__isnull=False)
    orders = Order.objects.filter(tenant_id=tenant_id, paid_at__isnull=False)
    clicks = LinkEvent.objects.filter(tenant_id=tenant_id, kind=LinkEventKind.CLICK, member_id__isnull=False)
    existing = MemberJourney.objects.filter(tenant_id=tenant_id)
    if ids is not None:
        events, orders = events.filter(member_id__in=ids), orders.filter(member_id__in=ids)
        clicks, existing = clicks.filter(member_id__in=ids), existing.filter(member_id__in=ids)
    new: dict[int, dict[str, Any]] = defaultdict(dict)
    first_msg = events.filter(kind__in=MESSAGE_KINDS).values("member_id").annotate(t=Min("occurred_at"))
    for r in first_msg:
        new[r["member_id"]]["first_message_at"] = r["t"]
    joins = events.filter(kind=EventKind.JOIN).values("member_id").annotate(t=Min("occurred_at"))
    join_at = {r["member_id"]: r["t"] for r in joins}
    if join_at:
        # the first join's event: its community, invite code and inviter are the member's attribution
        rows = (events.filter(kind=EventKind.JOIN)
                .values_list("member_id", "occurred_at", "pk", "community_id", "payload").order_by("occurred_at", "pk"))
        firsts: dict[int, tuple[int, dict[str, Any]]] = {}
        for mid, at, _pk, cid, payload in rows:
            if mid not in firsts and at == join_at[mid]:
                firsts[mid] = (cid or 0, payload if isinstance(payload, dict) else {})
        links = _links(tenant_id, (str(p.get("invite_code") or p.get("state") or "") for _c, p in firsts.values()))
        for mid, (cid, payload) in firsts.items():
            code = str(payload.get("invite_code") or payload.get("state") or "")
            link = links.get(code)
            inviter = payload.get("inviter_member_id")
            new[mid].update(
                joined_at=join_at[mid], community_id=cid or (link[0] if link else 0),
                campaign=(link[1] if link else str(payload.get("campaign") or ""))[:64],
                channel=(link[2] if link else str(payload.get("join_source") or ""))[:64],
                inviter_id=_int(inviter), live_session_id=_int(payload.get("live_session_id")))
    for mid, t, cid, campaign, channel in clicks.order_by("member_id", "occurred_at", "pk").values_list(
            "member_id", "occurred_at", "link__community_id", "link__campaign", "link__channel"):
        if "clicked_at" in new[mid]:
            continue
        new[mid]["clicked_at"] = t
        if "joined_at" not in new[mid]:  # clicked but never joined: the link is the attribution
            new[mid].update(community_id=cid or 0, campaign=campaign[:64], channel=channel[:64])
    paid: dict[int, list[dt.datetime]] = defaultdict(list)
    for mid, paid_at in orders.order_by("member_id", "paid_at", "pk").values_list("member_id", "paid_at"):
        if len(paid[mid]) < 2 and paid_at is not None:
            paid[mid].append(paid_at)
    for mid, times in paid.items():
        new[mid]["first_order_at"] = times[0]
        new[mid]["second_order_at"] = times[1] if len(times) > 1 else None
    old = {j.member_id: j for j in existing}
    moved: set[dt.date] = set()
    changed: list[MemberJourney] = []
    attribution_moved: list[int] = []
    cohort_moved: dict[int, dt.datetime | None] = {}
    for mid in set(new) | set(old):
        values = {"community_id": 0, "campaign": "", "channel": "", "inviter_id": 0, "live_session_id": 0,
                  **dict.fromkeys(_JOURNEY_DATES), **new.get(mid, {})}
        before = old.get(mid)
        if before is not None and all(getattr(before, k) == v for k, v in values.items()):
            continue
        for k in ("joined_at", "first_message_at", "first_order_at", "second_order_at"):
            for when in (getattr(before, k) if before else None, values[k]):
                if when is not None:
                    moved.add(local_day(when, zone))
        if ((before.campaign, before.channel, before.community_id) if before is not None else ("", "", 0)) != (
                values["campaign"], values["channel"], values["community_id"]):
            # the member's attribution moved — also from none: a member whose days so far held only
            # reactions or leaves has facts but no journey yet — every day with facts must be redone
            attribution_moved.append(mid)
        if ids is not None and (before.joined_at if before else None) != values["joined_at"]:
            cohort_moved[mid] = values["joined_at"]
        changed.append(MemberJourney(tenant_id=tenant_id, member_id=mid, **values))
    for i in range(0, len(attribution_moved), 500):
        moved |= _member_source_days(tenant_id, attribution_moved[i:i + 500], zone)
    if cohort_moved:  # the member's period rows carry the cohort of the first join
        _move_cohorts(tenant_id, cohort_moved, zone)
    if changed:
        MemberJourney.objects.bulk_create(
            changed, update_conflicts=True, unique_fields=["tenant", "member_id"],
            update_fields=["community_id", "campaign", "channel", "inviter_id", "live_session_id", *_JOURNEY_DATES])
    return moved


def _member_source_days(tenant_id: int, member_ids: list[int], zone: ZoneInfo) -> set[dt.date]:
    """The local days on which these members have anything their attribution is counted under: their
    events of every kind (a leave or a reaction lands in a rollup row under the member's campaign
    without making a member-day fact), their paid orders and refunds."""
    days: set[dt.date] = set()
    for qs, column in ((ActivityEvent.objects.filter(tenant_id=tenant_id, member_id__in=member_ids), "occurred_at"),
                       (Order.objects.filter(tenant_id=tenant_id, member_id__in=member_ids, paid_at__isnull=False),
                        "paid_at"),
                       (Refund.objects.filter(tenant_id=tenant_id, order__member_id__in=member_ids,
                                              completed_at__isnull=False), "completed_at")):
        days |= set(qs.annotate(d=TruncDate(column, tzinfo=zone)).values_list("d", flat=True).distinct())
    return days


def _move_cohorts(tenant_id: int, joined: dict[int, dt.datetime | None], zone: ZoneInfo) -> None:
    """Set ``MemberPeriod.cohort`` of these members (a first join appeared or moved). Not needed in a
    rebuild: its period rows are written after the journeys."""
    for grain in GRAINS:
        by_cohort: dict[dt.date | None, list[int]] = defaultdict(list)
        for mid, at in joined.items():
            by_cohort[None if at is None else period_start(local_day(at, zone), grain)].append(mid)
        periods: set[dt.date] = set()
        for cohort, mids in by_cohort.items():
            for i in range(0, len(mids), 500):
                rows = MemberPeriod.objects.filter(tenant_id=tenant_id, grain=grain, member_id__in=mids[i:i + 500])
                periods |= set(rows.values_list("period", flat=True))
                rows.update(cohort=cohort)
        _write_cells(tenant_id, grain, sorted(periods))


# -- one day bucket ---------------------------------------------------------------------------------

RowKey = tuple[int, int, str, str, int]  # community, group, campaign, channel, live session
FactKey = tuple[int, int, str, str]  # member, community, campaign, channel


@dataclass
class _Row:
    visitors: set[str] = field(default_factory=set)
    joins: int = 0
    leaves: int = 0
    active: set[int] = field(default_factory=set)
    experienced: set[int] = field(default_factory=set)
    messages: int = 0
    first_purchases: int = 0
    orders: int = 0
    buyers: set[int] = field(default_factory=set)
    repeat: set[int] = field(default_factory=set)
    gmv_fen: int = 0
    refunds: int = 0
    refund_fen: int = 0
    commission_fen: int = 0


@dataclass
class _Fact:
    joined: bool = False
    active: bool = False
    experienced: bool = False
    messages: int = 0
    orders: int = 0
    gmv_fen: int = 0
    refund_fen: int = 0


#: the largest id a BIGINT column holds
_MAX_ID = 2**63 - 1


def _int(value: Any) -> int:
    """An id read from an event payload or an order's attribution: ingest stores any JSON, so a value
    that is not an id that fits the 64-bit columns (a string, 1e30, a negative number) reads as
    none (0) — one such event must not break the refresh of the tenant's analytics."""
    try:
        number = int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0
    return number if 0 < number <= _MAX_ID else 0


def _day_events(tenant_id: int, start: dt.datetime, end: dt.datetime) -> list[QuerySet[ActivityEvent]]:
    """A local day's events as two queries that each use the stream's ``(tenant, community,
    occurred_at)`` index: the events of the tenant's communities, and those without a community.
    (A plain ``tenant + occurred_at`` range has no index and would scan the tenant's whole stream.)"""
    base = ActivityEvent.objects.filter(tenant_id=tenant_id, occurred_at__gte=start, occurred_at__lt=end)
    communities = list(Community.objects.filter(tenant_id=tenant_id).values_list("pk", flat=True))
    return [base.filter(community_id__in=communities), base.filter(community_id__isnull=True)]


#: the columns of a day's rows, in the order :func:`compute_day` returns their values
ROLLUP_COLUMNS = ("tenant_id", "day", "community_id", "group_id", "campaign", "channel", "live_session_id",
                  "visitors", "joins", "leaves", "active_members", "experienced", "messages", "first_purchases",
                  "orders", "buyers", "repeat_buyers", "gmv_fen", "refunds", "refund_fen", "commission_fen")
DISTINCT_COLUMNS = ("tenant_id", "day", "community_id", "active_members", "buyers")
FACT_COLUMNS = ("tenant_id", "day", "member_id", "community_id", "campaign", "channel", "joined", "active",
                "experienced", "messages", "orders", "gmv_fen", "refund_fen")


@dataclass
class Known:
    """What a rebuild reads once for every day instead of per day: every journey (campaign, channel,
    first message, first order) and every invite link. Only valid while the journeys are current."""

    journeys: dict[int, tuple[str, str, dt.datetime | None, dt.datetime | None]]
    links: dict[str, tuple[int, str, str]]

    @classmethod
    def load(cls, tenant_id: int) -> Known:
        return cls(
            journeys={mid: (campaign, channel, first_message, first_order)
                      for mid, campaign, channel, first_message, first_order in MemberJourney.objects.filter(
                          tenant_id=tenant_id).values_list("member_id", "campaign", "channel", "first_message_at",
                                                           "first_order_at").iterator(chunk_size=20_000)},
            links={code: (cid or 0, campaign, channel) for code, cid, campaign, channel in InviteLink.objects.filter(
                tenant_id=tenant_id).values_list("code", "community_id", "campaign", "channel")})


def compute_day(tenant_id: int, day: dt.date, known: Known | None = None
                ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rows of one local day, computed from the source tables (journeys must be current): the
    values of :data:`ROLLUP_COLUMNS` and of :data:`FACT_COLUMNS` (plain tuples: building a model
    instance per row cost more than computing it)."""
    zone = tenant_zone(tenant_id)
    start, end = day_bounds(day, zone)
    rows: dict[RowKey, _Row] = defaultdict(_Row)
    facts: dict[FactKey, _Fact] = defaultdict(_Fact)

    events: list[tuple[Any, ...]] = []
    flows: list[tuple[Any, ...]] = []
    for qs in _day_events(tenant_id, start, end):
        events += qs.exclude(kind__in=(EventKind.JOIN, EventKind.LEAVE)).values_list(
            "member_id", "community_id", "group_id", "kind")
        flows += qs.filter(kind__in=(EventKind.JOIN, EventKind.LEAVE)).values_list(
            "member_id", "community_id", "group_id", "kind", "payload")
    orders = list(Order.objects.filter(tenant_id=tenant_id, paid_at__gte=start, paid_at__lt=end)
                  .values_list("pk", "member_id", "paid_fen", "attribution", "live_session_id", "paid_at")
                  .order_by("paid_at", "pk"))
    refunds = list(Refund.objects.filter(tenant_id=tenant_id, status=Refund.Status.SUCCEEDED,
                                         completed_at__gte=start, completed_at__lt=end)
                   .values_list("order__member_id", "amount_fen", "order__attribution", "order__live_session_id"))
    members = {m for m, *_ in events if m} | {m for m, *_ in flows if m}
    members |= {o[1] for o in orders} | {r[0] for r in refunds}
    journeys: dict[int, tuple[str, str, dt.datetime | None, dt.datetime | None]] = {}
    member_list = [] if known is not None else sorted(members)
    if known is not None:
        journeys = known.journeys
    for i in range(0, len(member_list), 500):
        for mid, campaign, channel, first_message_at, first_order_at in MemberJourney.objects.filter(
                tenant_id=tenant_id, member_id__in=member_list[i:i + 500]).values_list(
                "member_id", "campaign", "channel", "first_message_at", "first_order_at"):
            journeys[mid] = (campaign, channel, first_message_at, first_order_at)
    codes = {str((p or {}).get("invite_code") or (p or {}).get("state") or "") for *_x, p in flows}
    codes |= {str((a or {}).get("invite_code") or "") for _p, _m, _f, a, _l, _t in orders}
    codes |= {str((a or {}).get("invite_code") or "") for _m, _f, a, _l in refunds}
    links = known.links if known is not None else _links(tenant_id, codes)

    def member_attr(mid: int | None) -> tuple[str, str]:
        j = journeys.get(mid) if mid else None
        return (j[0], j[1]) if j else ("", "")

    def order_attr(mid: int, attribution: Any, live: int | None) -> tuple[RowKey, tuple[str, str]]:
        a = attribution if isinstance(attribution, dict) else {}
        link = links.get(str(a.get("invite_code") or ""))
        base_campaign, base_channel = member_attr(mid)
        campaign = str(a.get("campaign") or (link[1] if link else "") or base_campaign)[:64]
        channel = str((link[2] if link else "") or base_channel)[:64]
        community = _int(a.get("community_id")) or (link[0] if link else 0)
        key = (community, _int(a.get("group_id")), campaign, channel, live or _int(a.get("live_session_id")))
        return key, (campaign, channel)

    def within(t: dt.datetime | None) -> bool:
        return t is not None and start <= t < end

    for mid, cid, gid, kind in events:
        campaign, channel = member_attr(mid)
        row = rows[(cid or 0, gid or 0, campaign, channel, 0)]
        is_msg = kind in MESSAGE_KINDS
        row.messages += is_msg
        if mid and kind in ACTIVE_KINDS:
            row.active.add(mid)
            fact = facts[(mid, cid or 0, campaign, channel)]
            fact.active = True
            fact.messages += is_msg
            j = journeys.get(mid)
            if j is not None and is_msg and within(j[2]):
                fact.experienced = True
                row.experienced.add(mid)
    for mid, cid, gid, kind, payload in flows:
        p = payload if isinstance(payload, dict) else {}
        link = links.get(str(p.get("invite_code") or p.get("state") or ""))
        campaign, channel = (link[1], link[2]) if link else member_attr(mid)
        row = rows[(cid or 0, gid or 0, campaign, channel, _int(p.get("live_session_id")))]
        if kind == EventKind.JOIN:
            row.joins += 1
            if mid:
                row.active.add(mid)
                row.experienced.add(mid)
                fact = facts[(mid, cid or 0, campaign, channel)]
                fact.joined = fact.active = fact.experienced = True
        else:
            row.leaves += 1

    buyers = sorted({o[1] for o in orders})
    prior: dict[int, int] = dict.fromkeys(buyers, 0)
    if buyers and known is not None:  # a rebuild: the journeys are current, their first order says it
        for mid in buyers:
            first = known.journeys.get(mid, ("", "", None, None))[3]
            prior[mid] = int(first is not None and first < start)
    elif buyers:
        for i in range(0, len(buyers), 500):
            earlier = Order.objects.filter(tenant_id=tenant_id, member_id__in=buyers[i:i + 500], paid_at__lt=start)
            for mid in earlier.values_list("member_id", flat=True).distinct():
                prior[mid] = 1  # at least one paid order before this day
    seen: dict[int, int] = defaultdict(int)
    for _pk, mid, paid_fen, attribution, live, _t in orders:
        key, (campaign, channel) = order_attr(mid, attribution, live)
        row = rows[key]
        nth = prior[mid] + seen[mid]
        seen[mid] += 1
        row.orders += 1
        row.gmv_fen += paid_fen
        row.buyers.add(mid)
        row.active.add(mid)
        if nth == 0:
            row.first_purchases += 1
            row.experienced.add(mid)
        else:
            row.repeat.add(mid)
        fact = facts[(mid, key[0], campaign, channel)]
        fact.orders += 1
        fact.gmv_fen += paid_fen
        fact.active = True
        if nth == 0:
            fact.experienced = True
    for mid, amount, attribution, live in refunds:
        key, (campaign, channel) = order_attr(mid, attribution, live)
        rows[key].refunds += 1
        rows[key].refund_fen += amount
        facts[(mid, key[0], campaign, channel)].refund_fen += amount

    clicks = LinkEvent.objects.filter(tenant_id=tenant_id, kind=LinkEventKind.CLICK, occurred_at__gte=start,
                                      occurred_at__lt=end).values_list(
        "pk", "member_id", "ip", "device_id", "link__community_id", "link__campaign", "link__channel")
    for pk, mid, ip, device, cid, campaign, channel in clicks:
        visitor = f"m{mid}" if mid else (f"d{device}" if device else (f"i{ip}" if ip else f"e{pk}"))
        rows[(cid or 0, 0, campaign[:64], channel[:64], 0)].visitors.add(visitor)
    commissions = Commission.objects.filter(tenant_id=tenant_id, paid_at__gte=start, paid_at__lt=end)
    for snap_cid, campaign, amount in commissions.values_list("community_id_snapshot", "campaign", "amount_fen"):
        rows[(snap_cid or 0, 0, campaign[:64], "", 0)].commission_fen += amount or 0

    rollups = [(tenant_id, day, *k, len(r.visitors), r.joins, r.leaves, len(r.active), len(r.experienced), r.messages,
                r.first_purchases, r.orders, len(r.buyers), len(r.repeat), r.gmv_fen, r.refunds, r.refund_fen,
                r.commission_fen) for k, r in sorted(rows.items())]
    member_days = [(tenant_id, day, *k, f.joined, f.active, f.experienced, f.messages, f.orders, f.gmv_fen,
                    f.refund_fen) for k, f in sorted(facts.items()) if k[0]]
    return rollups, member_days


def _day_members(tenant_id: int, day: dt.date) -> set[int]:
    """The members whose journey a day's sources can change: a day's join, message, paid order or
    click can only move a first that is missing or not earlier than the day's start (a first before
    the day stays the first). Everyone else's journey is left as it is."""
    start, end = day_bounds(day, tenant_zone(tenant_id))
    touched: dict[int, set[str]] = defaultdict(set)
    for qs in _day_events(tenant_id, start, end):
        for mid, kind in qs.filter(member_id__isnull=False, kind__in=(*MESSAGE_KINDS, EventKind.JOIN)).values_list(
                "member_id", "kind").distinct():
            touched[mid].add("joined_at" if kind == EventKind.JOIN else "first_message_at")
    for mid in Order.objects.filter(tenant_id=tenant_id, paid_at__gte=start, paid_at__lt=end).values_list(
            "member_id", flat=True):
        touched[mid] |= {"first_order_at", "second_order_at"}
    clicks = LinkEvent.objects.filter(tenant_id=tenant_id, kind=LinkEventKind.CLICK, occurred_at__gte=start,
                                      occurred_at__lt=end, member_id__isnull=False)
    for mid in clicks.values_list("member_id", flat=True):
        touched[mid].add("clicked_at")
    if not touched:
        return set()
    ids = sorted(touched)
    firsts: dict[int, dict[str, dt.datetime | None]] = {}
    for i in range(0, len(ids), 500):
        for row in MemberJourney.objects.filter(tenant_id=tenant_id, member_id__in=ids[i:i + 500]).values(
                "member_id", *_JOURNEY_DATES):
            firsts[row["member_id"]] = row
    out = set()
    for mid, fields in touched.items():
        known = firsts.get(mid)
        if known is None or any((t := known[f]) is None or t >= start for f in fields):
            out.add(mid)
    return out


def do_write_day(tenant_id: int, day: dt.date, *, periods: bool = True, known: Known | None = None,
                 empty: bool = False) -> int:
    """Replace one day's rows with a fresh computation (one transaction). With ``periods`` (always, but
    in a rebuild, which writes the period rows once at the end) the day's old member-day rows are
    subtracted from the member's week and month rows and the new ones added, in the same transaction."""
    rollups, member_days = compute_day(tenant_id, day, known)
    with transaction.atomic():
        old = _day_sums(tenant_id, day) if periods else {}
        if not empty:  # (a rebuild emptied the tenant's rows already)
            DailyRollup.objects.filter(tenant_id=tenant_id, day=day).delete()
            MemberDay.objects.filter(tenant_id=tenant_id, day=day).delete()
            DailyDistinct.objects.filter(tenant_id=tenant_id, day=day).delete()
        _insert(DailyRollup, ROLLUP_COLUMNS, rollups)
        _insert(MemberDay, FACT_COLUMNS, member_days)
        _insert(DailyDistinct, DISTINCT_COLUMNS, _distinct_rows(tenant_id, day, member_days))
        if periods:
            new: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
            for _t, _d, member_id, *_k, _j, active, _e, _m, orders, gmv, _r in member_days:
                sums = new[member_id]
                sums[0] += 1
                sums[1] += active
                sums[2] += orders
                sums[3] += gmv
            _apply_periods(tenant_id, day, old, new)
            apply_member_summaries(tenant_id, day, old, new)
    return len(rollups)


def _distinct_rows(tenant_id: int, day: dt.date, member_days: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The day's distinct active members and buyers, tenant-wide (community ``-1``) and per community."""
    active: dict[int, set[int]] = defaultdict(set)
    buyers: dict[int, set[int]] = defaultdict(set)
    for _t, _d, member_id, community_id, _c, _ch, _j, is_active, _e, _m, orders, _g, _r in member_days:
        for key in (-1, community_id):  # a row for every community with facts that day, zeros included
            active.setdefault(key, set())
            buyers.setdefault(key, set())
            if is_active:
                active[key].add(member_id)
            if orders > 0:
                buyers[key].add(member_id)
    return [(tenant_id, day, key, len(active[key]), len(buyers[key])) for key in sorted(active)]


def _day_sums(tenant_id: int, day: dt.date) -> dict[int, list[int]]:
    """Per member: member-day rows, active ones, orders and GMV of one stored day."""
    rows = MemberDay.objects.filter(tenant_id=tenant_id, day=day).values("member_id").annotate(
        n=Count("id"), a=Sum(Case(When(active=True, then=1), default=0)), o=Sum("orders"), g=Sum("gmv_fen"))
    return {r["member_id"]: [r["n"], r["a"] or 0, r["o"] or 0, r["g"] or 0] for r in rows}


def _cohorts(tenant_id: int, member_ids: Sequence[int], zone: ZoneInfo) -> dict[int, dt.date]:
    """The local day of each member's first join (members who never joined are absent)."""
    out = {}
    for i in range(0, len(member_ids), 500):
        for mid, at in MemberJourney.objects.filter(tenant_id=tenant_id, member_id__in=member_ids[i:i + 500],
                                                    joined_at__isnull=False).values_list("member_id", "joined_at"):
            if at is not None:
                out[mid] = local_day(at, zone)
    return out


def _apply_periods(tenant_id: int, day: dt.date, old: dict[int, list[int]], new: dict[int, list[int]]) -> None:
    """Move the week and month rows of ``day`` by (new − old) per member; drop the rows left with no
    member-day row."""
    deltas = {}
    for mid in set(old) | set(new):
        a, b = old.get(mid, [0, 0, 0, 0]), new.get(mid, [0, 0, 0, 0])
        if a != b:
            deltas[mid] = [y - x for x, y in zip(a, b, strict=True)]
    if not deltas:
        return
    ids = sorted(deltas)
    joined = _cohorts(tenant_id, ids, tenant_zone(tenant_id))
    table = connection.ops.quote_name(MemberPeriod._meta.db_table)
    adapt = connection.ops.adapt_datefield_value
    sql = (f"INSERT INTO {table} (tenant_id, grain, period, member_id, cohort, facts, active_facts, orders, gmv_fen) "  # noqa: S608 (the model's table)
           "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tenant_id, grain, period, member_id) DO UPDATE "
           f"SET cohort = EXCLUDED.cohort, facts = {table}.facts + EXCLUDED.facts, "
           f"active_facts = {table}.active_facts + EXCLUDED.active_facts, orders = {table}.orders + EXCLUDED.orders, "
           f"gmv_fen = {table}.gmv_fen + EXCLUDED.gmv_fen")
    gone = [m for m in ids if m not in new]
    with connection.cursor() as cursor:
        for grain in GRAINS:
            period = adapt(period_start(day, grain))
            cohort = {m: adapt(period_start(d, grain)) for m, d in joined.items()}
            cursor.executemany(sql, [(tenant_id, grain, period, m, cohort.get(m), *deltas[m]) for m in ids])
    for i in range(0, len(gone), 500):
        MemberPeriod.objects.filter(tenant_id=tenant_id, member_id__in=gone[i:i + 500], facts__lte=0).filter(
            period__in=[period_start(day, g) for g in GRAINS]).delete()
    for grain in GRAINS:
        _write_cells(tenant_id, grain, [period_start(day, grain)])


def _write_cells(tenant_id: int, grain: str, periods: Sequence[dt.date] | None) -> None:
    """Replace the cohort cells of these periods (every period when None) with the member-period rows
    grouped by cohort (one grouped ``INSERT … SELECT``)."""
    if periods is not None and not periods:
        return
    cells = CohortCell.objects.filter(tenant_id=tenant_id, grain=grain)
    adapt = connection.ops.adapt_datefield_value
    where, params = "", []
    if periods is not None:
        cells = cells.filter(period__in=periods)
        where = " AND period IN (" + ", ".join(["%s"] * len(periods)) + ")"
        params = [adapt(p) for p in periods]
    cells.delete()
    table, source = (connection.ops.quote_name(m._meta.db_table) for m in (CohortCell, MemberPeriod))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (tenant_id, grain, cohort, period, active_members, gmv_fen) "  # noqa: S608 (the models' tables)
            "SELECT tenant_id, grain, cohort, period, SUM(CASE WHEN active_facts > 0 THEN 1 ELSE 0 END), SUM(gmv_fen) "
            f"FROM {source} WHERE tenant_id = %s AND grain = %s AND cohort IS NOT NULL{where} "
            "GROUP BY tenant_id, grain, cohort, period", [tenant_id, grain, *params])


def do_fill_daily_distinct(tenant_id: int) -> None:
    """Write a tenant's ``DailyDistinct`` rows from its member-day rows with grouped ``INSERT … SELECT``
    (migration 0008, for the days written before the table existed; the table must be empty)."""
    table, days = (connection.ops.quote_name(m._meta.db_table) for m in (DailyDistinct, MemberDay))
    counts = ("COUNT(DISTINCT CASE WHEN active THEN member_id END), "
              "COUNT(DISTINCT CASE WHEN orders > 0 THEN member_id END)")
    with connection.cursor() as cursor:
        for key in ("-1", "community_id"):
            cursor.execute(
                f"INSERT INTO {table} (tenant_id, day, community_id, active_members, buyers) "  # noqa: S608 (the models' tables)
                f"SELECT tenant_id, day, {key}, {counts} FROM {days} WHERE tenant_id = %s GROUP BY tenant_id, day"
                + ("" if key == "-1" else ", community_id"), [tenant_id])


def do_fill_member_periods(tenant_id: int, *, cells: bool = True) -> int:
    """Write a tenant's ``MemberPeriod`` rows from its member-day rows in one grouped ``INSERT …
    SELECT`` per grain (the rebuild's last step; the table must be empty for the tenant). The week or
    month of a day and the cohort of a join time are ``CASE`` expressions over bounds computed here in
    the tenant's zone, so the same SQL runs on SQLite and PostgreSQL; then, with ``cells``, the cohort
    cells from them. Returns the member-period rows written."""
    zone = tenant_zone(tenant_id)
    span = MemberDay.objects.filter(tenant_id=tenant_id).aggregate(lo=Min("day"), hi=Max("day"))
    joins = MemberJourney.objects.filter(tenant_id=tenant_id).aggregate(lo=Min("joined_at"), hi=Max("joined_at"))
    if span["lo"] is None:
        return 0
    lo, hi = span["lo"], span["hi"]
    if joins["lo"] is not None:
        lo, hi = min(lo, local_day(joins["lo"], zone)), max(hi, local_day(joins["hi"], zone))
    ops = connection.ops
    table, days, journeys = (ops.quote_name(m._meta.db_table) for m in (MemberPeriod, MemberDay, MemberJourney))
    written = 0
    for grain in GRAINS:
        starts = [period_start(lo, grain)]
        while starts[-1] <= hi:
            starts.append(period_start(starts[-1] + dt.timedelta(days=7 if grain == "week" else 32), grain))
        day_case = "CASE " + " ".join("WHEN d.day < %s THEN %s" for _ in starts[1:]) + " END"
        day_params = [v for a, b in zip(starts[1:], starts, strict=False) for v in (ops.adapt_datefield_value(a),
                                                                                    ops.adapt_datefield_value(b))]
        join_case = "CASE " + " ".join("WHEN j.joined_at < %s THEN %s" for _ in starts[1:]) + " END"
        join_params = [v for a, b in zip(starts[1:], starts, strict=False) for v in (
            ops.adapt_datetimefield_value(dt.datetime.combine(a, dt.time.min, tzinfo=zone)),
            ops.adapt_datefield_value(b))]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (tenant_id, grain, period, member_id, cohort, facts, active_facts, orders, "  # noqa: S608 (tables from the models, values bound)
                f"gmv_fen) SELECT %s, %s, p.period, p.member_id, {join_case}, p.n, p.a, p.o, p.g FROM ("
                f"SELECT {day_case} AS period, d.member_id AS member_id, COUNT(*) AS n, "
                "SUM(CASE WHEN d.active THEN 1 ELSE 0 END) AS a, SUM(d.orders) AS o, SUM(d.gmv_fen) AS g "
                f"FROM {days} d WHERE d.tenant_id = %s GROUP BY 1, 2) p "
                f"LEFT JOIN {journeys} j ON j.tenant_id = %s AND j.member_id = p.member_id",
                [tenant_id, grain, *join_params, *day_params, tenant_id, tenant_id])
            written += cursor.rowcount
        if cells:
            _write_cells(tenant_id, grain, None)
    return written


def do_fill_cohort_cells(tenant_id: int) -> None:
    """Every cohort cell of a tenant from its member-period rows (migration 0010)."""
    for grain in GRAINS:
        _write_cells(tenant_id, grain, None)


def _insert(model: type[DailyRollup] | type[MemberDay] | type[DailyDistinct], columns: Sequence[str],
            rows: Sequence[tuple[Any, ...]]) -> None:
    """Plain rows, not model instances: ``COPY`` on PostgreSQL, one ``executemany`` elsewhere (the
    ORM's ``bulk_create`` spent most of a day's recomputation preparing parameters field by field)."""
    if not rows:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join(["%s"] * len(columns))
        adapt = connection.ops.adapt_datefield_value
        cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})",  # noqa: S608 (identifiers from the model, values bound)
                           [(r[0], adapt(r[1]), *r[2:]) for r in rows])


def do_refresh(tenant_id: int | None = None, *, max_rounds: int = 20) -> int:
    """Recompute the dirty days (of one tenant, or all). Returns how many day buckets were written.

    Each round takes the dirty rows, deletes them, recomputes the journeys of the members seen on
    those days (a first that moved marks more days dirty, done in the next round), then each day."""
    written = 0
    for _round in range(max_rounds):
        qs = DirtyDay.objects.all() if tenant_id is None else DirtyDay.objects.filter(tenant_id=tenant_id)
        dirty = list(qs.order_by("tenant_id", "day").values_list("pk", "tenant_id", "day")[:1000])
        if not dirty:
            break
        DirtyDay.objects.filter(pk__in=[pk for pk, *_ in dirty]).delete()
        by_tenant: dict[int, list[dt.date]] = defaultdict(list)
        for _pk, tid, day in dirty:
            by_tenant[tid].append(day)
        for tid, days in by_tenant.items():
            members: set[int] = set()
            for day in days:
                members |= _day_members(tid, day)
            moved = do_recompute_journeys(tid, members) - set(days)
            do_mark_dirty(tid, moved)
            for day in days:
                do_write_day(tid, day)
                written += 1
    return written


def do_mark_recent_clicks(*, window: dt.timedelta = dt.timedelta(minutes=3), now: dt.datetime | None = None) -> int:
    """Link clicks are recorded by referrals without a stream event: the days of the clicks of the
    last ``window`` become dirty (the scheduled refresh calls this every minute, the window overlaps)."""
    since = (now or timezone.now()) - window
    marked = 0
    rows = LinkEvent.objects.filter(occurred_at__gte=since).values_list("tenant_id", "occurred_at")
    by_tenant: dict[int, set[dt.date]] = defaultdict(set)
    for tid, at in rows:
        by_tenant[tid].add(local_day(at, tenant_zone(tid)))
    for tid, days in by_tenant.items():
        marked += do_mark_dirty(tid, days)
    return marked


def source_days(tenant_id: int) -> set[dt.date]:
    """Every local day with anything to count."""
    zone = tenant_zone(tenant_id)
    days: set[dt.date] = set()
    for qs, column in ((ActivityEvent.objects.filter(tenant_id=tenant_id), "occurred_at"),
                       (Order.objects.filter(tenant_id=tenant_id, paid_at__isnull=False), "paid_at"),
                       (Refund.objects.filter(tenant_id=tenant_id, completed_at__isnull=False), "completed_at"),
                       (LinkEvent.objects.filter(tenant_id=tenant_id), "occurred_at"),
                       (Commission.objects.filter(tenant_id=tenant_id), "paid_at")):
        bounds = qs.aggregate(lo=Min(column), hi=Max(column))
        if bounds["lo"] is None:
            continue
        d, last = local_day(bounds["lo"], zone), local_day(bounds["hi"], zone)
        while d <= last:
            days.add(d)
            d += dt.timedelta(days=1)
    return days


def do_rebuild(tenant_id: int) -> int:
    """Drop and recompute every journey and day of a tenant. Returns the number of days written.

    The journeys are recomputed in one pass over the sources; the tenant's rollups and member-day rows
    are deleted with one statement each, then each day is computed from the sources with every journey
    and invite link read once (:class:`Known`) and written by ``COPY``/``executemany``; the member-period
    and member-summary rows are written last, set-based, from the member-day rows; then the
    members-present count. Not one transaction: a reader during a rebuild sees the days not written yet as empty."""
    MemberJourney.objects.filter(tenant_id=tenant_id).delete()
    MemberPeriod.objects.filter(tenant_id=tenant_id).delete()
    MemberSummary.objects.filter(tenant_id=tenant_id).delete()
    CohortCell.objects.filter(tenant_id=tenant_id).delete()
    do_recompute_journeys(tenant_id, None)
    days = source_days(tenant_id)
    DailyRollup.objects.filter(tenant_id=tenant_id).delete()  # one statement each, not one per day
    MemberDay.objects.filter(tenant_id=tenant_id).delete()
    DailyDistinct.objects.filter(tenant_id=tenant_id).delete()
    known = Known.load(tenant_id)
    for day in sorted(days):
        do_write_day(tenant_id, day, periods=False, known=known, empty=True)
    do_fill_member_periods(tenant_id)
    do_fill_member_summaries(tenant_id)
    DirtyDay.objects.filter(tenant_id=tenant_id).delete()
    do_rebuild_presence(tenant_id)
    return len(days)
