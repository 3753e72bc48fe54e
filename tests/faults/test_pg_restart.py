"""Fault 3: the PostgreSQL primary restarts (``pg_ctlcluster … restart -m immediate``: a crash and
crash recovery) while 160 buyers buy 60 flash-sale units through two gunicorn workers.

The database is a cluster of the test's own (``pg_createcluster`` on a free port, dropped at the end;
the machine's shared cluster is never touched). Requests that meet the restart fail cleanly (5xx,
nothing written; Django's health check drops the dead connection and the next request opens a new
one) and the client retries with its Idempotency-Key. Afterwards: every buyer has an answer, sold =
orders = reservations = stock, each order has its line (no partial write), none lost or duplicated,
and the figures say how long requests failed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ._harness import Answer, Client, Site, figures, free_port, wait_for

VERSION = "15"
STOCK, BUYERS, THREADS = 60, 160, 16

SETUP = """
import json
from django.utils import timezone
from shequn.commerce import services as c
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.core.services import do_create_api_key
from shequn.members.models import Member
t = Tenant.objects.create(slug="pgr", name="重启演练")
p = Principal.system(t.pk)
prod = c.do_create_product(p, c.NewProduct(name="体验装",
                                           skus=[{"code": "T", "name": "体验装", "price_fen": 1990, "stock": 1000}]))
now = timezone.now()
fs = c.do_create_flash_sale(p, name="秒杀", sku_id=prod.skus.get().pk, price_fen=990, stock=%(stock)d,
                            starts_at=now - timezone.timedelta(minutes=1), ends_at=now + timezone.timedelta(hours=1))
Member.objects.bulk_create([Member(tenant=t, display_name=f"m{i}", first_seen_at=now) for i in range(%(buyers)d)])
_k, token = do_create_api_key(p, name="f", scopes=["*"])
ms = list(Member.objects.filter(tenant=t).values_list("pk", flat=True))
print(json.dumps({"fs": fs.pk, "token": token, "members": ms}))
"""


class Cluster:
    def __init__(self, name: str) -> None:
        self.name, self.port = name, free_port()

    def ctl(self, *args: str) -> None:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", VERSION, self.name, *args], check=True,
                       capture_output=True, timeout=120)

    def create(self) -> Cluster:
        subprocess.run(["pg_createcluster", "-p", str(self.port), VERSION, self.name, "--", "-A", "trust"],
                       check=True, capture_output=True, timeout=180)
        self.ctl("start")
        return self

    def drop(self) -> None:
        subprocess.run(["pg_dropcluster", "--stop", VERSION, self.name], check=False, capture_output=True, timeout=120)

    def url(self, db: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def up(self) -> bool:
        try:
            psycopg.connect(self.url("postgres"), connect_timeout=1).close()
            return True
        except psycopg.Error:
            return False


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0 or not shutil.which("pg_createcluster"):
        pytest.skip("needs root and Debian's postgresql-common (pg_createcluster)")
    c = Cluster(f"faults{os.getpid()}").create()
    try:
        yield c
    finally:
        c.drop()


def test_postgres_restarts_under_load(cluster: Cluster, tmp_path: Path):
    wait_for(cluster.up, 60, "the test cluster")
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as c:
        c.execute("CREATE DATABASE shequn")
    site = Site(tmp_path / "site", cluster.url("shequn"))
    try:
        out = subprocess.run([sys.executable, "-m", "shequn.cli", "migrate", "-v", "0"], env=site.env,
                             capture_output=True, text=True, timeout=600, check=False)
        assert out.returncode == 0, out.stderr[-3000:]
        out = subprocess.run([sys.executable, "-m", "shequn.cli", "shell", "-c",
                              SETUP % {"stock": STOCK, "buyers": BUYERS}], env=site.env, capture_output=True,
                             text=True, timeout=300, check=False)
        assert out.returncode == 0, out.stderr[-3000:]
        world = json.loads(out.stdout.strip().splitlines()[-1])
        port = site.serve(workers=2, threads=4)
        client = Client(port, world["token"], retries=150, pause=0.2, deadline=90)
        answers: dict[int, Answer] = {}
        lock = threading.Lock()
        url = f"/api/v1/commerce/flash-sales/{world['fs']}/buy"

        def buyer(members: list[int]) -> None:
            for m in members:
                a = client.post(url, {"member_id": m}, key=f"pgr-{m}")
                with lock:
                    answers[m] = a

        marks: dict[str, float] = {}

        def restart() -> None:
            wait_for(lambda: len(answers) >= BUYERS // 5, 120, "a fifth of the buyers answered")
            marks["down"] = time.monotonic()
            cluster.ctl("restart", "-m", "immediate")
            marks["up"] = time.monotonic()

        t0 = time.monotonic()
        threads = [threading.Thread(target=buyer, args=(world["members"][i::THREADS],)) for i in range(THREADS)]
        r = threading.Thread(target=restart)
        r.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        r.join(timeout=120)
        elapsed = time.monotonic() - t0
    finally:
        site.stop()

    with psycopg.connect(cluster.url("shequn")) as c:
        stock = c.execute("SELECT stock FROM commerce_flashsale WHERE id = %s", [world["fs"]]).fetchone()[0]
        orders = dict(c.execute("SELECT member_id, id FROM commerce_order WHERE flash_sale_id = %s",
                                [world["fs"]]).fetchall())
        per_member = Counter(m for (m,) in c.execute("SELECT member_id FROM commerce_order WHERE flash_sale_id = %s",
                                                      [world["fs"]]).fetchall())
        reservations = c.execute("SELECT count(*) FROM commerce_flashreservation WHERE flash_sale_id = %s",
                                 [world["fs"]]).fetchone()[0]
        partial = c.execute("SELECT count(*) FROM commerce_order o WHERE o.flash_sale_id = %s AND NOT EXISTS "
                            "(SELECT 1 FROM commerce_orderline l WHERE l.order_id = o.id)", [world["fs"]]).fetchone()[0]
    ok = {m: a.body["order"]["id"] for m, a in answers.items() if a.status == 200}
    unanswered = [m for m in world["members"] if answers.get(m, Answer(0, {}, 0, 0)).status == 0]
    # from the database answering again to the first buyer answered after it
    after_up = [a.done for a in answers.values() if a.status and a.done >= marks.get("up", 1e18)]
    recovery = min(after_up) - marks["up"] if after_up else -1.0
    lost = len(set(ok.items()) ^ set(orders.items()))
    figures("postgres_restart_under_load", attempts=sum(a.attempts for a in answers.values()), committed=len(orders),
            sold=STOCK - stock, client_errors=client.errors, unanswered=len(unanswered), lost=lost,
            duplicated=sum(n - 1 for n in per_member.values()), partial_writes=partial,
            restart_seconds=marks.get("up", 0) - marks.get("down", 0), recovery_seconds=recovery, seconds=elapsed)
    assert "up" in marks
    assert not unanswered and {a.status for a in answers.values()} <= {200, 409}
    assert client.errors > 0, "no request met the restart: the test did not test it"
    assert STOCK - stock == len(orders) == reservations == STOCK
    assert lost == 0 and partial == 0 and max(per_member.values()) == 1
