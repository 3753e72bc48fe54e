"""``shequn serve``: the production web server (gunicorn, N workers)."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Serve shequn with gunicorn (production)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("SHEQUN_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("SHEQUN_PORT", "8000")))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("SHEQUN_WORKERS", "2")),
                            help="gunicorn worker processes (default 2; rule of thumb 2 × cores)")
        parser.add_argument("--threads", type=int, default=4)

    def handle(self, *args: Any, **opts: Any) -> None:
        argv = [
            sys.executable, "-m", "gunicorn", "shequn.wsgi:application",
            "--bind", f"{opts['host']}:{opts['port']}", "--workers", str(opts["workers"]),
            "--threads", str(opts["threads"]), "--worker-class", "gthread", "--access-logfile", "-",
            "--timeout", "60", "--graceful-timeout", "20",
        ]
        os.execvp(argv[0], argv)  # noqa: S606 - replace this process with gunicorn
