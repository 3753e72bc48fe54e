"""``shequn worker``: runs background tasks (django-tasks-db), the cron scheduler (crontask) and the
connectors' real-time loops (``shequn connectors realtime``: Matrix long-poll sync and Telegram
polling per active connection, outbox delivery as soon as an action commits), each of the two
others as a child process that dies with the worker (:mod:`shequn.core.processes`). Only the first
worker of an installation runs the scheduler (a lock under ``$SHEQUN_HOME/run``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from shequn.core import taskqueue
from shequn.core.processes import single_instance, spawn, stop


class Command(BaseCommand):
    help = "Run the task worker and the cron scheduler."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-scheduler", action="store_true", help="run tasks only (another host schedules)")
        parser.add_argument("--queues", default="*", help="queues to process (default: all)")
        parser.add_argument("--batch", action="store_true", help="run what is queued, then exit")
        parser.add_argument("--no-realtime", action="store_true",
                            help="no connectors real-time loops here (run `shequn connectors realtime` elsewhere)")

    def handle(self, *args: Any, **opts: Any) -> None:
        with single_instance(scheduler_lock_path()) as first:
            want_scheduler = not opts["no_scheduler"] and not opts["batch"]
            if want_scheduler and not first:
                self.stderr.write("调度器已在本机运行 (另一个 worker / demo), 本进程不再启动第二个 / "
                                  "a scheduler already runs for this installation: not starting another")
            children: list[subprocess.Popen[bytes]] = []
            if want_scheduler and first:
                children.append(spawn([sys.executable, "-m", "shequn.cli", "crontask"]))
            if not opts["no_realtime"] and not opts["batch"]:
                children.append(spawn([sys.executable, "-m", "shequn.cli", "connectors", "realtime"]))
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
                stop(children, grace=10)


def scheduler_lock_path() -> Path:
    """One cron scheduler per installation (``$SHEQUN_HOME``): the worker holding this lock runs it."""
    return Path(settings.HOME) / "run" / "scheduler.lock"
