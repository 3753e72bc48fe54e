"""Ledger and leaderboard benchmark.

    python bench/ledger.py                                                        # SQLite (temp dir)
    python bench/ledger.py --db postgres://postgres@127.0.0.1:5432/shequn_ledger_bench
    python bench/ledger.py --db ... --redis redis://127.0.0.1:6379/7 --members 1000000

Prints: postings/s through ``do_post`` (each posting its own transaction, 2–3 lines, random member
accounts, one shared expense account — the hot row), the same with replayed keys, a check_ledger
verdict (must be zero imbalance), and leaderboard top-100 read latency (SQL, and Redis when given)
with ``--members`` entries on one board. The PostgreSQL database named in --db is dropped and
recreated."""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def setup(db: str) -> str:
    if db == "sqlite":
        os.environ["SHEQUN_HOME"] = tempfile.mkdtemp(prefix="shequn-bench-")
        os.environ.pop("SHEQUN_DATABASE_URL", None)
        label = "SQLite (WAL)"
    else:
        import dj_database_url
        import psycopg

        cfg = dj_database_url.parse(db)
        admin = psycopg.connect(host=cfg["HOST"], port=cfg["PORT"] or 5432, user=cfg["USER"], dbname="postgres",
                                autocommit=True)
        admin.execute(f'DROP DATABASE IF EXISTS "{cfg["NAME"]}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{cfg["NAME"]}"')
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


def _load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def baseline() -> None:
    """The machine's ceiling for one client: a bare one-row UPDATE, one commit each."""
    from django.db import connection, transaction

    with connection.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS bench_baseline (id integer PRIMARY KEY, b integer)")
        cur.execute("DELETE FROM bench_baseline")
        cur.execute("INSERT INTO bench_baseline VALUES (1, 0)")
    t0 = time.perf_counter()
    for _ in range(500):
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("UPDATE bench_baseline SET b = b + 1 WHERE id = 1")
    dt = time.perf_counter() - t0
    print(f"  baseline:          {500 / dt:8.0f} bare UPDATE commits/s  (this machine, right now; {_load()})")


