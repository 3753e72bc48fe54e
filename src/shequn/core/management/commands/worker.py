"""``shequn worker``: runs background tasks (django-tasks-db), the cron scheduler (crontask) and the
connectors' real-time loops (``shequn connectors realtime``: Matrix long-poll sync and Telegram
polling per active connection, outbox delivery as soon as an action commits), each of the two
others as a child process."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from shequn.core import taskqueue


class Command(BaseCommand):
    help = "Run the task worker and the cron scheduler."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-scheduler", action="store_true", help="run tasks only (another host schedules)")
        parser.add_argument("--queues", default="*", help="queues to process (default: all)")
        parser.add_argument("--batch", action="store_true", help="run what is queued, then exit")
        parser.add_argument("--no-realtime", action="store_true",
                            help="no connectors real-time loops here (run `shequn connectors realtime` elsewhere)")

    def handle(self, *args: Any, **opts: Any) -> None:
        children: list[subprocess.Popen[bytes]] = []
        if not opts["no_scheduler"] and not opts["batch"]:
            children.append(subprocess.Popen([sys.executable, "-m", "shequn.cli", "crontask"]))
        if not opts["no_realtime"] and not opts["batch"]:
            children.append(subprocess.Popen([sys.executable, "-m", "shequn.cli", "connectors", "realtime"]))
        # a worker killed on this host left its task RUNNING: run it again now, not after the lease
        requeued = taskqueue.do_requeue_abandoned()
        if requeued:
            self.stderr.write(f"requeued {requeued} task(s) a dead worker left behind")
        try:
            kwargs: dict[str, Any] = {"queue_name": opts["queues"], "interval": 1, "reload": False,
                                      "worker_id": taskqueue.new_worker_id()}
            if opts["batch"]:
                kwargs["batch"] = True
            call_command("db_worker", **kwargs)
        finally:
            for child in children:
                child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
