"""The community board's member series at scale: the obvious computation (every membership row read
and tested against each day's cut) against the shipped one (members who do not change in the window
counted once in the database, the rest swept), on the same data, plus the whole board read.

    PYTHONPATH=src python bench/community_board.py --db sqlite --members 100000
    PYTHONPATH=src python bench/community_board.py --db postgres://postgres@127.0.0.1:5432/shequn_bench_board
    ... --http 50          # then the board and the health figures through `shequn serve`, 50 requests each

Data: N members in one community of 20 groups; ``--moving`` of them (default 10 %) joined inside the
90-day window, a fifth of those left again, 5 % of everyone are in a second group; the rest joined
long before the window and stayed."""

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="sqlite")
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--moving", type=float, default=0.10)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--http", type=int, default=0, metavar="N",
                    help="then N requests each through HTTP: `shequn serve` (gunicorn) and an outside client")
    args = ap.parse_args()
    label = setup(args.db, "shequn_bench_board")

    from zoneinfo import ZoneInfo

    from django.utils import timezone

    from shequn.analytics import selectors
    from shequn.communities.models import ChatGroup, Community, Membership
    from shequn.core.models import Tenant
    from shequn.members.models import Member

    rng = random.Random(7)
    tenant = Tenant.objects.create(slug="board", name="board")
    community = Community.objects.create(tenant=tenant, name="车友会")
    groups = ChatGroup.objects.bulk_create([ChatGroup(tenant=tenant, community=community, platform="telegram",
                                                      external_id=f"g{i}", name=f"群{i}") for i in range(20)])
    now = timezone.now()
    t0 = time.perf_counter()
    members = Member.objects.bulk_create([Member(tenant=tenant, display_name=f"m{i}", first_seen_at=now)
                                          for i in range(args.members)], batch_size=5000)
    rows = []
    for m in members:
        moving = rng.random() < args.moving
        joined = now - dt.timedelta(days=rng.uniform(0, 89) if moving else rng.uniform(91, 700))
        left = joined + dt.timedelta(days=rng.uniform(0, 30)) if moving and rng.random() < 0.2 else None
        if left is not None and left > now:
            left = None
        rows.append(Membership(tenant=tenant, member=m, community=community, group=rng.choice(groups),
                               joined_at=joined, left_at=left))
        if rng.random() < 0.05:
            other = rng.choice(groups)
            if other.pk != rows[-1].group_id:
                rows.append(Membership(tenant=tenant, member=m, community=community, group=other,
                                       joined_at=joined + dt.timedelta(days=1), left_at=None))
    Membership.objects.bulk_create(rows, batch_size=5000)
    from django.db import connection

    with connection.cursor() as cur:  # statistics, as autovacuum (PostgreSQL) keeps them on a live table
        cur.execute("ANALYZE")
    print(f"{label}: {args.members:,} members, {len(rows):,} membership rows, seeded in "
          f"{time.perf_counter() - t0:.1f} s; load {os.getloadavg()[0]:.1f}", flush=True)
    # the rows were bulk-inserted past the membership writers: the stored members-present count is
    # built as `shequn analytics rebuild` (or migration 0005 on existing data) builds it
    from shequn.analytics.presence import do_rebuild_presence, members_present

    start = time.perf_counter()
    stays = do_rebuild_presence(tenant.pk)
    print(f"  {'presence rebuild (' + format(stays, ',') + ' stays), once':<52} "
          f"{(time.perf_counter() - start) * 1000:8.1f} ms", flush=True)

    membership_write_cost(tenant, community, members)
    zone = ZoneInfo("Asia/Shanghai")
    dates = selectors._dates(timezone.now().astimezone(zone).date(), 90)
    ms = Membership.objects.filter(tenant=tenant, community=community)

    def obvious() -> list[int]:
        rs = list(ms.values_list("member_id", "joined_at", "left_at"))
        out = []
        for d in dates:
            cut = dt.datetime.combine(d + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
            out.append(len({m for m, j, left in rs if j < cut and (left is None or left >= cut)}))
        return out

    start = time.perf_counter()
    expected = obvious()
    took = (time.perf_counter() - start) * 1000
    print(f"  {'members series, obvious (every row × every day), once':<52} {took:8.1f} ms", flush=True)
    assert expected == selectors.members_per_day(ms, dates, zone), "the two computations disagree"
    board = selectors.community_dashboard(tenant.pk, community.pk, days=90, tz=selectors.tenant_tz(tenant.pk))
    assert board["members"] == expected, "the stored count disagrees with the definition"
    for name, fn in (("members series, shipped (members_per_day)", lambda: selectors.members_per_day(ms, dates, zone)),
                     ("members series, stored (presence.members_present)",
                      lambda: members_present(tenant.pk, community.pk, dates)),
                     ("whole community board (90 d)",
                      lambda: selectors.community_dashboard(tenant.pk, community.pk, days=90,
                                                            tz=selectors.tenant_tz(tenant.pk)))):
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
        print(f"  {name:<52} p50 {statistics.median(times):8.1f} ms   p95 {p95(times):8.1f} ms", flush=True)
    if args.http:
        http_reads(tenant, community, args.http)


def membership_write_cost(tenant: Any, community: Any, members: list[Any]) -> None:
    """What the stored count adds to a membership write: 1,000 joins then their 1,000 leaves through
    ``do_record_membership_changes`` (batches of 100, as ingest hands them), with the analytics
    membership listener and without it, in two groups made for it (the stays end where they start,
    so the board's figures do not change)."""
    from django.db import transaction

    from shequn.communities import registry
    from shequn.communities.models import ChatGroup
    from shequn.communities.services import MembershipChange, do_record_membership_changes

    def run(sample: list[Any], group: Any) -> float:
        now = dt.datetime.now(dt.UTC)
        start = time.perf_counter()
        for kind in ("join", "leave"):
            for i in range(0, len(sample), 100):
                with transaction.atomic():
                    do_record_membership_changes(tenant.pk, [
                        getattr(MembershipChange, kind)(m.pk, community.pk, group.pk, now) for m in sample[i:i + 100]])
        return (time.perf_counter() - start) / (2 * len(sample)) * 1e6

    groups = [ChatGroup.objects.create(tenant=tenant, community=community, platform="telegram", external_id=f"cost{i}",
                                       name=f"计时{i}") for i in range(2)]
    listener = registry._MEMBERSHIP.pop("analytics")
    try:
        without = run(members[:1000], groups[0])
    finally:
        registry._MEMBERSHIP["analytics"] = listener
    with_listener = run(members[1000:2000], groups[1])
    print(f"  {'membership write (join or leave), without → with the count':<52} {without:8.0f} µs → "
          f"{with_listener:.0f} µs per change (+{with_listener - without:.0f} µs)", flush=True)


def http_reads(tenant: Any, community: Any, n: int) -> None:
    """The same reads as a browser or another system asks for them: ``shequn serve`` (2 gunicorn
    processes) on this database, timed from this process with ``http.client`` (keep-alive off, as a
    new page load), with the health figures stored by their refresh first."""
    import http.client
    import signal
    import socket
    import subprocess

    from shequn.analytics.health import do_refresh_figures
    from shequn.core.permissions import Principal
    from shequn.core.services import do_create_api_key

    do_refresh_figures(tenant.pk)
    _key, secret = do_create_api_key(Principal.system(tenant.pk), name="bench", scopes=["*"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    web = subprocess.Popen([sys.executable, "-m", "shequn.cli", "serve", "--port", str(port), "--workers", "2",
                            "--no-control-socket"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        def get(path: str) -> tuple[int, float]:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            start = time.perf_counter()
            c.request("GET", path, headers={"Authorization": f"Bearer {secret}"})
            resp = c.getresponse()
            resp.read()
            c.close()
            return resp.status, (time.perf_counter() - start) * 1000

        for _ in range(600):
            try:
                get("/static/none")
                break
            except OSError:
                time.sleep(0.1)
        board = f"/api/v1/analytics/communities/{community.pk}/dashboard"
        for label, path in (("HTTP GET community board (90 d)", board),
                            ("HTTP GET health figures by group (7 d)", "/api/v1/analytics/health?by=group"),
                            ("HTTP GET health figures by community (7 d)", "/api/v1/analytics/health?by=community")):
            get(path)  # warm the process that answers first
            times = []
            for _ in range(n):
                status, ms = get(path)
                assert status == 200, (path, status)
                times.append(ms)
            print(f"  {label:<52} p50 {statistics.median(times):8.1f} ms   p95 {p95(times):8.1f} ms", flush=True)
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=20)


if __name__ == "__main__":
    main()
