"""Analytics benchmark: ingest-side cost of the rollup subscriptions, full rebuild time, and the
dashboard / API reads (p95) on a synthetic tenant with N members, E events and O orders over 90 days.

    PYTHONPATH=src python bench/analytics.py --db sqlite --members 5000 --events 200000 --orders 20000
    PYTHONPATH=src python bench/analytics.py --db postgres://postgres@127.0.0.1:5432/shequn_bench_analytics ...

Events and orders are bulk-inserted directly (this measures analytics, not ingest); the subscription
cost is measured by handing stored batches of 1,000 events to the consumer, as dispatch does."""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _django import p95, setup


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="sqlite")
    ap.add_argument("--members", type=int, default=5000)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--orders", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--invited", type=float, default=0.5, help="share of members bound to an earlier member")
    ap.add_argument("--skip-ingest-cost", action="store_true", help="skip section 1 (the subscriptions' cost)")
    args = ap.parse_args()
    label = setup(args.db, "shequn_bench_analytics")

    from django.utils import timezone

    from shequn.activity.models import ActivityEvent
    from shequn.analytics import health, reach, segments, selectors, services
    from shequn.analytics.models import DailyRollup, MemberDay
    from shequn.commerce.events import OrderEventData
    from shequn.commerce.models import Order, OrderStatus
    from shequn.communities.models import ChatGroup, Community, Membership
    from shequn.core.models import Tenant
    from shequn.engagement.models import ReplyTrack
    from shequn.members.models import Member
    from shequn.moderation.models import Violation
    from shequn.referrals.models import InviteLink, ReferralBinding

    rng = random.Random(15)
    tenant = Tenant.objects.create(slug="bench", name="bench")
    comms = [Community.objects.create(tenant=tenant, name=f"社群{i}") for i in range(4)]
    groups = [ChatGroup.objects.create(tenant=tenant, community=c, platform="wecom", external_id=f"g{c.pk}-{j}",
                                       name=f"{c.name}-{j}") for c in comms for j in range(5)]
    links = [InviteLink.objects.create(tenant=tenant, code=f"bench{i}", community=comms[i % 4], campaign=f"活动{i % 3}",
                                       channel=("门店", "直播间", "朋友圈")[i % 3]) for i in range(6)]
    now = timezone.now()
    start = now - dt.timedelta(days=90)
    t0 = time.perf_counter()
    Member.objects.bulk_create([Member(tenant=tenant, display_name=f"m{i}", first_seen_at=start)
                                for i in range(args.members)], batch_size=5000)
    member_ids = list(Member.objects.filter(tenant=tenant).values_list("pk", flat=True))
    kinds = ["message"] * 70 + ["reaction"] * 15 + ["check_in"] * 5 + ["join"] * 6 + ["leave"] * 4
    batch: list[Any] = []
    for i in range(args.events):
        g = groups[rng.randrange(len(groups))]
        kind = kinds[rng.randrange(100)]
        payload = {"invite_code": links[rng.randrange(6)].code} if kind == "join" and rng.random() < 0.5 else {}
        batch.append(ActivityEvent(tenant=tenant, member_id=member_ids[rng.randrange(len(member_ids))],
                                   community_id=g.community_id, group_id=g.pk, platform="wecom",
                                   platform_event_id=f"b{i}", kind=kind, payload=payload, received_at=now,
                                   occurred_at=start + dt.timedelta(seconds=rng.uniform(0, 90 * 86400))))
        if len(batch) == 10_000:
            ActivityEvent.objects.bulk_create(batch)
            batch = []
    ActivityEvent.objects.bulk_create(batch)
    orders = []
    for _i in range(args.orders):
        amount = rng.choice([990, 1990, 5900, 12900, 19900])
        orders.append(Order(tenant=tenant, member_id=member_ids[rng.randrange(len(member_ids) // 3)],
                            status=OrderStatus.PAID, goods_fen=amount, total_fen=amount, paid_fen=amount,
                            attribution={"community_id": comms[rng.randrange(4)].pk,
                                         "campaign": f"活动{rng.randrange(3)}"},
                            paid_at=start + dt.timedelta(seconds=rng.uniform(0, 90 * 86400))))
    Order.objects.bulk_create(orders, batch_size=5000)
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
    print(f"# analytics bench — {label}: {args.members:,} members, {args.events:,} events, {args.orders:,} orders "
          f"over 90 days (data loaded in {time.perf_counter() - t0:.1f} s)")

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

    # 4. reads (the stored health figures first: they are read as stored while < STALE_AFTER old)
    reads = {
        "health figures by group (7 d, stored)": lambda: health.health_figures(tenant.pk, by="group"),
        "health figures by community (7 d, stored)": lambda: health.health_figures(tenant.pk, by="community"),
        "health figures by group (30 d, stored)": lambda: health.health_figures(tenant.pk, by="group", days=30),
        "health figures by group (14 d, live: not a stored window)": lambda: health.health_figures(
            tenant.pk, by="group", days=14),
        "formula (30 d vs 30 d)": lambda: selectors.formula_panel(tenant.pk, days=30),
        "formula, one community": lambda: selectors.formula_panel(
            tenant.pk, days=30, scope=selectors.Scope(community_id=comms[0].pk)),
        "trend (90 d)": lambda: selectors.sales_trend(tenant.pk, days=90),
        "breakdown by campaign": lambda: selectors.breakdown(tenant.pk, "campaign", days=30),
        "community board (90 d)": lambda: selectors.community_dashboard(tenant.pk, comms[0].pk, days=90),
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
        "segment count: bought 2+, R ≥ 4": lambda: segments.segment_member_ids(
            tenant.pk, segments.Rule(min_orders=2, min_recency=4)),
        "segment count: active 30+ days, never bought": lambda: segments.segment_member_ids(
            tenant.pk, segments.Rule(min_active_days=30, max_orders=0)),
    }
    print(f"(invite forest: {len(bindings):,} bindings, {len(sharers):,} sharers)")
    print("| read | p50 ms | p95 ms |\n|---|---|---|")
    for name, fn in reads.items():
        times = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
        print(f"| {name} | {statistics.median(times):.0f} | {p95(times):.0f} |")


if __name__ == "__main__":
    main()
