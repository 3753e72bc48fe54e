"""Members' pages: server time per page (p50 / p95) on the demo data (2,000 members, 90 days).

    SHEQUN_HOME=/tmp/shequn-bench shequn demo --no-serve   # once: seeds the demo tenant
    SHEQUN_HOME=/tmp/shequn-bench .venv/bin/python bench/portal.py

Signs in as the demo's top earner (a magic link, as `shequn portal_link --demo` makes) and renders each
page ROUNDS times with the Django test client (in-process: every query and the template, no network).
The landing `/r/<code>` writes a click each time, as it does for real."""

from __future__ import annotations

import os
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

from shequn.commerce.models import Order  # noqa: E402
from shequn.core.models import Tenant  # noqa: E402
from shequn.ledger.models import Account  # noqa: E402
from shequn.members.models import Member  # noqa: E402
from shequn.portal.services import make_magic_token  # noqa: E402
from shequn.referrals.models import InviteLink  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "20"))


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def main() -> None:
    from shequn.core.models import DEMO_SLUG

    tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
    if tenant is None:
        raise SystemExit("no demo tenant: run `shequn demo --no-serve` with the same SHEQUN_HOME first")
    top = (Account.objects.filter(tenant_id=tenant.pk, owner_type="member", kind="available")
           .order_by("-balance_fen").values_list("owner_id", flat=True).first())
    member = Member.objects.get(pk=top) if top else Member.objects.filter(tenant=tenant).order_by("pk").first()
    client = Client()
    r = client.post(f"/portal/{tenant.slug}/magic/{make_magic_token(member)}/")
    assert r.status_code == 302, r.status_code
    s = f"/portal/{tenant.slug}"
    link = InviteLink.objects.filter(tenant=tenant).order_by("pk").first()
    order = Order.objects.filter(tenant=tenant, member=member).order_by("-pk").first()
    community_id = link.community_id if link and link.community_id else 0
    pages = [f"{s}/", f"{s}/c/{community_id}/", f"{s}/invite/", f"{s}/earnings/", f"{s}/orders/",
             f"{s}/checkin/", f"{s}/flash/"]
    if order is not None:
        pages.append(f"{s}/orders/{order.pk}/")
    if link is not None:
        pages.append(f"/r/{link.code}")
    members = Member.objects.filter(tenant=tenant).count()
    print(f"{connection.vendor}, {members} members, {ROUNDS} renders each (server time, in-process)")
    print(f"{'p50':>8} {'p95':>8} queries  page")
    for url, times, queries in page_timings(client, pages, ROUNDS):
        print(f"{pct(times, 50) * 1000:6.1f}ms {pct(times, 95) * 1000:6.1f}ms {queries:7d}  {url}")

if __name__ == "__main__":
    main()