def bench_postings(n: int) -> None:
    from shequn.core.models import Tenant
    from shequn.ledger.services import check_ledger, do_post, get_account

    tenant = Tenant.objects.create(slug=f"bench-{time.time_ns()}", name="bench")
    tid = tenant.pk
    expense = get_account(tid, "merchant", tid, "commission_expense", allow_negative=True)
    fees = get_account(tid, "merchant", tid, "fee_income", allow_negative=True)
    members = [get_account(tid, "member", i, "available") for i in range(1, 1001)]
    rng = random.Random(7)
    plan = [(rng.choice(members), rng.randint(100, 20000), rng.random() < 0.3) for _ in range(n)]

    t0 = time.perf_counter()
    for i, (acct, amount, with_fee) in enumerate(plan):
        lines = [(expense, -amount), (acct, amount - 10), (fees, 10)] if with_fee else [(expense, -amount),
                                                                                       (acct, amount)]
        do_post(tid, f"b:{i}", "bench", lines, memo="bench", ref=("bench", i))
    dt = time.perf_counter() - t0
    print(f"  postings:          {n / dt:8.0f} postings/s  ({n} postings, {dt:.2f} s; {_load()})")

    from django.db import connection

    if connection.vendor == "postgresql":
        # the same postings as bare ``SELECT ledger_post(…)`` calls on the raw psycopg connection, params
        # prepared beforehand: what the server + commit cost without do_post's Python around it
        from django.utils import timezone

        from shequn.ledger.services import _aggregate, _lines_hash

        prepared = []
        for i, (acct, amount, with_fee) in enumerate(plan):
            lines = [(expense, -amount), (acct, amount - 10), (fees, 10)] if with_fee else [(expense, -amount),
                                                                                           (acct, amount)]
            per = _aggregate(tid, lines)
            ids = sorted(per)
            prepared.append([tid, f"raw:{i}", "bench", "bench", "bench", str(i), _lines_hash("bench", per),
                             timezone.now(), ids, [per[a] for a in ids]])
        connection.ensure_connection()
        raw = connection.connection.cursor()
        t0 = time.perf_counter()
        for params in prepared:
            raw.execute("SELECT ledger_post(%s, %s, %s, %s, %s, %s, %s, %s, %s::bigint[], %s::bigint[])", params)
            raw.fetchone()
        dt = time.perf_counter() - t0
        print(f"  raw ledger_post:   {n / dt:8.0f} postings/s  (server + commit only, no do_post Python; {_load()})")

    t0 = time.perf_counter()
    replay = min(n, 2000)
    for i, (acct, amount, with_fee) in enumerate(plan[:replay]):
        lines = [(expense, -amount), (acct, amount - 10), (fees, 10)] if with_fee else [(expense, -amount),
                                                                                       (acct, amount)]
        assert do_post(tid, f"b:{i}", "bench", lines).replayed  # type: ignore[attr-defined]
    dt = time.perf_counter() - t0
    print(f"  replayed postings: {replay / dt:8.0f} postings/s  (idempotent no-ops)")

    # batched: 100 postings per database transaction (how the thaw and settlement tasks run)
    from django.db import transaction

    t0 = time.perf_counter()
    for start in range(0, n, 100):
        with transaction.atomic():
            for i in range(start, min(start + 100, n)):
                acct, amount, _fee = plan[i]
                do_post(tid, f"batch:{i}", "bench", [(expense, -amount), (acct, amount)])
    dt = time.perf_counter() - t0
    print(f"  batched postings:  {n / dt:8.0f} postings/s  (100 per commit)")

    # concurrent clients, each moving money between its own members' accounts (no shared hot row)
    import threading

    from django.db import connections

    clients = 8
    pairs = [(get_account(tid, "member", 5000 + c, "available"), get_account(tid, "member", 5000 + c, "withdrawing"))
             for c in range(clients)]
    for c, (src, _dst) in enumerate(pairs):
        do_post(tid, f"fund:{c}", "bench", [(expense, -10**9), (src, 10**9)])
    per = max(n // clients, 1)
    barrier = threading.Barrier(clients)

    def client(c: int) -> None:
        src, dst = pairs[c]
        barrier.wait()
        for i in range(per):
            do_post(tid, f"c{c}:{i}", "bench", [(src, -100), (dst, 100)])
        connections.close_all()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    print(f"  {clients} clients:         {clients * per / dt:8.0f} postings/s  (one commit each, disjoint accounts)")

    t0 = time.perf_counter()
    report = check_ledger(tid)
    dt = time.perf_counter() - t0
    print(f"  check_ledger:      ok={report.ok} unbalanced={len(report.unbalanced)} "
          f"mismatched={len(report.balance_mismatch)} negative={len(report.negative)} ({dt * 1000:.0f} ms)")
    if not report.ok:
        raise SystemExit("ledger imbalance!")


def _fill_board(tid: int, members: int) -> None:
    from django.db import connection, transaction
    from django.utils import timezone

    rng = random.Random(11)
    now = timezone.now()
    batch = 20000
    sql = ("INSERT INTO referrals_leaderboardentry (tenant_id, board, period, member_id, value, reached_at) "
           "VALUES (%s, %s, %s, %s, %s, %s)")
    for start in range(1, members + 1, batch):
        rows = [(tid, "referrals|all", "all", m, int(rng.paretovariate(1.3)), now)
                for m in range(start, min(start + batch, members + 1))]
        with transaction.atomic(), connection.cursor() as cur:
            cur.executemany(sql, rows)
    with connection.cursor() as cur:
        cur.execute("ANALYZE" if connection.vendor == "postgresql" else "ANALYZE referrals_leaderboardentry")


def _time(fn, reps: int = 50) -> tuple[float, float]:
    fn()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), max(samples)


def bench_leaderboard(members: int, redis_url: str | None) -> None:
    from shequn.core.models import Tenant
    from shequn.referrals import leaderboard

    tenant = Tenant.objects.create(slug=f"lb-{time.time_ns()}", name="lb")
    t0 = time.perf_counter()
    _fill_board(tenant.pk, members)
    print(f"  board filled:      {members} members in {time.perf_counter() - t0:.1f} s")
    med, worst = _time(lambda: leaderboard.top(tenant.pk, "referrals", n=100, use_redis=False))
    print(f"  top-100 SQL:       median {med:.2f} ms, max {worst:.2f} ms")
    med, worst = _time(lambda: leaderboard.my_rank(tenant.pk, "referrals", members // 2))
    print(f"  my rank SQL:       median {med:.2f} ms, max {worst:.2f} ms")
    if redis_url:
        from django.conf import settings

        settings.REDIS_URL = redis_url
        t0 = time.perf_counter()
        leaderboard.do_rebuild_redis(tenant.pk, "referrals", "all", "all")
        print(f"  redis rebuilt:     {time.perf_counter() - t0:.1f} s")
        med, worst = _time(lambda: leaderboard.top(tenant.pk, "referrals", n=100, use_redis=True))
        print(f"  top-100 Redis:     median {med:.2f} ms, max {worst:.2f} ms")
        r = leaderboard._redis()
        key = leaderboard._zkey(tenant.pk, "referrals|all", "all")
        r.delete(key, key + ":t")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="sqlite")
    ap.add_argument("--redis", default=None)
    ap.add_argument("--postings", type=int, default=5000)
    ap.add_argument("--members", type=int, default=1_000_000)
    args = ap.parse_args()
    label = setup(args.db)
    print(f"ledger bench on {label}")
    baseline()
    bench_postings(args.postings)
    bench_leaderboard(args.members, args.redis)


if __name__ == "__main__":
    main()
