"""The members' lifetime rows (:class:`~shequn.analytics.models.MemberSummary`): moved by each day's
change of the member-day facts (``services.do_write_day`` calls :func:`apply_member_summaries` in the
day's transaction) and filled set-based by the rebuild and migration 0011
(:func:`do_fill_member_summaries`)."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.db.models import OuterRef, Subquery

from .models import MemberDay, MemberSummary


def apply_member_summaries(tenant_id: int, day: dt.date, old: dict[int, list[int]], new: dict[int, list[int]]
                           ) -> None:
    """Move the members' lifetime rows (:class:`MemberSummary`) by the change of one day: ``old`` and
    ``new`` are the day's per-member sums before and after (rows, active rows, orders, GMV, as
    :func:`_day_sums`). A day counts once in ``days`` / ``active_days`` whatever its rows; the last
    order day only moves forward here, except for a member whose orders left this very day (their
    last order day is read again from their member-day rows); rows left with no day are deleted."""
    rows, lost = [], []
    adapt = connection.ops.adapt_datefield_value
    for mid in set(old) | set(new):
        a, b = old.get(mid, [0, 0, 0, 0]), new.get(mid, [0, 0, 0, 0])
        if a == b:
            continue
        rows.append((tenant_id, mid, (b[0] > 0) - (a[0] > 0), (b[1] > 0) - (a[1] > 0), b[2] - a[2], b[3] - a[3],
                     adapt(day) if b[2] > 0 else None))
        if a[2] > 0 and b[2] <= 0:
            lost.append(mid)
    if not rows:
        return
    table = connection.ops.quote_name(MemberSummary._meta.db_table)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (tenant_id, member_id, days, active_days, orders, gmv_fen, last_order_day) "  # noqa: S608 (the model's table)
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tenant_id, member_id) DO UPDATE "
            f"SET days = {table}.days + EXCLUDED.days, active_days = {table}.active_days + EXCLUDED.active_days, "
            f"orders = {table}.orders + EXCLUDED.orders, gmv_fen = {table}.gmv_fen + EXCLUDED.gmv_fen, "
            f"last_order_day = CASE WHEN EXCLUDED.last_order_day IS NOT NULL AND ({table}.last_order_day IS NULL "
            f"OR {table}.last_order_day < EXCLUDED.last_order_day) THEN EXCLUDED.last_order_day "
            f"ELSE {table}.last_order_day END", rows)
    summaries = MemberSummary.objects.filter(tenant_id=tenant_id)
    for i in range(0, len(lost), 500):
        summaries.filter(member_id__in=lost[i:i + 500], last_order_day=day).update(last_order_day=Subquery(
            MemberDay.objects.filter(tenant_id=tenant_id, member_id=OuterRef("member_id"), orders__gt=0)
            .order_by("-day").values("day")[:1]))
    gone = sorted(m for m in old if m not in new)
    for i in range(0, len(gone), 500):
        summaries.filter(member_id__in=gone[i:i + 500], days__lte=0).delete()


def do_fill_member_summaries(tenant_id: int) -> int:
    """Write a tenant's :class:`MemberSummary` rows from its member-day rows in one grouped ``INSERT …
    SELECT`` (the rebuild's fill step and migration 0011; the table must be empty for the tenant).
    Returns the rows written."""
    table, days = (connection.ops.quote_name(m._meta.db_table) for m in (MemberSummary, MemberDay))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (tenant_id, member_id, days, active_days, orders, gmv_fen, last_order_day) "  # noqa: S608 (the models' tables)
            "SELECT tenant_id, member_id, COUNT(*), SUM(CASE WHEN a > 0 THEN 1 ELSE 0 END), SUM(o), SUM(g), "
            "MAX(CASE WHEN o > 0 THEN day END) FROM (SELECT tenant_id, member_id, day, "
            "SUM(CASE WHEN active THEN 1 ELSE 0 END) AS a, SUM(orders) AS o, SUM(gmv_fen) AS g "
            f"FROM {days} WHERE tenant_id = %s GROUP BY tenant_id, member_id, day) d GROUP BY tenant_id, member_id",
            [tenant_id])
        return int(cursor.rowcount)
