"""Console page render times on the demo data (2,000 members, 90 days of activity).

    SHEQUN_HOME=/tmp/shequn-bench shequn demo --no-serve   # once: seeds the demo tenant
    SHEQUN_HOME=/tmp/shequn-bench .venv/bin/python bench/console.py

Prints the median and worst wall time of a few renders of each page (Django test client, in-process,
so no network; includes every query and the template)."""

from __future__ import annotations

import os
import statistics

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shequn.settings")

import django

django.setup()

from _django import page_timings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from shequn.communities.models import Community  # noqa: E402
from shequn.core.models import StaffMembership  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "5"))


def main() -> None:
    staff = StaffMembership.objects.filter(role="owner").select_related("user").first()
    if staff is None:
        raise SystemExit("no operator: run `shequn demo --no-serve` with the same SHEQUN_HOME first")
    user = get_user_model().objects.get(pk=staff.user_id)
    client = Client()
    client.force_login(user)
    community = Community.objects.filter(tenant_id=staff.tenant_id).order_by("pk").first()
    pages = [
        "/console/",
        "/console/members/member/",
        "/console/members/member/?lifecycle_stage__exact=active&tag=1",
        "/console/communities/community/",
        f"/console/shequn/communities/{community.pk if community else 0}/dashboard/",
        "/console/activity/activityevent/",
        "/console/communities/membership/",
        "/console/shequn/members/export.csv",
    ]
    print(f"{connection.vendor}, {ROUNDS} renders each")
    for url, times, queries in page_timings(client, pages, ROUNDS):
        print(f"{statistics.median(times) * 1000:8.0f} ms median {max(times) * 1000:8.0f} ms max "
              f"{queries:3d} queries  {url}")


if __name__ == "__main__":
    main()
