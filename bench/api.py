"""REST API throughput on the in-process WSGI stack (Django test client, real API-key auth).

    .venv/bin/python bench/api.py                       # SQLite in a temp dir
    SHEQUN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/shequn_api .venv/bin/python bench/api.py

Prints: activity events/s through POST /api/v1/activity/events (batches of 1000 and 5000, fresh
events and an all-duplicate replay) next to do_ingest called directly (the HTTP + JSON + validation
overhead), and the latency of GET /api/v1/members (50 per page, masked) over 2,000 members."""

import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("SHEQUN_HOME", tempfile.mkdtemp(prefix="shequn-bench-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shequn.settings")
os.environ.setdefault("SHEQUN_LOG_LEVEL", "WARNING")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from shequn.activity.services import do_ingest  # noqa: E402
from shequn.core.models import Tenant  # noqa: E402
from shequn.core.permissions import Principal  # noqa: E402
from shequn.core.services import do_create_api_key  # noqa: E402
from shequn.members.models import Member  # noqa: E402


def events(run: str, start: int, n: int, senders: int = 500) -> list[dict]:
    return [{"platform": "telegram", "event_id": f"{run}-{i}", "kind": "message", "sender": f"u{i % senders}",
             "group": "room-1", "occurred_at": 1_767_225_600 + i, "payload": {"text": "早上好"}}
            for i in range(start, start + n)]


def main() -> None:
    call_command("migrate", verbosity=0)
    run = uuid.uuid4().hex[:8]
    tenant = Tenant.objects.create(slug=f"bench-{run}", name="bench")
    _key, secret = do_create_api_key(Principal.system(tenant.pk), name="bench", scopes=["*"])
    client = Client(headers={"Authorization": f"Bearer {secret}"})
    print(f"database: {connection.vendor}")

    def post(batch: list[dict]) -> dict:
        resp = client.post("/api/v1/activity/events", data=json.dumps({"events": batch}),
                           content_type="application/json")
        assert resp.status_code == 200, resp.content[:300]
        return resp.json()

    post(events(f"{run}-warm", 0, 100))  # creates the 100 first senders; warms imports
    for size in (1000, 5000):
        total, batches = 20_000, 20_000 // size
        t0 = time.perf_counter()
        stored = sum(post(events(f"{run}-api{size}", b * size, size))["stored"] for b in range(batches))
        api_rate = total / (time.perf_counter() - t0)
        assert stored == total
        t0 = time.perf_counter()
        dups = sum(post(events(f"{run}-api{size}", b * size, size))["duplicates"] for b in range(batches))
        dup_rate = total / (time.perf_counter() - t0)
        assert dups == total
        t0 = time.perf_counter()
        for b in range(batches):
            do_ingest(tenant.pk, events(f"{run}-svc{size}", b * size, size))
        svc_rate = total / (time.perf_counter() - t0)
        print(f"ingest batch {size:>5}: API {api_rate:>8,.0f} events/s | API replay (all duplicates) "
              f"{dup_rate:>8,.0f} events/s | do_ingest direct {svc_rate:>8,.0f} events/s")

    Member.objects.bulk_create([Member(tenant=tenant, display_name=f"会员{i}", phone=f"138{i:08d}",
                                       first_seen_at="2026-01-01T00:00:00Z") for i in range(2000)])
    timings = []
    cursor = None
    for _ in range(50):
        t0 = time.perf_counter()
        resp = client.get("/api/v1/members", {"limit": 50, **({"cursor": cursor} if cursor else {})})
        timings.append((time.perf_counter() - t0) * 1000)
        assert resp.status_code == 200
        cursor = resp.json()["next_cursor"]
    timings.sort()
    print(f"GET /api/v1/members (50/page, {Member.objects.filter(tenant=tenant).count()} members): "
          f"p50 {statistics.median(timings):.1f} ms, p95 {timings[int(len(timings) * 0.95) - 1]:.1f} ms")


if __name__ == "__main__":
    main()
