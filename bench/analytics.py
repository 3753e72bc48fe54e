"""Analytics benchmark: ingest-side cost of the rollup subscriptions, full rebuild time, and the
dashboard / API reads (p95) on a synthetic tenant with N members, E events and O orders over 90 days.

    PYTHONPATH=src python bench/analytics.py --db sqlite --members 5000 --events 200000 --orders 20000
    PYTHONPATH=src python bench/analytics.py --db postgres://postgres@127.0.0.1:5432/shequn_bench_analytics ...

Events and orders are bulk-inserted directly (this measures analytics, not ingest); the subscription
cost is measured by handing stored batches of 1,000 events to the consumer, as dispatch does."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _django import p95, setup

KINDS = (("message", 0.70), ("reaction", 0.85), ("check_in", 0.90), ("join", 0.96), ("leave", 1.0))
AMOUNTS = (990, 1990, 5900, 12900, 19900)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="sqlite")
    ap.add_argument("--members", type=int, default=5000)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--orders", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--invited", type=float, default=0.5, help="share of members bound to an earlier member")
    ap.add_argument("--keep", action="store_true",
                    help="keep the database (a postgres URL, or --db sqlite:DIR) and its data set if one is loaded")
    ap.add_argument("--load-only", action="store_true", help="load the data set, then stop")
    ap.add_argument("--http", type=int, default=0, metavar="N",
                    help="then N requests per API read through `shequn serve` (gunicorn) from an outside client")
    ap.add_argument("--skip-rebuild", action="store_true",
                    help="with --keep: measure the reads on the rows an earlier run built (sections 2–3c skipped)")
    ap.add_argument("--skip-ingest-cost", action="store_true", help="skip section 1 (the subscriptions' cost)")
    args = ap.parse_args()
    label = setup(args.db, "shequn_bench_analytics", keep=args.keep)

    from django.utils import timezone

    from shequn.activity.models import ActivityEvent
    from shequn.analytics import figures, health, reach, segments, services
    from shequn.analytics.models import DailyRollup, MemberDay
    from shequn.commerce.events import OrderEventData
    from shequn.commerce.models import Order
    from shequn.communities.models import Community
    from shequn.core.models import Tenant
    from shequn.members.models import Member
    from shequn.referrals.models import InviteLink, ReferralBinding

    rng = random.Random(15)
    now = timezone.now()
    tenant = Tenant.objects.filter(slug="bench").first()
    if tenant is not None and args.keep:  # --keep: the data set loaded by an earlier run
        comms = list(Community.objects.filter(tenant=tenant).order_by("pk"))
        member_ids = list(Member.objects.filter(tenant=tenant).order_by("pk").values_list("pk", flat=True))
        loaded = "kept from an earlier run"
        bindings_n = ReferralBinding.objects.filter(tenant=tenant).count()
        sharers_n = InviteLink.objects.filter(tenant=tenant, member__isnull=False).count()
    else:
        t0 = time.perf_counter()
        comms, member_ids, bindings_n, sharers_n = load(args, rng, now)
        tenant = Tenant.objects.get(slug="bench")
        loaded = f"data loaded in {time.perf_counter() - t0:.1f} s"
    print(f"# analytics bench — {label}: {args.members:,} members, {args.events:,} events, {args.orders:,} orders "
          f"over 90 days ({loaded}); load {os.getloadavg()[0]:.2f}", flush=True)
    if args.load_only:
        return

    # 1. the subscriptions' cost per ingested event: dispatch hands stored batches of 1,000
    ids = [] if args.skip_ingest_cost else list(
        ActivityEvent.objects.filter(tenant=tenant).order_by("?").values_list("pk", flat=True)[:20_000])
    per_event = []
    for k in range(0, len(ids), 1000):
        events = list(ActivityEvent.objects.filter(pk__in=ids[k:k + 1000]))
        t = time.perf_counter()
        services.on_activity(tenant.pk, events)
        per_event.append((time.perf_counter() - t) / len(events))
    order_ids = [] if args.skip_ingest_cost else list(
        Order.objects.filter(tenant=tenant).values_list("pk", "member_id", "paid_fen", "paid_at")[:1000])
    t = time.perf_counter()
    for n, (oid, mid, fen, paid_at) in enumerate(order_ids):
        services.on_order_event(OrderEventData(tenant_id=tenant.pk, event_id=n, kind="paid", order_id=oid,
                                               member_id=mid, amount_fen=fen, occurred_at=paid_at))
    per_order = (time.perf_counter() - t) / max(1, len(order_ids))
    if per_event:
        print(f"activity consumer: {statistics.median(per_event) * 1e6:.1f} µs per event (median of batches of "
              f"1,000); order listener: {per_order * 1e3:.2f} ms per order event")

    # 2. full rebuild
    if args.skip_rebuild:
        health.do_refresh_figures(tenant.pk)  # stored rows older than STALE_AFTER are not read
        t = time.perf_counter()
        stored = figures.do_refresh_formula(tenant.pk)
        print(f"formula figures refresh ({stored} rows): {(time.perf_counter() - t) * 1e3:.0f} ms", flush=True)
        t = time.perf_counter()
        stored = segments.do_refresh_habits(tenant.pk)
        print(f"habits refresh ({stored:,} members): {(time.perf_counter() - t) * 1e3:.0f} ms", flush=True)
        vacuum_new_tables()
        read_all(args, tenant, comms, member_ids, bindings_n, sharers_n)
        return
    t = time.perf_counter()
    days = services.do_rebuild(tenant.pk)
    rebuild = time.perf_counter() - t
    n_rollups = DailyRollup.objects.filter(tenant=tenant).count()
    n_facts = MemberDay.objects.filter(tenant=tenant).count()
    print(f"full rebuild: {rebuild:.1f} s for {days} days ({n_rollups:,} rollup rows, {n_facts:,} member-day rows)")

    # 3. refreshing today's bucket (what the minute task does while events flow)
    services.do_mark_dirty(tenant.pk, [services.local_day(now, services.tenant_zone(tenant.pk))])
    t = time.perf_counter()
    services.do_refresh(tenant.pk)
    print(f"refresh of one dirty day: {(time.perf_counter() - t) * 1e3:.0f} ms")

    # 3b. the referral forest's nodes (what analytics.tasks.refresh_reach does every 5 minutes)
    t = time.perf_counter()
    nodes = reach.do_refresh_reach(tenant.pk)
    print(f"reach refresh (two recursive CTEs over the bindings, {nodes:,} nodes): "
          f"{(time.perf_counter() - t) * 1e3:.0f} ms")

    # 3c. the stored health figures (what analytics.tasks.refresh_health_figures does every 5 minutes)
    t = time.perf_counter()
    stored = health.do_refresh_figures(tenant.pk)
    print(f"health figures refresh ({stored} rows: groups and communities × {len(health.STORED_WINDOWS)} windows): "
          f"{(time.perf_counter() - t) * 1e3:.0f} ms")

    # 3d. the stored formula figures (what analytics.tasks.refresh_formula does every 5 minutes)
    t = time.perf_counter()
    stored = figures.do_refresh_formula(tenant.pk)
    print(f"formula figures refresh ({stored} rows: tenant-wide and per community, campaign, channel × 2 "
          f"periods): {(time.perf_counter() - t) * 1e3:.0f} ms", flush=True)

    # 3e. the stored habits (what analytics.tasks.refresh_habits does every 15 minutes)
    t = time.perf_counter()
    stored = segments.do_refresh_habits(tenant.pk)
    print(f"habits refresh ({stored:,} members: active hours and preferred group over 30 days): "
          f"{(time.perf_counter() - t) * 1e3:.0f} ms", flush=True)
    vacuum_new_tables()
    read_all(args, tenant, comms, member_ids, bindings_n, sharers_n)


#: the saved segments the bench reads (created once per data set): the two rules of the issue
BENCH_SEGMENTS = {"bench: bought 2+, R ≥ 4": {"min_orders": 2, "min_recency": 4},
                  "bench: active 30+ days, never bought": {"min_active_days": 30, "max_orders": 0}}


def bench_segments(tenant: Any) -> list[Any]:
    from shequn.analytics import segments
    from shequn.analytics.models import Segment
    from shequn.core.permissions import Principal

    out = []
    for name, rule in BENCH_SEGMENTS.items():
        seg = Segment.objects.filter(tenant=tenant, name=name).first()
        out.append(seg or segments.do_save_segment(Principal.system(tenant.pk), name, rule))
    return out


def console_client(tenant: Any) -> Any:
    """A Django test client logged in as an owner of the bench tenant (the console pages)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from shequn.core.services import do_create_operator

    staff = do_create_operator(tenant=tenant, username="bench-owner", password="bench-owner-pw-15")
    client = Client()
    client.force_login(get_user_model().objects.get(pk=staff.user_id))
    return client


