"""Members' pages: server time per page (p50 / p95) on the demo data (2,000 members, 90 days).

    SHEQUN_HOME=/tmp/shequn-bench python -m shequn.cli demo --no-serve   # once: seeds the demo tenant
    SHEQUN_HOME=/tmp/shequn-bench .venv/bin/python bench/portal.py
    SHEQUN_HOME=/tmp/shequn-bench .venv/bin/python bench/portal.py --members 100000   # tops the tenant up

``--members N`` first tops the demo tenant up to N members with bulk inserts (a bench seed, not the
services): each new member in one community (a current membership) and one in three bound to a
referrer (one in fifty to the member the bench signs in as), so community sizes, member counts
and "who I brought" grow as they would. Run it on a copy: the rows stay.

Signs in as the demo's top earner (a magic link, as `shequn portal_link --demo` makes) and renders each
page ROUNDS times with the Django test client (in-process: every query and the template, no network).
The landing `/r/<code>` writes a click each time, as it does for real."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shequn.settings")
os.environ.setdefault("SHEQUN_LOG_LEVEL", "WARNING")

import django

django.setup()

from _django import page_timings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from shequn.commerce.models import GroupBuy, Order  # noqa: E402
from shequn.communities.models import ChatGroup, Community, Membership  # noqa: E402
from shequn.core.models import DEMO_SLUG, Tenant  # noqa: E402
from shequn.engagement.models import Lottery, RedPacket  # noqa: E402
from shequn.members.models import Member  # noqa: E402
from shequn.portal.services import demo_member, make_magic_token  # noqa: E402
from shequn.referrals.models import InviteLink, ReferralBinding  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "20"))


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def top_up(tenant: Tenant, target: int, referrer_id: int) -> None:
    """Bulk-insert members up to ``target`` (see the module docstring)."""
    have = Member.objects.filter(tenant=tenant).count()
    if have >= target:
        return
    groups = list(ChatGroup.objects.filter(tenant=tenant, is_active=True).values_list("pk", "community_id"))
    existing = list(Member.objects.filter(tenant=tenant).values_list("pk", flat=True)[:5000])
    rng = random.Random(20261204)
    now = timezone.now()
    batch = 5000
    print(f"topping up {have} → {target} members …", flush=True)
    while have < target:
        n = min(batch, target - have)
        made = Member.objects.bulk_create([
            Member(tenant=tenant, display_name=f"会员{have + i}", source_channel="bench",
                   first_seen_at=now - dt.timedelta(days=rng.randrange(1, 365))) for i in range(n)])
        rows, bindings = [], []
        for m in made:
            group_id, community_id = rng.choice(groups)
            rows.append(Membership(tenant=tenant, member=m, community_id=community_id, group_id=group_id,
                                   joined_at=m.first_seen_at, join_source="invite_link"))
            if rng.random() < 1 / 3:
                ref = referrer_id if rng.random() < 0.06 else rng.choice(existing)
                bindings.append(ReferralBinding(tenant=tenant, member=m, referrer_id=ref, bound_at=m.first_seen_at,
                                                expires_at=now + dt.timedelta(days=30)))
        Membership.objects.bulk_create(rows)
        ReferralBinding.objects.bulk_create(bindings, ignore_conflicts=True)
        have += n
    print(f"  {have} members", flush=True)
    if connection.vendor == "postgresql":  # the planner's statistics, as autovacuum would have them
        with connection.cursor() as cur:
            cur.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=0, help="top the demo tenant up to this many members")
    args = parser.parse_args()
    tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
    if tenant is None:
        raise SystemExit("no demo tenant: run `shequn demo --no-serve` with the same SHEQUN_HOME first")
    member = demo_member(tenant)
    assert member is not None
    if args.members:
        top_up(tenant, args.members, member.pk)
    client = Client()
    r = client.post(f"/portal/{tenant.slug}/magic/{make_magic_token(member)}/")
    assert r.status_code == 302, r.status_code
    s = f"/portal/{tenant.slug}"
    link = (InviteLink.objects.filter(tenant=tenant, community__isnull=False).order_by("pk").first()
            or InviteLink.objects.filter(tenant=tenant).order_by("pk").first())
    order = Order.objects.filter(tenant=tenant, member=member).order_by("-pk").first()
    community_id = link.community_id if link and link.community_id else (
        Community.objects.filter(tenant=tenant).order_by("pk").values_list("pk", flat=True).first() or 0)
    pages = [f"{s}/", f"{s}/c/{community_id}/", f"{s}/invite/", f"{s}/earnings/", f"{s}/orders/",
             f"{s}/checkin/", f"{s}/flash/", f"{s}/coupons/"]
    if order is not None:
        pages.append(f"{s}/orders/{order.pk}/")
    for model, path in ((Lottery, "lottery"), (RedPacket, "redpacket"), (GroupBuy, "groupbuy")):
        row = model.objects.filter(tenant=tenant).order_by("pk").first()
        if row is not None:
            pages.append(f"{s}/{path}/{row.pk}/")
    if link is not None:
        pages.append(f"/r/{link.code}")
    members = Member.objects.filter(tenant=tenant).count()
    print(f"{connection.vendor}, {members} members, {ROUNDS} renders each (server time, in-process)")
    print(f"{'p50':>8} {'p95':>8} queries  page")
    for url, times, queries in page_timings(client, pages, ROUNDS):
        print(f"{pct(times, 50) * 1000:6.1f}ms {pct(times, 95) * 1000:6.1f}ms {queries:7d}  {url}")


if __name__ == "__main__":
    main()
