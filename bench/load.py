"""HTTP load on the flash-sale buy endpoint, from outside: ``shequn serve`` (gunicorn) on a throw-away
PostgreSQL database, an HTTP client in this process (keep-alive connections, one per client thread),
a bounded run.

    .venv/bin/python bench/load.py                       # 2 gunicorn workers x 8 threads, 64 in flight
    .venv/bin/python bench/load.py --workers 2 --threads 32 --clients 128 --batch   # SHEQUN_FLASH_BATCH=1
    .venv/bin/python bench/load.py --gate                # the Redis-gated sale (202 "queued")
    .venv/bin/python bench/load.py --kill-one            # kill -9 one gunicorn worker mid-run
    .venv/bin/python bench/load.py --client wrk --gate   # wrk (C, Debian's package) as the outside client

Environment: SHEQUN_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/shequn_load; the run uses
``bench_<name>``, created and dropped), SHEQUN_BENCH_REDIS_URL (default redis://127.0.0.1:6379/6).

Prints requests answered per second, p50/p99 latency, the error rate (5xx and broken connections;
sold-out 409s are answers), orders committed and oversold (must be 0). Each buyer is a distinct
member; stock is far below demand, as in a real flash sale. No retries: an error counts as one.

Two outside clients: ``--client python`` (threads of ``http.client`` in this process: simple, but on
a 2-core box it takes a core of its own near 500 requests/s) and ``--client wrk`` (Debian's ``wrk``
with ``bench/load_wrk.lua``: each connection posts a distinct member; a small fraction of a core at
thousands of requests/s). Oversold is counted in the database after the run (orders of the sale,
after the Redis gate's consumer has drained), never from the client's codes alone."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import redis

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("SHEQUN_BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/shequn_load")
REDIS_URL = os.environ.get("SHEQUN_BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")

SETUP = """
import json
from django.utils import timezone
from shequn.commerce import services as c
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.core.services import do_create_api_key
from shequn.members.models import Member
t = Tenant.objects.create(slug="load", name="压测")
p = Principal.system(t.pk)
prod = c.do_create_product(p, c.NewProduct(name="体验装", skus=[{"code": "T", "name": "体验装", "price_fen": 1990,
                                                                "stock": 10_000_000}]))
now = timezone.now()
fs = c.do_create_flash_sale(p, name="秒杀", sku_id=prod.skus.get().pk, price_fen=990, stock=%(stock)d,
                            starts_at=now - timezone.timedelta(minutes=1), ends_at=now + timezone.timedelta(hours=1),
                            use_redis_gate=%(gate)s)
Member.objects.bulk_create([Member(tenant=t, display_name=f"m{i}", first_seen_at=now) for i in range(%(buyers)d)],
                           batch_size=5000)
_k, token = do_create_api_key(p, name="load", scopes=["commerce.write", "engagement.write", "referrals.write",
                                                      "activity.write"])
ms = list(Member.objects.filter(tenant=t).values_list("pk", flat=True))
from shequn.referrals.services import do_get_or_create_link
link = do_get_or_create_link(p, kind="channel", channel="poster", label="海报")
from shequn.connectors.services import do_create_connection
from shequn.communities.models import ChatGroup, Community
community = Community.objects.create(tenant=t, name="压测社群")
# outbound calls of this connection go to a closed local port (the bench never reaches Telegram)
tg = do_create_connection(p, platform="telegram", name="压测机器人", config={"api_base": "http://127.0.0.1:9/"},
                          secret_values={"bot_token": "1:" + "x" * 30, "webhook_secret": "bench-secret"},
                          default_community_id=community.pk, verify=False)
ChatGroup.objects.create(tenant=t, community=community, platform="telegram", external_id="-1001234567890",
                         name="压测群")
print(json.dumps({"fs": fs.pk, "token": token, "members": ms, "link": link.code, "hook": tg.hook_key,
                  "tg_secret": "bench-secret"}))