def vacuum_new_tables() -> None:
    """PostgreSQL: ``VACUUM ANALYZE`` the tables written just now by a migration's fill or a refresh
    (members' lifetime rows and habits), as autovacuum does on a live database (it is off on the
    bench server): without the visibility map an index-only scan visits the heap for every entry,
    which made the RFM cut points 8x slower."""
    from django.db import connection

    from shequn.analytics.models import MemberHabit, MemberSummary

    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            for model in (MemberSummary, MemberHabit):
                cur.execute(f"VACUUM ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


def read_all(args: Any, tenant: Any, comms: list[Any], member_ids: list[int], bindings_n: int, sharers_n: int) -> None:
    from shequn.analytics import health, reach, segments, selectors
    from shequn.communities.models import ChatGroup

    seg_rich, seg_idle = bench_segments(tenant)
    group_id = ChatGroup.objects.filter(tenant=tenant).order_by("pk").values_list("pk", flat=True)[0]
    client = console_client(tenant)

    def page(url: str, data: dict[str, Any] | None = None) -> None:
        resp = client.post(url, data) if data is not None else client.get(url)
        assert resp.status_code == 200, (url, resp.status_code)

    # 4. reads (the stored health figures first: they are read as stored while < STALE_AFTER old)
    reads = {
        "health figures by group (7 d, stored)": lambda: health.health_figures(tenant.pk, by="group"),
        "health figures by community (7 d, stored)": lambda: health.health_figures(tenant.pk, by="community"),
        "health figures by group (30 d, stored)": lambda: health.health_figures(tenant.pk, by="group", days=30),
        "health figures by group (90 d, stored)": lambda: health.health_figures(tenant.pk, by="group", days=90),
        "formula (30 d vs 30 d, stored)": lambda: selectors.formula_panel(tenant.pk, days=30),
        "formula (30 d vs 30 d, live: the read before)": lambda: selectors.formula_panel(
            tenant.pk, days=30, end=selectors.today(tenant.pk)),
        "formula, one community": lambda: selectors.formula_panel(
            tenant.pk, days=30, scope=selectors.Scope(community_id=comms[0].pk)),
        "trend (90 d)": lambda: selectors.sales_trend(tenant.pk, days=90),
        "breakdown by campaign": lambda: selectors.breakdown(tenant.pk, "campaign", days=30),
        "community board (90 d)": lambda: selectors.community_dashboard(tenant.pk, comms[0].pk, days=90,
                                                                         tz=selectors.tenant_tz(tenant.pk)),
        "health alerts": lambda: selectors.health_alerts(tenant.pk),
        "funnel by channel": lambda: selectors.funnel(tenant.pk, by="channel"),
        "cohorts (monthly)": lambda: selectors.cohorts(tenant.pk, grain="month"),
        "health figures by group (7 d, live: the read before)": lambda: health.live_health_figures(
            tenant.pk, by="group"),
        "health figures by community (7 d, live: the read before)": lambda: health.live_health_figures(
            tenant.pk, by="community"),
        "health rules (all six)": lambda: health.firing(tenant.pk),
        "health evaluation (notices)": lambda: health.do_evaluate(tenant.pk),
        "reach summary (ReachNode)": lambda: reach.summary(tenant.pk),
        "top referrers, first page (ReachNode)": lambda: reach.top_referrers(tenant.pk, limit=20),
        "K-factor by campaign": lambda: reach.kfactor_by_campaign(tenant.pk),
        "one member's network (live CTE)": lambda: reach.member_reach(tenant.pk, member_ids[0]),
        "cohorts (weekly)": lambda: selectors.cohorts(tenant.pk, grain="week", periods=12),
        "breakdown by community": lambda: selectors.breakdown(tenant.pk, "community", days=30),
        "segment ids: bought 2+, R ≥ 4 (audiences, grants)": lambda: segments.segment_member_ids(
            tenant.pk, segments.Rule(min_orders=2, min_recency=4)),
        "segment ids: active 30+ days, never bought": lambda: segments.segment_member_ids(
            tenant.pk, segments.Rule(min_active_days=30, max_orders=0)),
        "segment count: bought 2+, R ≥ 4": lambda: segments.segment_count(
            tenant.pk, segments.Rule(min_orders=2, min_recency=4)),
        "segment count: active 30+ days, never bought": lambda: segments.segment_count(
            tenant.pk, segments.Rule(min_active_days=30, max_orders=0)),
        "count_by_segment (both saved segments)": lambda: segments.count_by_segment(
            tenant.pk, [seg_rich.pk, seg_idle.pk]),
        "segment members, first page of 50": lambda: segments.segment_members(
            tenant.pk, seg_rich.pk, limit=50),
        "SOP audience (members registry)": lambda: segments.audience_member_ids(tenant.pk, seg_idle.pk),
        "RFM scores of every buyer": lambda: segments.rfm_scores(tenant.pk),
        "segment habits: active 20–23 h (30 d of events)": lambda: segments.segment_count(
            tenant.pk, segments.Rule(active_hour_from=20, active_hour_to=23)),
        "segment habits: preferred group (30 d of events)": lambda: segments.segment_count(
            tenant.pk, segments.Rule(preferred_group_id=group_id)),
        "console: home dashboard (alerts)": lambda: page("/console/"),
        "console: segment list (live counts)": lambda: page("/console/shequn/analytics/segments/"),
        "console: segment builder (count)": lambda: page(f"/console/shequn/analytics/segments/{seg_rich.pk}/"),
        "console: builder live count (htmx)": lambda: page("/console/shequn/analytics/segments/count/",
                                                           {"min_active_days": "30", "max_orders": "0"}),
    }
    print(f"(invite forest: {bindings_n:,} bindings, {sharers_n:,} sharers)")
    print(f"load {os.getloadavg()[0]:.2f}\n| read | p50 ms | p95 ms |\n|---|---|---|", flush=True)
    for name, fn in reads.items():
        if name.startswith("console:"):
            fn()  # the process's first console render loads templates and catalogs (15 s once)
        times = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
        print(f"| {name} | {statistics.median(times):.0f} | {p95(times):.0f} |", flush=True)
    if args.http:
        http_reads(tenant, comms[0], member_ids[0], args.http, segments=(seg_rich, seg_idle),
                   session=client.cookies["sessionid"].value)


def http_reads(tenant: Any, community: Any, member_id: int, n: int, *, segments: tuple[Any, ...] = (),
               session: str = "") -> None:
    """Every analytics API read as another system asks for it: ``shequn serve`` (2 gunicorn processes)
    on this database, timed from this process with ``http.client`` (a new connection per request, an
    API key), after one warm-up request per path."""
    import http.client
    import signal
    import socket
    import subprocess

    from shequn.core.permissions import Principal
    from shequn.core.services import do_create_api_key

    _key, secret = do_create_api_key(Principal.system(tenant.pk), name="bench-http", scopes=["*"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    web = subprocess.Popen([sys.executable, "-m", "shequn.cli", "serve", "--port", str(port), "--workers", "2",
                            "--no-control-socket"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        def get(path: str) -> tuple[int, float]:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            method, path = ("POST", path.removeprefix("POST ")) if path.startswith("POST ") else ("GET", path)
            body = None
            if path.startswith("/console/"):  # the staff session of the harness's client
                headers = {"Cookie": f"sessionid={session}"}
            else:
                headers = {"Authorization": f"Bearer {secret}"}
            if method == "POST":  # a JSON body after "?" (no Idempotency-Key: a plain read)
                path, _q, body = path.partition("?")
                headers["Content-Type"] = "application/json"
            start = time.perf_counter()
            c.request(method, path, body=body, headers=headers)
            resp = c.getresponse()
            answer = resp.read()
            c.close()
            ms = (time.perf_counter() - start) * 1000
            if resp.status >= 400 and path != "/static/none":
                print(f"{method} {path}: {resp.status} {answer[:300]!r}", flush=True)
            return resp.status, ms

        for _ in range(600):
            try:
                get("/static/none")
                break
            except OSError:
                time.sleep(0.1)
        api = "/api/v1/analytics"
        paths = [f"{api}/formula?days=30", f"{api}/formula?days=30&community_id={community.pk}", f"{api}/trend",
                 f"{api}/breakdown?by=campaign", f"{api}/breakdown?by=community",
                 f"{api}/communities/{community.pk}/dashboard", f"{api}/funnel?by=channel",
                 f"{api}/cohorts?grain=month", f"{api}/cohorts?grain=week&periods=12", f"{api}/alerts",
                 f"{api}/health?by=group", f"{api}/health?by=community", f"{api}/health?by=group&days=30",
                 f"{api}/health?by=group&days=90", f"{api}/reach", f"{api}/reach/campaigns",
                 f"{api}/reach/referrers", f"{api}/reach/member?member_id={member_id}"]
        if segments:
            import json

            paths += [f"{api}/segments", *(f"{api}/segments/{s.pk}" for s in segments),
                      *(f"{api}/segments/{s.pk}/members?limit=50" for s in segments),
                      *(f"POST {api}/segments/count?{json.dumps(rule)}" for rule in BENCH_SEGMENTS.values())]
        if session:
            paths += ["/console/", "/console/shequn/analytics/segments/",
                      *(f"/console/shequn/analytics/segments/{s.pk}/" for s in segments)]
        print(f"\nthrough HTTP ({n} requests each; load {os.getloadavg()[0]:.2f})", flush=True)
        print("| GET | p50 ms | p95 ms |\n|---|---|---|", flush=True)
        for path in paths:
            get(path)  # warm the process that answers first
            times = []
            for _ in range(n):
                status, ms = get(path)
                assert status == 200, (path, status)
                times.append(ms)
            print(f"| `{path.replace(api, '')}` | {statistics.median(times):.0f} | {p95(times):.0f} |", flush=True)
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=20)


def load(args: Any, rng: random.Random, now: Any) -> tuple[list[Any], list[int], int, int]:
    """The synthetic tenant. Events and orders are generated in bulk by the database on PostgreSQL
    (``INSERT … SELECT … FROM generate_series``, 1M rows a statement) and by ``executemany`` in
    transactions of 200k rows on SQLite — never through the ORM one object at a time, so 10M events
    load in minutes (this measures analytics, not ingest)."""
    from django.db import connection, transaction

    from shequn.activity.models import ActivityEvent
    from shequn.commerce.models import Order, OrderStatus
    from shequn.communities.models import ChatGroup, Community, Membership
    from shequn.core.models import Tenant
    from shequn.engagement.models import ReplyTrack
    from shequn.members.models import Member
    from shequn.moderation.models import Violation
    from shequn.referrals.models import InviteLink, ReferralBinding

    tenant = Tenant.objects.create(slug="bench", name="bench")
    comms = [Community.objects.create(tenant=tenant, name=f"社群{i}") for i in range(4)]
    groups = [ChatGroup.objects.create(tenant=tenant, community=c, platform="wecom", external_id=f"g{c.pk}-{j}",
                                       name=f"{c.name}-{j}") for c in comms for j in range(5)]
    links = [InviteLink.objects.create(tenant=tenant, code=f"bench{i}", community=comms[i % 4], campaign=f"活动{i % 3}",
                                       channel=("门店", "直播间", "朋友圈")[i % 3]) for i in range(6)]
    start = now - dt.timedelta(days=90)
    Member.objects.bulk_create([Member(tenant=tenant, display_name=f"m{i}", first_seen_at=start)
                                for i in range(args.members)], batch_size=5000)
    member_ids = list(Member.objects.filter(tenant=tenant).order_by("pk").values_list("pk", flat=True))
    assert member_ids[-1] - member_ids[0] == len(member_ids) - 1, "member ids are not consecutive"
    ev, od = ActivityEvent._meta.db_table, Order._meta.db_table
    if connection.vendor == "postgresql":
        kind_sql = "CASE " + " ".join(f"WHEN r < {p} THEN '{k}'" for k, p in KINDS[:-1]) + f" ELSE '{KINDS[-1][0]}' END"
        with connection.cursor() as cur:
            for lo in range(0, args.events, 1_000_000):
                hi = min(args.events, lo + 1_000_000)
                cur.execute(
                    f"INSERT INTO {ev} (tenant_id, member_id, community_id, group_id, platform, platform_event_id, "
                    "kind, occurred_at, received_at, payload) "
                    f"SELECT %s, %s + floor(random() * %s)::bigint, (%s::bigint[])[g], (%s::bigint[])[g], 'wecom', "
                    f"'b' || i, {kind_sql}, %s + random() * interval '90 days', %s, "
                    "CASE WHEN r >= 0.90 AND r < 0.96 AND r2 < 0.5 THEN "
                    "jsonb_build_object('invite_code', 'bench' || floor(r2 * 12)::int) ELSE '{}'::jsonb END "
                    "FROM (SELECT i, 1 + floor(random() * %s)::int AS g, random() AS r, random() AS r2 "
                    "FROM generate_series(%s, %s) i) s",
                    [tenant.pk, member_ids[0], len(member_ids), [g.community_id for g in groups],
                     [g.pk for g in groups], start, now, len(groups), lo, hi - 1])
            for lo in range(0, args.orders, 1_000_000):
                hi = min(args.orders, lo + 1_000_000)
                cur.execute(
                    f"INSERT INTO {od} (tenant_id, member_id, status, goods_fen, discount_fen, total_fen, paid_fen, "
                    "refunded_fen, attribution, request_hash, created_at, paid_at, cancel_reason, stock_released) "
                    "SELECT %s, m, %s, a, 0, a, a, 0, jsonb_build_object('community_id', (%s::bigint[])[c], "
                    "'campaign', '活动' || floor(random() * 3)::int), '', t, t, '', false "
                    "FROM (SELECT %s + floor(random() * %s)::bigint AS m, "
                    "(%s::int[])[1 + floor(random() * 5)::int] AS a, "
                    "1 + floor(random() * 4)::int AS c, %s + random() * interval '90 days' AS t "
                    "FROM generate_series(%s, %s) i) s",
                    [tenant.pk, OrderStatus.PAID, [c.pk for c in comms], member_ids[0], len(member_ids) // 3,
                     list(AMOUNTS), start, lo, hi - 1])
    else:
        import json

        def event_rows(lo: int, hi: int) -> Any:
            for i in range(lo, hi):
                g = groups[rng.randrange(len(groups))]
                r = rng.random()
                kind = next(k for k, p in KINDS if r < p)
                payload = {"invite_code": links[rng.randrange(6)].code} if kind == "join" and rng.random() < 0.5 else {}
                at = start + dt.timedelta(seconds=rng.uniform(0, 90 * 86400))
                yield (tenant.pk, member_ids[rng.randrange(len(member_ids))], g.community_id, g.pk, "wecom", f"b{i}",
                       kind, at.isoformat(sep=" "), now.isoformat(sep=" "), json.dumps(payload))

        def order_rows(lo: int, hi: int) -> Any:
            for _i in range(lo, hi):
                a = rng.choice(AMOUNTS)
                at = (start + dt.timedelta(seconds=rng.uniform(0, 90 * 86400))).isoformat(sep=" ")
                attribution = {"community_id": comms[rng.randrange(4)].pk, "campaign": f"活动{rng.randrange(3)}"}
                yield (tenant.pk, member_ids[rng.randrange(len(member_ids) // 3)], OrderStatus.PAID, a, 0, a, a, 0,
                       json.dumps(attribution, ensure_ascii=False), "", at, at, "", False)

        with connection.cursor() as cur:
            for lo in range(0, args.events, 200_000):
                with transaction.atomic():
                    cur.executemany(
                        f"INSERT INTO {ev} (tenant_id, member_id, community_id, group_id, platform, "
                        "platform_event_id, kind, occurred_at, received_at, payload) VALUES (%s, %s, %s, %s, %s, %s, "
                        "%s, %s, %s, %s)", event_rows(lo, min(args.events, lo + 200_000)))
            for lo in range(0, args.orders, 200_000):
                with transaction.atomic():
                    cur.executemany(
                        f"INSERT INTO {od} (tenant_id, member_id, status, goods_fen, discount_fen, total_fen, "
                        "paid_fen, refunded_fen, attribution, request_hash, created_at, paid_at, cancel_reason, "
                        "stock_released) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        order_rows(lo, min(args.orders, lo + 200_000)))
    # health inputs: one open membership per member, ads and reply-queue rows of the last week
    Membership.objects.bulk_create([
        Membership(tenant=tenant, member_id=m, community_id=groups[k % len(groups)].community_id,
                   group_id=groups[k % len(groups)].pk, joined_at=start) for k, m in enumerate(member_ids)],
        batch_size=5000)
    week = now - dt.timedelta(days=7)
    Violation.objects.bulk_create([
        Violation(tenant=tenant, community_id=g.community_id, group_id=g.pk, member_id=rng.choice(member_ids),
                  verdict="ad", score=0.99, occurred_at=week + dt.timedelta(seconds=rng.uniform(0, 7 * 86400)))
        for g in (groups[rng.randrange(len(groups))] for _ in range(args.members // 20))], batch_size=5000)
    replies = []
    for k in range(args.members // 5):
        g = groups[rng.randrange(len(groups))]
        at = week + dt.timedelta(seconds=rng.uniform(0, 7 * 86400))
        replies.append(ReplyTrack(tenant=tenant, event_id=k, community_id=g.community_id, group_id=g.pk,
                                  member_id=rng.choice(member_ids), occurred_at=at,
                                  answered_at=at + dt.timedelta(minutes=rng.uniform(1, 120))
                                  if rng.random() < 0.8 else None))
    ReplyTrack.objects.bulk_create(replies, batch_size=5000)
    # the invite forest: the first 5% are seeds; each later member is, with probability --invited, bound
    # to an earlier member (a random recursive tree: depth grows like the log of the members)
    sharers = member_ids[: max(1, args.members // 10)]
    member_links = {m: InviteLink(tenant=tenant, code=f"m{m}", member_id=m, campaign=f"活动{m % 3}")
                    for m in sharers}
    InviteLink.objects.bulk_create(list(member_links.values()), batch_size=5000)
    link_ids = dict(InviteLink.objects.filter(tenant=tenant, member__isnull=False).values_list("member_id", "pk"))
    bindings = []
    seeds = max(1, args.members // 20)
    for k in range(seeds, len(member_ids)):
        if rng.random() < args.invited:
            parent = member_ids[rng.randrange(k)]
            bindings.append(ReferralBinding(tenant=tenant, member_id=member_ids[k], referrer_id=parent,
                                            link_id=link_ids.get(parent), bound_at=start))
    ReferralBinding.objects.bulk_create(bindings, batch_size=5000)
    with connection.cursor() as cur:  # statistics, as autovacuum keeps them on a live table
        cur.execute("ANALYZE")
    return comms, member_ids, len(bindings), len(sharers)


if __name__ == "__main__":
    main()
