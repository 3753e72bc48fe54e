"""The community boards' members-present count, stored (``PresenceStay``, ``CommunityPresenceDay``).

The board's member series is "distinct members present at the end of each local day": a member is
present at the cut ``c`` (midnight after day D, tenant's zone) when one of their membership rows of
the community has ``joined_at < c <= left_at`` (or is open). Counted from the membership table it
read every stay of the window (0.2 s at 100k members); stored, the board reads one sum and the
window's rows.

* A stay covers the days ``local(joined_at) <= D < local(left_at)`` (``joined_at < c`` ⇔ the join's
  local day is D or earlier; ``c <= left_at`` ⇔ the leave's local day is after D). A member's stays of
  a community, as day intervals, merged (overlapping or touching ones become one), are their
  ``PresenceStay`` rows; each merged interval adds 1 to ``entered`` on its first day and to
  ``exited`` on its end day.
* :func:`do_update_presence` is the one writer. Communities calls it (through its membership
  listeners, declared in :mod:`shequn.wiring`) inside every membership write with the (member,
  community) pairs written. It recomputes those pairs' intervals from the membership rows, compares
  them with the stored ``PresenceStay`` rows (the "before"), and applies the difference to the day
  counts — so a back-dated join, a leave, a re-join, a second group or a merge each move exactly
  the days they change. Concurrent writers of one member are serialised by a transaction-scoped
  advisory lock on PostgreSQL (SQLite serialises writers).
* :func:`do_rebuild_presence` recomputes a tenant's rows from every membership (``shequn analytics
  rebuild``, and migration 0005 for the existing data).

Invariant (tested with hypothesis after random joins, leaves, re-joins and back-dated rows through
the services): :func:`members_present` = ``selectors.members_per_day`` on the membership table."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Q, Sum

from shequn.communities.models import Membership
from shequn.core.models import Tenant

from .models import CommunityPresenceDay, PresenceStay

Interval = tuple[dt.date, dt.date | None]


def tenant_zone(tenant_id: int) -> ZoneInfo:
    return ZoneInfo(Tenant.objects.filter(pk=tenant_id).values_list("time_zone", flat=True).first()
                    or "Asia/Shanghai")


def day_intervals(stays: Iterable[tuple[dt.datetime, dt.datetime | None]], zone: ZoneInfo) -> list[Interval]:
    """A member's stays of one community as merged local-day intervals ``[first, end)``."""
    days: list[Interval] = []
    for joined, left in stays:
        first = joined.astimezone(zone).date()
        end = None if left is None else left.astimezone(zone).date()
        if end is None or end > first:
            days.append((first, end))
    days.sort(key=lambda r: r[0])
    merged: list[Interval] = []
    for first, end in days:
        if merged and (merged[-1][1] is None or first <= merged[-1][1]):
            last_end = merged[-1][1]
            if last_end is not None and (end is None or end > last_end):
                merged[-1] = (merged[-1][0], end)
            continue
        merged.append((first, end))
    return merged


def _add(deltas: dict[tuple[int, dt.date], list[int]], community_id: int, intervals: Iterable[Interval],
         sign: int) -> None:
    for first, end in intervals:
        deltas[(community_id, first)][0] += sign
        if end is not None:
            deltas[(community_id, end)][1] += sign


def _lock_members(tenant_id: int, member_ids: Sequence[int]) -> None:
    if connection.vendor != "postgresql":
        return  # SQLite: one writer at a time already
    keys = [f"analytics.presence:{tenant_id}:{m}" for m in sorted(member_ids)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
                       "FROM (SELECT unnest(%s::text[]) AS k ORDER BY 1) s", [keys])


def _apply(tenant_id: int, deltas: dict[tuple[int, dt.date], list[int]]) -> None:
    rows = [(tenant_id, c, d, e, x) for (c, d), (e, x) in sorted(deltas.items()) if e or x]
    if not rows:
        return
    table = connection.ops.quote_name(CommunityPresenceDay._meta.db_table)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (tenant_id, community_id, day, entered, exited) VALUES (%s, %s, %s, %s, %s) "  # noqa: S608 (the model's table)
            f"ON CONFLICT (tenant_id, community_id, day) DO UPDATE SET entered = {table}.entered + EXCLUDED.entered, "
            f"exited = {table}.exited + EXCLUDED.exited",
            [(t, c, connection.ops.adapt_datefield_value(d), e, x) for t, c, d, e, x in rows])
    touched = Q()
    for (c, d) in deltas:
        touched |= Q(community_id=c, day=d)
    CommunityPresenceDay.objects.filter(touched, tenant_id=tenant_id, entered=0, exited=0).delete()


