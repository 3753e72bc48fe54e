"""``shequn connectors deliver [--loop]`` — run the outbox worker (safe to run several at once);
``shequn connectors matrix-sync [--loop]`` — the Matrix bot's sync loop (long-poll);
``shequn connectors realtime`` — every real-time loop in one process (what ``shequn worker`` runs):
Matrix long-poll sync and Telegram polling per active connection (the list re-read every few
seconds) and outbox delivery woken as soon as an action commits;
``shequn connectors status`` — connections and their health."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from shequn.connectors import selectors, services
from shequn.connectors.models import Connection
from shequn.connectors.realtime import Runner


class Command(BaseCommand):
    help = "Connectors: deliver the outbox, sync Matrix, show health"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["deliver", "matrix-sync", "realtime", "status"])
        parser.add_argument("--loop", action="store_true", help="keep running")
        parser.add_argument("--limit", type=int, default=200, help="deliver: actions per round")
        parser.add_argument("--idle", type=float, default=1.0, help="deliver: seconds to sleep when idle")
        parser.add_argument("--connection", type=int, help="matrix-sync: one connection id")
        parser.add_argument("--timeout", type=int, default=25, help="matrix-sync: long-poll seconds")
        parser.add_argument("--refresh", type=float, default=3.0,
                            help="realtime / matrix-sync --loop: seconds between re-reads of the connection list")
        parser.add_argument("--poll", type=float, default=0.5,
                            help="realtime: seconds between checks for due outbox rows (not on PostgreSQL)")
        parser.add_argument("--no-inbound", action="store_true", help="realtime: outbox delivery only")
        parser.add_argument("--no-outbound", action="store_true", help="realtime: inbound loops only")

    def handle(self, *args: Any, **opts: Any) -> None:
        getattr(self, "_" + opts["action"].replace("-", "_"))(opts)

    def _deliver(self, opts: dict[str, Any]) -> None:
        services.do_release_abandoned()  # what a delivery process of this host left when it died
        while True:
            stats = services.do_deliver_due(opts["limit"])
            if stats.claimed or stats.deferred:
                self.stdout.write(" ".join(f"{k}={v}" for k, v in stats.as_dict().items() if v))
            if not opts["loop"]:
                return
            if not stats.claimed:
                time.sleep(opts["idle"])

    def _realtime(self, opts: dict[str, Any]) -> None:
        self.stdout.write("connectors realtime: started")
        Runner(refresh=opts["refresh"], poll=opts["poll"], long_poll=opts["timeout"],
               inbound=not opts["no_inbound"], outbound=not opts["no_outbound"],
               out=self.stdout.write).run_forever()

    def _matrix_sync(self, opts: dict[str, Any]) -> None:
        if opts["loop"] and not opts["connection"]:
            # one long-poll thread per connection, the list re-read every few seconds

            Runner(refresh=opts["refresh"], long_poll=opts["timeout"], outbound=False, platforms=("matrix",),
                   out=self.stdout.write).run_forever()
            return
        ids = selectors.active_connection_ids("matrix", only=opts["connection"])
        while True:
            for cid in ids:
                try:
                    out = services.do_matrix_sync(cid, timeout_ms=(opts["timeout"] * 1000 // max(1, len(ids)))
                                                  if opts["loop"] else 0)
                    if out.get("stored"):
                        self.stdout.write(f"connection {cid}: {out}")
                except Exception as exc:
                    self.stderr.write(f"connection {cid}: {type(exc).__name__}")
                    time.sleep(2)
            if not opts["loop"]:
                return
            if not ids:
                time.sleep(opts["refresh"])

    def _status(self, opts: dict[str, Any]) -> None:
        for conn in Connection.objects.order_by("tenant_id", "pk"):
            h = selectors.health(conn)
            self.stdout.write(
                f"#{conn.pk} [{conn.platform}] {conn.name} tenant={conn.tenant_id} active={conn.is_active} "
                f"last_event={h['last_event_at']} lag={h['lag_seconds']}s errors={h['error_count']} "
                f"backlog={h['outbox_backlog']} dead={h['dead_letters']}")
