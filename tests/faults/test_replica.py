"""Replica routing against a real streaming replica (``deploy/cluster.sh up``: a primary cluster, a
``pg_basebackup -R`` replica, PgBouncer in transaction mode; no web/worker processes of its own).

``shequn serve`` runs with ``SHEQUN_DATABASE_URL`` → PgBouncer (``SHEQUN_DATABASE_POOLER=transaction``),
``SHEQUN_DATABASE_REPLICA_URL`` → the replica, a 12 s lag bound and a 30 s sticky window. The replica's
replay is **paused** (``pg_wal_replay_pause()``) so that what it serves is visibly stale, then:

1. member A (an API key) creates a community (the primary) and at once reads its analytics board:
   200 — its own write is read from the primary (the token's pin in Redis, across gunicorn workers);
2. caller B reads the same board: 404 — B's analytics reads are served by the replica, which has not
   replayed the write (staleness, but bounded:)
3. once the replica is more than the bound behind, B's read goes to the primary: 200 while replay is
   still paused;
4. replay resumed, the replica catches up and B's reads are served by it again (its transaction
   count grows by at least one per read).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ._harness import ROOT, Site, figures, free_port, wait_for

MAX_LAG, STICKY = 12, 30

SETUP = """
import json
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.core.services import do_create_api_key
t = Tenant.objects.create(slug="rep", name="副本演练")
p = Principal.system(t.pk)
_a, a = do_create_api_key(p, name="a", scopes=["*"])
_b, b = do_create_api_key(p, name="b", scopes=["analytics.read"])
print(json.dumps({"a": a, "b": b}))
"""


class Cluster:
    def __init__(self) -> None:
        self.state = Path(tempfile.mkdtemp(prefix="shequn-faults-rep-", dir="/tmp"))
        self.name = f"faultsrep{os.getpid()}"
        self.primary, self.replica, self.bouncer = free_port(), free_port(), free_port()
        self.env = {**os.environ, "NAME": self.name, "PRIMARY_PORT": str(self.primary),
                    "REPLICA_PORT": str(self.replica), "BOUNCER_PORT": str(self.bouncer), "WEB": "0",
                    "WORKERS": "0", "STATE": str(self.state), "PYTHON": sys.executable}
        for k in list(self.env):
            if k.startswith(("SHEQUN_", "DJANGO_")):
                del self.env[k]

    def run(self, action: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(ROOT / "deploy" / "cluster.sh"), action], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def sql(self, port: int, query: str, db: str = "shequn") -> Any:
        with psycopg.connect(f"postgres://postgres@127.0.0.1:{port}/{db}", autocommit=True) as c:
            cur = c.execute(query)
            return cur.fetchone() if cur.description else None


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    bouncer = shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if os.geteuid() != 0 or not shutil.which("pg_createcluster") or not bouncer:
        pytest.skip("needs root, Debian's postgresql-common and pgbouncer")
    c = Cluster()
    try:
        up = c.run("up")
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        yield c
    finally:
        c.run("down", timeout=180)
        shutil.rmtree(c.state, ignore_errors=True)


def get(port: int, token: str, path: str) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    status = c.getresponse().status
    c.close()
    return status


def post(port: int, token: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", path, body=json.dumps(body),
              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    r = c.getresponse()
    out = (r.status, json.loads(r.read() or b"{}"))
    c.close()
    return out


def test_reads_hit_the_replica_and_a_members_own_writes_are_read_from_the_primary(cluster, redis_server, tmp_path):
    bouncer = f"postgres://postgres@127.0.0.1:{cluster.bouncer}/shequn"
    site = Site(tmp_path / "site", bouncer, redis_server.url, SHEQUN_DATABASE_POOLER="transaction",
                SHEQUN_DATABASE_REPLICA_URL=f"postgres://postgres@127.0.0.1:{cluster.replica}/shequn",
                SHEQUN_DATABASE_REPLICA_MAX_LAG=str(MAX_LAG), SHEQUN_DATABASE_REPLICA_STICKY=str(STICKY))
    try:
        out = subprocess.run([sys.executable, "-m", "shequn.cli", "shell", "-c", SETUP], env=site.env,
                             capture_output=True, text=True, timeout=300, check=False)
        assert out.returncode == 0, out.stderr[-3000:]
        keys = json.loads(out.stdout.strip().splitlines()[-1])
        port = site.serve(workers=2, threads=4)

        def caught_up() -> bool:
            return bool(cluster.sql(cluster.replica, "SELECT pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()")[0])

        # a fresh replayed transaction, then pause: from here the replica's lag grows with the clock
        cluster.sql(cluster.primary, "CREATE TABLE IF NOT EXISTS faults_tick (t timestamptz)", db="postgres")
        cluster.sql(cluster.primary, "INSERT INTO faults_tick VALUES (now())", db="postgres")
        wait_for(caught_up, 30, "the replica caught up")
        cluster.sql(cluster.replica, "SELECT pg_wal_replay_pause()")
        paused_at = time.monotonic()

        status, community = post(port, keys["a"], "/api/v1/communities", {"name": "副本社群"})
        assert status == 201, community
        board = f"/api/v1/analytics/communities/{community['id']}/dashboard?days=7"
        own = get(port, keys["a"], board)  # member A: its own write, from the primary
        other = get(port, keys["b"], board)  # caller B: the replica, which has not replayed it
        stale_seen_within = time.monotonic() - paused_at
        assert stale_seen_within < MAX_LAG, "too slow to observe the staleness window on this machine"
        assert own == 200, "the member's own write was not read from the primary"
        assert other == 404, "caller B's analytics read did not come from the (paused) replica"

        # past the bound, B's reads go to the primary although replay is still paused
        bounded = wait_for(lambda: get(port, keys["b"], board) == 200, MAX_LAG + 20, "B served by the primary",
                           step=0.5) + stale_seen_within
        paused = bool(cluster.sql(cluster.replica, "SELECT pg_get_wal_replay_pause_state() <> 'not paused'")[0])
        assert paused

        cluster.sql(cluster.replica, "SELECT pg_wal_replay_resume()")
        wait_for(caught_up, 30, "the replica caught up after resume")
        time.sleep(1.5)  # the routers' lag reading (cached 1 s) sees it

        def replica_xacts() -> int:
            return int(cluster.sql(cluster.replica, "SELECT pg_stat_clear_snapshot(), xact_commit FROM "
                                   "pg_stat_database WHERE datname = 'shequn'")[1])

        before = replica_xacts()
        reads = 20
        answers = [get(port, keys["b"], board) for _ in range(reads)]
        assert answers == [200] * reads
        # the standby's statistics are flushed by its backends within ~10 s of going idle
        wait_for(lambda: replica_xacts() - before >= reads, 30, "the replica served the reads", step=0.5)
        on_replica = replica_xacts() - before
        figures("replica_routing", attempts=reads + 3, own_write_from_primary=own == 200,
                stale_read_from_replica=other == 404, lag_bound_seconds=MAX_LAG,
                stale_until_primary_seconds=bounded, replica_transactions=on_replica, lost=0, duplicated=0)
    finally:
        site.stop()
