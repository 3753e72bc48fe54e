"""The activity event table partitioned by month (PostgreSQL): ingest and dashboard reads at scale.

    python bench/partitions.py --db postgres://postgres@127.0.0.1:5432/shequn_bench_part --events 10000000

Generates ``--events`` events spread over ``--months`` monthly partitions in SQL (``generate_series``,
1M rows per statement, their de-duplication keys included), then measures, with the load average:
ingest through ``do_ingest`` into the current month (fresh events, batches of 1,000 and 5,000), the
analytics rollup of one day (``analytics.services.compute_day``: the read the dashboards are built
from), a community's daily message counts for the last 30 days, a member's last 50 events, and how
many partitions each plan touches (partition pruning)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import time

from _django import setup

CHUNK = 1_000_000


def timed(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--max-seconds", type=float, default=0, help="stop generating after this long (0: never)")
    args = parser.parse_args()
    setup(args.db, "shequn_bench_part")

    from django.db import connection
    from django.db.models import Count
    from django.db.models.functions import TruncDate
    from django.utils import timezone

    from shequn.activity import partitions
    from shequn.activity.models import ActivityEvent
    from shequn.activity.services import do_ingest
    from shequn.analytics.services import compute_day
    from shequn.communities.models import ChatGroup, Community
    from shequn.core.models import Tenant
    from shequn.members.models import Member

    tenant = Tenant.objects.create(slug="bench", name="bench")
    community = Community.objects.create(tenant=tenant, name="c")
    groups = [ChatGroup.objects.create(tenant=tenant, community=community, platform="matrix", external_id=f"!g{i}",
                                       name=f"g{i}") for i in range(20)]
    now = timezone.now()
    members = Member.objects.bulk_create([Member(tenant=tenant, display_name=f"m{i}", first_seen_at=now)
                                          for i in range(args.members)], batch_size=2000)
    m0, g0 = members[0].pk, groups[0].pk
    month = partitions.month_start(now.date())
    for _ in range(args.months):
        month = partitions.month_start(month - dt.timedelta(days=1))
        partitions.do_create_partitions(0, today=month)
    span = (now.date() - month).days * 86400
    print(f"partitions: {len(partitions.partition_months())}, span {span // 86400} days")

    t0 = time.perf_counter()
    with connection.cursor() as cur:
        for start in range(1, args.events + 1, CHUNK):
            stop = min(args.events, start + CHUNK - 1)
            c0 = time.perf_counter()
            cur.execute(
                "WITH g AS MATERIALIZED (SELECT g, now() - make_interval(secs => (g::bigint * 7919) %% %s) AS t "
                "FROM generate_series(%s::bigint, %s::bigint) AS g), "
                "k AS (INSERT INTO activity_eventkey (tenant_id, platform, platform_event_id, occurred_at) "
                "SELECT %s, 'matrix', 'gen-' || g, t FROM g) "
                "INSERT INTO activity_activityevent (tenant_id, member_id, community_id, group_id, platform, "
                "platform_event_id, kind, occurred_at, received_at, payload) "
                "SELECT %s, %s + g %% %s, %s, %s + g %% 20, 'matrix', 'gen-' || g, "
                "CASE WHEN g %% 5 = 0 THEN 'reaction' ELSE 'message' END, t, t, "
                "'{\"text\": \"周末一起自驾吗?周末一起自驾吗?\"}'::jsonb FROM g",
                [span, start, stop, tenant.pk, tenant.pk, m0, args.members, community.pk, g0])
            rate = (stop - start + 1) / (time.perf_counter() - c0)
            print(f"  generated {stop:>11,} events ({rate:,.0f}/s, load {os.getloadavg()[0]:.1f})", flush=True)
            if args.max_seconds and time.perf_counter() - t0 > args.max_seconds:
                print(f"  stopped after {args.max_seconds:.0f} s (--max-seconds)")
                break
        gen = time.perf_counter() - t0
        cur.execute("ANALYZE activity_activityevent")
        cur.execute("ANALYZE activity_eventkey")
        cur.execute("SELECT pg_size_pretty(pg_total_relation_size('activity_eventkey')), "
                    "(SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits "
                    "WHERE inhparent = 'activity_activityevent'::regclass)")
        key_size, table_size = cur.fetchone()
    total = ActivityEvent.objects.count()
    print(f"events: {total:,} in {gen:.0f} s ({total / gen:,.0f}/s); table {table_size}, keys {key_size}")

    for batch in (1000, 5000):
        n = 30_000
        evs = [{"platform": "matrix", "event_id": f"b{batch}-{i}", "kind": "message", "member_id": m0 + i % 500,
                "group": "!g1", "occurred_at": now - dt.timedelta(seconds=i), "payload": {"text": "你好"}}
               for i in range(n)]
        t0 = time.perf_counter()
        stored = sum(do_ingest(tenant.pk, evs[i:i + batch]).stored for i in range(0, n, batch))
        secs = time.perf_counter() - t0
        print(f"ingest batch {batch}: {stored / secs:,.0f} events/s ({stored} stored, load {os.getloadavg()[0]:.1f})")
        t0 = time.perf_counter()
        dup = sum(do_ingest(tenant.pk, evs[i:i + batch]).duplicates for i in range(0, n, batch))
        print(f"  replay: {dup / (time.perf_counter() - t0):,.0f} events/s (all duplicates)")

    day = (now - dt.timedelta(days=100)).date()
    ms = timed(lambda: compute_day(tenant.pk, day))
    print(f"rollup of one day (compute_day, ~{total // max(1, span // 86400):,} events): {ms:.0f} ms")
    since = now - dt.timedelta(days=30)
    q = (ActivityEvent.objects.filter(tenant=tenant, community=community, occurred_at__gte=since,
                                      occurred_at__lt=now, kind="message")
         .annotate(day=TruncDate("occurred_at")).values("day").annotate(n=Count("id")))
    ms = timed(lambda: list(q.all()), repeat=3)
    print(f"community daily messages, last 30 days: {ms:.0f} ms")
    mq = ActivityEvent.objects.filter(tenant=tenant, member_id=m0 + 7).order_by("-occurred_at")[:50]
    ms = timed(lambda: list(mq.all()))
    print(f"member's last 50 events: {ms:.1f} ms")
    with connection.cursor() as cur:
        sql, params = q.query.sql_with_params()
        cur.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r[0] for r in cur.fetchall())
    touched = len(set(re.findall(r"activity_activityevent_(p\d{6}|default)\b", plan)))
    print(f"partitions scanned by the 30-day query: {touched} of {len(partitions.partition_months()) + 1}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
