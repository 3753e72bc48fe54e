"""``shequn worker``: runs background tasks (django-tasks-db) and the cron scheduler (crontask)."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the task worker and the cron scheduler."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-scheduler", action="store_true", help="run tasks only (another host schedules)")
        parser.add_argument("--queues", default="*", help="queues to process (default: all)")
        parser.add_argument("--batch", action="store_true", help="run what is queued, then exit")

    def handle(self, *args: Any, **opts: Any) -> None:
        scheduler = None
        if not opts["no_scheduler"] and not opts["batch"]:
            scheduler = subprocess.Popen([sys.executable, "-m", "shequn.cli", "crontask"])
        try:
            kwargs: dict[str, Any] = {"queue_name": opts["queues"], "interval": 1, "reload": False}
            if opts["batch"]:
                kwargs["batch"] = True
            call_command("db_worker", **kwargs)
        finally:
            if scheduler is not None:
                scheduler.send_signal(signal.SIGTERM)
                try:
                    scheduler.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    scheduler.kill()
