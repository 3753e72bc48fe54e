"""Set up Django for a benchmark on a throw-away database: SQLite in a temp dir, or PostgreSQL."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def setup(db: str, name: str = "shequn_bench", *, keep: bool = False) -> str:
    """``db`` is ``sqlite`` (a new temp dir), ``sqlite:DIR`` (that dir: kept when ``keep``) or a postgres
    URL whose database is dropped and recreated (kept when ``keep``, so a loaded data set can be
    measured again after a code change: ``migrate`` still runs)."""
    if db == "sqlite" or db.startswith("sqlite:"):
        home = db.partition(":")[2]
        if home and not keep and Path(home).exists():
            import shutil

            shutil.rmtree(home)
        if home:
            Path(home).mkdir(parents=True, exist_ok=True)
        os.environ["SHEQUN_HOME"] = home or tempfile.mkdtemp(prefix="shequn-bench-")
        os.environ.pop("SHEQUN_DATABASE_URL", None)
        label = "SQLite (WAL)"
    else:
        import dj_database_url
        import psycopg

        cfg = dj_database_url.parse(db)
        dbname = cfg["NAME"] or name
        admin = psycopg.connect(host=cfg["HOST"], port=cfg["PORT"] or 5432, user=cfg["USER"], dbname="postgres",
                                autocommit=True)
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
        if not (keep and exists):
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{dbname}"')
        admin.close()
        os.environ["SHEQUN_DATABASE_URL"] = db
        os.environ.setdefault("SHEQUN_HOME", tempfile.mkdtemp(prefix="shequn-bench-"))
        label = "PostgreSQL"
    os.environ["DJANGO_SETTINGS_MODULE"] = "shequn.settings"
    os.environ.setdefault("SHEQUN_LOG_LEVEL", "WARNING")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    return label


def p95(xs: list[float]) -> float:
    """The 95th percentile of a few timings (nearest rank: with 7 rounds it is the slowest one)."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]


def page_timings(client: Any, urls: list[str], rounds: int) -> Iterator[tuple[str, list[float], int]]:
    """Render each URL ``rounds`` times with a Django test client: yields (url, seconds per render,
    queries of the last render). Every render must answer 200. Shared by the console and portal
    benches."""
    for url in urls:
        times = []
        for _ in range(rounds):
            with CaptureQueriesContext(connection) as ctx:
                start = time.perf_counter()
                resp = client.get(url)
                times.append(time.perf_counter() - start)
            assert resp.status_code == 200, (url, resp.status_code)
        yield url, times, len(ctx.captured_queries)
