"""Activity ingest throughput: events/s through ``do_ingest`` (batched, idempotent).

    python bench/ingest.py                       # SQLite
    python bench/ingest.py --db postgres://postgres@127.0.0.1:5432/shequn_bench

Prints, for each batch size (``--batch``, default 1000 and 5000): fresh events/s (new events, known
senders), replay events/s (the same batches again: all duplicates), and events/s with first-seen senders
(member + identity created on the way); with the load average, since the figures move with it."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import time

from _django import setup


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--members", type=int, default=5000)
    args = parser.parse_args()
    label = setup(args.db)

    from django.utils import timezone

    from shequn.activity.models import ActivityEvent
    from shequn.activity.services import do_ingest
    from shequn.communities.models import ChatGroup, Community
    from shequn.core.models import Tenant
    from shequn.members.models import Identity, Member

    rng = random.Random(1)
    tenant = Tenant.objects.create(slug="bench", name="bench")
    community = Community.objects.create(tenant=tenant, name="c")
    groups = [ChatGroup.objects.create(tenant=tenant, community=community, platform="matrix", external_id=f"!g{i}",
                                       name=f"g{i}") for i in range(20)]
    now = timezone.now()
    members = Member.objects.bulk_create([Member(tenant=tenant, display_name=f"m{i}", first_seen_at=now)
                                          for i in range(args.members)], batch_size=1000)
    Identity.objects.bulk_create([Identity(tenant=tenant, member=m, platform="matrix", external_id=f"@u{i}:x")
                                  for i, m in enumerate(members)], batch_size=1000)
    base = now - dt.timedelta(days=30)

    def events(prefix: str, n: int, senders: int, offset: int = 0) -> list[dict[str, object]]:
        return [{
            "platform": "matrix", "event_id": f"{prefix}{i}", "kind": "message" if i % 5 else "reaction",
            "sender": f"@u{offset + rng.randrange(senders)}:x", "group": groups[i % len(groups)].external_id,
            "occurred_at": base + dt.timedelta(seconds=i), "payload": {"text": "周末一起自驾吗?" * 2},
        } for i in range(n)]

    def run(batch_events: list[dict[str, object]], batch: int) -> tuple[float, int, int]:
        stored = dupes = 0
        t0 = time.perf_counter()
        for i in range(0, len(batch_events), batch):
            r = do_ingest(tenant.pk, batch_events[i : i + batch])
            stored += r.stored
            dupes += r.duplicates
        return time.perf_counter() - t0, stored, dupes

    def load() -> str:
        return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())

    expected = 0
    for n, batch in enumerate(args.batch):
        fresh = events(f"e{n}-", args.events, args.members)
        secs, stored, _ = run(fresh, batch)
        expected += stored
        print(f"[{label}] batch {batch}: fresh events, known senders: {stored} in {secs:.2f}s = "
              f"{stored / secs:,.0f} events/s ({load()})")
        secs2, dupes_stored, dupes = run(fresh, batch)
        print(f"[{label}] batch {batch}: replay (all duplicates): {dupes} duplicates, {dupes_stored} stored, "
              f"{dupes / secs2:,.0f} events/s ({load()})")
        before = Member.objects.count()
        new_senders = events(f"n{n}-", 20_000, 20_000, offset=10**6 * (n + 1))
        secs3, stored3, _ = run(new_senders, batch)
        expected += stored3
        print(f"[{label}] batch {batch}: events from first-seen senders: {stored3} in {secs3:.2f}s = "
              f"{stored3 / secs3:,.0f} events/s ({Member.objects.count() - before} members created; {load()})")
    total = ActivityEvent.objects.count()
    assert total == expected, "lost or duplicated events"
    print(f"[{label}] total stored {total}, duplicates stored 0")

if __name__ == "__main__":
    main()