def do_update_presence(tenant_id: int, pairs: Sequence[tuple[int, int]]) -> int:
    """Recompute the presence of these (member, community) pairs from their membership rows and move
    the day counts by the difference (the membership listener of analytics). Returns how many pairs
    changed."""
    wanted = sorted({(m, c) for m, c in pairs if m and c})
    if not wanted:
        return 0
    zone = tenant_zone(tenant_id)
    changed = 0
    with transaction.atomic():
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            members = sorted({m for m, _c in chunk})
            communities = sorted({c for _m, c in chunk})
            keep = set(chunk)
            _lock_members(tenant_id, members)
            stays: dict[tuple[int, int], list[tuple[dt.datetime, dt.datetime | None]]] = defaultdict(list)
            for m, c, joined, left in Membership.objects.filter(
                    tenant_id=tenant_id, member_id__in=members, community_id__in=communities).values_list(
                    "member_id", "community_id", "joined_at", "left_at"):
                if (m, c) in keep:
                    stays[(m, c)].append((joined, left))
            before: dict[tuple[int, int], list[Interval]] = defaultdict(list)
            for m, c, first, end in PresenceStay.objects.filter(
                    tenant_id=tenant_id, member_id__in=members, community_id__in=communities).values_list(
                    "member_id", "community_id", "first_day", "end_day").order_by("first_day"):
                if (m, c) in keep:
                    before[(m, c)].append((first, end))
            deltas: dict[tuple[int, dt.date], list[int]] = defaultdict(lambda: [0, 0])
            gone = Q()
            new_rows = []
            for m, c in chunk:
                after = day_intervals(stays.get((m, c), []), zone)
                old = before.get((m, c), [])
                if after == old:
                    continue
                changed += 1
                _add(deltas, c, old, -1)
                _add(deltas, c, after, +1)
                gone |= Q(member_id=m, community_id=c)
                new_rows += [PresenceStay(tenant_id=tenant_id, member_id=m, community_id=c, first_day=f, end_day=e)
                             for f, e in after]
            if gone:
                PresenceStay.objects.filter(gone, tenant_id=tenant_id).delete()
                PresenceStay.objects.bulk_create(new_rows)
                _apply(tenant_id, deltas)
    return changed


def on_memberships_changed(tenant_id: int, pairs: Sequence[tuple[int, int]]) -> None:
    """Communities' membership listener (declared in :mod:`shequn.wiring`)."""
    do_update_presence(tenant_id, pairs)


def rebuild_rows(memberships: Iterable[tuple[int, int, dt.datetime, dt.datetime | None]], zone: ZoneInfo
                 ) -> tuple[list[tuple[int, int, dt.date, dt.date | None]], dict[tuple[int, dt.date], list[int]]]:
    """From every (member, community, joined_at, left_at) of a tenant: the stays and the day counts."""
    by_pair: dict[tuple[int, int], list[tuple[dt.datetime, dt.datetime | None]]] = defaultdict(list)
    for m, c, joined, left in memberships:
        by_pair[(m, c)].append((joined, left))
    stays: list[tuple[int, int, dt.date, dt.date | None]] = []
    deltas: dict[tuple[int, dt.date], list[int]] = defaultdict(lambda: [0, 0])
    for (m, c), rows in by_pair.items():
        intervals = day_intervals(rows, zone)
        _add(deltas, c, intervals, +1)
        stays += [(m, c, f, e) for f, e in intervals]
    return stays, deltas


def do_rebuild_presence(tenant_id: int) -> int:
    """Replace a tenant's presence rows with a computation from every membership row. Returns the
    number of stays."""
    zone = tenant_zone(tenant_id)
    rows = Membership.objects.filter(tenant_id=tenant_id).values_list("member_id", "community_id", "joined_at",
                                                                      "left_at").iterator(chunk_size=20_000)
    stays, deltas = rebuild_rows(rows, zone)
    with transaction.atomic():
        PresenceStay.objects.filter(tenant_id=tenant_id).delete()
        CommunityPresenceDay.objects.filter(tenant_id=tenant_id).delete()
        PresenceStay.objects.bulk_create([
            PresenceStay(tenant_id=tenant_id, member_id=m, community_id=c, first_day=f, end_day=e)
            for m, c, f, e in stays], batch_size=5000)
        CommunityPresenceDay.objects.bulk_create([
            CommunityPresenceDay(tenant_id=tenant_id, community_id=c, day=d, entered=e, exited=x)
            for (c, d), (e, x) in sorted(deltas.items()) if e or x], batch_size=5000)
    return len(stays)


def members_present(tenant_id: int, community_id: int, dates: Sequence[dt.date]) -> list[int]:
    """Distinct members present at the end of each of ``dates`` (consecutive days, ascending): one sum
    over the rows before the window and the window's rows (at most one per day)."""
    rows = CommunityPresenceDay.objects.filter(tenant_id=tenant_id, community_id=community_id)
    before: dict[str, Any] = rows.filter(day__lt=dates[0]).aggregate(e=Sum("entered"), x=Sum("exited"))
    running = (before["e"] or 0) - (before["x"] or 0)
    change = {d: e - x for d, e, x in rows.filter(day__gte=dates[0], day__lte=dates[-1]).values_list(
        "day", "entered", "exited")}
    out = []
    for d in dates:
        running += change.get(d, 0)
        out.append(running)
    return out
