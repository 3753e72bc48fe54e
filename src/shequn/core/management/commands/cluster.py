"""``shequn cluster up|down|status``: the multi-process layout on one machine (``deploy/cluster.sh``).

A PostgreSQL primary of its own, a streaming replica (``pg_basebackup -R``), PgBouncer in
transaction mode, ``--web`` × ``shequn serve`` and ``--workers`` × ``shequn worker``, with
``SHEQUN_DATABASE_REPLICA_URL`` set so analytics and console list reads go to the replica. Needs
root and Debian's ``postgresql-common`` and ``pgbouncer`` packages. The options become the script's
environment; see the script's header and docs/operations.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

import shequn

SCRIPT = Path(shequn.__file__).resolve().parents[2] / "deploy" / "cluster.sh"


class Command(BaseCommand):
    help = "Start, stop or inspect the local multi-process cluster (deploy/cluster.sh)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["up", "down", "status"])
        parser.add_argument("--name", help="cluster name prefix (default shequn)")
        parser.add_argument("--web", type=int, help="shequn serve processes (default 2)")
        parser.add_argument("--workers", type=int, help="shequn worker processes (default 2)")
        parser.add_argument("--redis-url", help="SHEQUN_REDIS_URL for the processes")
        parser.add_argument("--state", help="pid files, logs and SHEQUN_HOME (default /tmp/shequn-cluster)")
        parser.add_argument("--script", default=os.environ.get("SHEQUN_CLUSTER_SCRIPT") or str(SCRIPT),
                            help="path of cluster.sh (a source checkout's deploy/cluster.sh)")

    def handle(self, *args: Any, **opts: Any) -> None:
        script = Path(opts["script"])
        if not script.is_file():
            raise CommandError(f"{script} not found: run from a source checkout or pass --script")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SHEQUN_", "DJANGO_"))}
        env.setdefault("PYTHON", sys.executable)
        for opt, var in (("name", "NAME"), ("web", "WEB"), ("workers", "WORKERS"), ("redis_url", "REDIS_URL"),
                         ("state", "STATE")):
            if opts.get(opt) is not None:
                env[var] = str(opts[opt])
        done = subprocess.run(["bash", str(script), opts["action"]], env=env, check=False)  # noqa: S603, S607
        if done.returncode:
            raise CommandError(f"cluster.sh {opts['action']} exited {done.returncode}")
