"""Old analytics selectors (a git revision's) against this tree's, interleaved on one bench database so
both see the same machine load; asserts they give the same answers first.

    git show main:src/shequn/analytics/selectors.py > /tmp/old_selectors.py
    SHEQUN_HOME=<the SQLite dir bench/analytics.py left> PYTHONPATH=src python bench/analytics_ab.py [rounds]
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import sys
import time

os.environ["DJANGO_SETTINGS_MODULE"] = "shequn.settings"
os.environ.setdefault("SHEQUN_LOG_LEVEL", "WARNING")
import django

django.setup()
from shequn.analytics import selectors as new  # noqa: E402
from shequn.core.models import Tenant  # noqa: E402

spec = importlib.util.spec_from_file_location("shequn.analytics.old_selectors",
                                              os.environ.get("OLD_SELECTORS", "/tmp/old_selectors.py"))
assert spec is not None and spec.loader is not None
old = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = old
spec.loader.exec_module(old)
t = Tenant.objects.get(slug="bench").pk

assert new.cohorts(t, grain="month") == old.cohorts(t, grain="month")
for by in ("campaign", "community", "channel"):
    def key(rows: list) -> list:
        return sorted((str(r["key"]), r["sales_fen"], r["change_fen"], r["summary"], sorted(r["factors"].items()))
                      for r in rows)
    assert key(new.breakdown(t, by)) == key(old.breakdown(t, by)), by

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
print(f"load average {os.getloadavg()[0]:.1f}\n| read | old p50 ms | new p50 ms | speed-up |\n|---|---|---|---|")
for name, fo, fn in (
        ("cohorts (monthly)", lambda: old.cohorts(t, grain="month"), lambda: new.cohorts(t, grain="month")),
        ("cohorts (weekly, 12)", lambda: old.cohorts(t, grain="week", periods=12),
         lambda: new.cohorts(t, grain="week", periods=12)),
        ("breakdown by campaign", lambda: old.breakdown(t, "campaign"), lambda: new.breakdown(t, "campaign")),
        ("breakdown by community", lambda: old.breakdown(t, "community"), lambda: new.breakdown(t, "community"))):
    a, b = [], []
    for _ in range(rounds):
        s = time.perf_counter()
        fo()
        a.append((time.perf_counter() - s) * 1e3)
        s = time.perf_counter()
        fn()
        b.append((time.perf_counter() - s) * 1e3)
    print(f"| {name} | {statistics.median(a):.0f} | {statistics.median(b):.0f} | "
          f"{statistics.median(a) / statistics.median(b):.1f}× |")