"""

#: the endpoints ``--endpoint`` drives (each request a distinct member): body kind and path
ENDPOINTS = {
    "buy": ("member", "/api/v1/commerce/flash-sales/{fs}/buy"),  # 秒杀
    "checkin": ("member", "/api/v1/engagement/checkins"),  # 签到
    "click": ("member", "/api/v1/referrals/links/{link}/click"),  # an invite link's click (a member arriving)
    "events": ("event", "/api/v1/activity/events"),  # another system's activity webhook, one event a request
    "telegram": ("telegram", "/hooks/telegram/{hook}/ X-Telegram-Bot-Api-Secret-Token:{tg_secret}"),  # a platform's webhook
}
#: ``--endpoint mix``: every endpoint above in turn (a steady mixed load of members and platforms)
MIX = ("buy", "checkin", "click", "events", "telegram")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))] if s else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin(sql: str) -> None:
    base = PG_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(sql)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--clients", type=int, default=64, help="requests in flight (client threads)")
    ap.add_argument("--buyers", type=int, default=6000)
    ap.add_argument("--stock", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=20.0, help="upper bound of the run")
    ap.add_argument("--batch", action="store_true", help="SHEQUN_FLASH_BATCH=1 (group commit)")
    ap.add_argument("--gate", action="store_true", help="a Redis-gated sale")
    ap.add_argument("--kill-one", action="store_true", help="kill -9 one gunicorn worker a third into the run")
    ap.add_argument("--profile", metavar="DIR", help="sample each gunicorn worker with py-spy during the run "
                    "(collapsed stacks in DIR/worker-<pid>.txt; needs py-spy)")
    ap.add_argument("--endpoint", choices=[*sorted(ENDPOINTS), "mix"], default="buy",
                    help="what each request does (wrk client): buy in the flash sale, check in, click an invite "
                         "link, post an activity event (webhook of another system), a Telegram webhook update, "
                         "or all of them in turn (mix)")
    ap.add_argument("--client", choices=["python", "wrk"], default="python",
                    help="the outside client: threads of http.client in this process, or wrk (C)")
    args = ap.parse_args()

    db = "bench_" + PG_URL.rsplit("/", 1)[1]
    url = PG_URL.rsplit("/", 1)[0] + "/" + db
    admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{db}"')
    # the bench's own Redis database: a gate left by an earlier run (same sale id) would sell nothing
    redis.Redis.from_url(REDIS_URL).flushdb()
    home = tempfile.mkdtemp(prefix="shequn-load-")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "DJANGO_SETTINGS_MODULE": "shequn.settings",
           "SHEQUN_HOME": home, "SHEQUN_DATABASE_URL": url, "SHEQUN_REDIS_URL": REDIS_URL,
           "SHEQUN_LOG_LEVEL": "WARNING"}
    if args.batch:
        env["SHEQUN_FLASH_BATCH"] = "1"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([sys.executable, "-m", "shequn.cli", "migrate", "-v", "0"], env=env, check=True)
        out = subprocess.run([sys.executable, "-m", "shequn.cli", "shell", "-c", SETUP % {
            "stock": args.stock, "buyers": args.buyers, "gate": args.gate}], env=env, check=True,
            capture_output=True, text=True)
        world = json.loads(out.stdout.strip().splitlines()[-1])
        port = free_port()
        log = open(Path(home) / "web.log", "wb")  # noqa: SIM115 - lives as long as the server
        web = subprocess.Popen([sys.executable, "-m", "shequn.cli", "serve", "--port", str(port), "--workers",
                                str(args.workers), "--threads", str(args.threads), "--no-control-socket"],
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(web)
        if args.gate or args.endpoint in ("events", "telegram", "mix"):  # consumers of the queued work
            procs.append(subprocess.Popen([sys.executable, "-m", "shequn.cli", "worker", "--no-scheduler",
                                           "--no-realtime"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
        for _ in range(600):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/static/none")
                c.getresponse().read()
                break
            except OSError:
                time.sleep(0.1)
        # every worker has built its URLconf at start (wsgi.py); a few requests per worker open
        # their database and Redis connections, as a running server's would be
        for _ in range(8 * args.workers):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("GET", "/api/v1/me", headers={"Authorization": f"Bearer {world['token']}"})
            c.getresponse().read()
            c.close()
        # workers boot in parallel and each builds its URLconf (wsgi.py): start when they all idle
        settle = time.monotonic() + 60
        before = tree_cpu_seconds(web.pid)
        while time.monotonic() < settle:
            time.sleep(1.0)
            now_cpu = tree_cpu_seconds(web.pid)
            if now_cpu - before < 0.05:
                break
            before = now_cpu
        if args.client == "wrk":
            run_wrk(args, port, world, web.pid, home)
        else:
            run(args, port, world, web.pid)
        report_db(args, url, world)
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
        admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def children(pid: int) -> list[int]:
    """The direct children of a process (the gunicorn arbiter's workers), from /proc."""
    return [int(x) for t in Path(f"/proc/{pid}/task").glob("*") for x in (t / "children").read_text().split()]


def kill_one_later(args: argparse.Namespace, serve_pid: int) -> threading.Thread:
    """SIGKILL one gunicorn worker (a child of the arbiter) a third into the run."""
    def kill() -> None:
        time.sleep(args.seconds / 3)
        kids = children(serve_pid)
        if kids:
            os.kill(kids[0], signal.SIGKILL)
    killer = threading.Thread(target=kill)
    killer.start()
    return killer


def tree_cpu_seconds(root_pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (the gunicorn arbiter and its
    workers), from /proc: what the app spent, whatever else the machine is doing."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            todo += children(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def profile_workers(args: argparse.Namespace, serve_pid: int) -> list[subprocess.Popen[bytes]]:
    if not args.profile:
        return []
    Path(args.profile).mkdir(parents=True, exist_ok=True)
    kids = children(serve_pid)
    return [subprocess.Popen(["py-spy", "record", "--format", "raw", "--nonblocking", "--gil", "-r", "200",
                              "-d", str(int(args.seconds) - 1), "-o", str(Path(args.profile) / f"worker-{pid}.txt"),
                              "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in kids]


def run_wrk(args: argparse.Namespace, port: int, world: dict, serve_pid: int, home: str) -> None:
    """The same load from wrk: ``--clients`` connections on 2 threads for ``--seconds``."""
    members_file = Path(home) / "members.txt"
    members_file.write_text("\n".join(str(m) for m in world["members"]) + "\n")
    names = MIX if args.endpoint == "mix" else (args.endpoint,)
    mix = "\n".join(f"{ENDPOINTS[n][0]} {ENDPOINTS[n][1].format(**world)}" for n in names)
    env = {**os.environ, "SHEQUN_WRK_MEMBERS": str(members_file), "SHEQUN_WRK_THREADS": "2",
           "SHEQUN_WRK_MIX": mix, "SHEQUN_WRK_TOKEN": world["token"], "SHEQUN_WRK_SALT": str(int(time.time()))}
    killer = kill_one_later(args, serve_pid) if args.kill_one else None
    spies = profile_workers(args, serve_pid)
    cpu0 = tree_cpu_seconds(serve_pid)
    out = subprocess.run(["wrk", "-t", "2", "-c", str(args.clients), "-d", f"{args.seconds:g}s", "--timeout", "10s",
                          "-s", str(ROOT / "bench" / "load_wrk.lua"), f"http://127.0.0.1:{port}"],
                         env=env, check=True, capture_output=True, text=True)
    if killer:
        killer.join()
    cpu = tree_cpu_seconds(serve_pid) - cpu0
    for spy in spies:
        spy.wait()
    r = json.loads(out.stdout.strip().splitlines()[-1])
    n, secs = r["requests"], r["seconds"]
    errors = r["socket_errors"] + r["timeouts"] + r["c5xx"]
    mode = "gate" if args.gate else ("batch" if args.batch else "safe")
    if args.endpoint != "buy":
        mode = args.endpoint
    print(f"wrk  {mode:5s} workers={args.workers} threads={args.threads} in_flight={args.clients}"
          f"{' kill-one' if args.kill_one else ''}: {n / secs:7.0f} req/s  p50 {r['p50_ms']:6.1f} ms  "
          f"p99 {r['p99_ms']:7.1f} ms  max {r['max_ms']:7.1f} ms  errors {errors / max(n, 1):.2%}  answered {n} in "
          f"{secs:.1f} s  codes 200={r['c200']} 202={r['c202']} 409={r['c409']} 4xx={r['c4xx']} 5xx={r['c5xx']} "
          f"socket_errors={r['socket_errors']} timeouts={r['timeouts']}")
    print(f"app CPU (gunicorn workers, user + system): {cpu:.1f} s = {cpu * 1000 / max(n, 1):.2f} ms per request "
          f"(a 2-core box gives at most {2000 / max(cpu * 1000 / max(n, 1), 0.001):,.0f} requests/s to the app alone); "
          f"load average at the end {os.getloadavg()[0]:.1f}")


def report_db(args: argparse.Namespace, url: str, world: dict) -> None:
    """What the database holds once the gate's consumer has drained: units reserved and orders written
    for the sale (never more than the stock), the stock column (never negative)."""
    deadline = time.monotonic() + 60
    last = None
    with psycopg.connect(url, autocommit=True) as c:
        while True:
            reserved, orders = c.execute(
                "SELECT coalesce(sum(quantity), 0), count(order_id) FROM commerce_flashreservation "
                "WHERE flash_sale_id = %s AND status <> 'released'", [world["fs"]]).fetchone()
            stock = c.execute("SELECT stock FROM commerce_flashsale WHERE id = %s", [world["fs"]]).fetchone()[0]
            if (reserved, stock) == last or time.monotonic() > deadline or reserved >= args.stock:
                break
            last = (reserved, stock)
            time.sleep(2)
    print(f"database: units reserved {reserved} of stock {args.stock}, orders {orders}, stock left {stock}, "
          f"oversold {max(0, reserved - args.stock)}, stock negative {stock < 0}")


def run(args: argparse.Namespace, port: int, world: dict, serve_pid: int) -> None:
    members = list(world["members"])
    path = f"/api/v1/commerce/flash-sales/{world['fs']}/buy"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {world['token']}"}
    lat: list[float] = []
    codes: dict[int, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + args.seconds
    it = iter(members)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        mine_codes: dict[int, int] = {}
        while time.monotonic() < deadline:
            with lock:
                m = next(it, None)
            if m is None:
                break
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=json.dumps({"member_id": m}), headers=headers)
                r = conn.getresponse()
                r.read()
                code = r.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                code = 0
            mine.append((time.perf_counter() - t0) * 1000)
            mine_codes[code] = mine_codes.get(code, 0) + 1
        with lock:
            lat.extend(mine)
            for k, v in mine_codes.items():
                codes[k] = codes.get(k, 0) + v

    killer = kill_one_later(args, serve_pid) if args.kill_one else None
    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    if killer:
        killer.join()
    n = len(lat)
    errors = codes.get(0, 0) + sum(v for k, v in codes.items() if k >= 500)
    sold = codes.get(200, 0) + codes.get(202, 0)
    mode = "gate" if args.gate else ("batch" if args.batch else "safe")
    print(f"http {mode:5s} workers={args.workers} threads={args.threads} in_flight={args.clients}"
          f"{' kill-one' if args.kill_one else ''}: {n / secs:7.0f} req/s  p50 {pct(lat, 0.5):6.1f} ms  "
          f"p99 {pct(lat, 0.99):7.1f} ms  errors {errors / max(n, 1):.2%}  answered {n} in {secs:.1f} s  "
          f"ordered/queued {sold}  oversold {max(0, sold - args.stock)}  codes {dict(sorted(codes.items()))}")


if __name__ == "__main__":
    main()
