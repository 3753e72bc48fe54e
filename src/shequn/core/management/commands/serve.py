"""``shequn serve``: the production web server (gunicorn, N workers).

gunicorn's control socket defaults to ``~/.gunicorn/gunicorn.ctl`` — one path for every instance on
the host, so a second ``serve`` (another port, another tenant's install) would take the first one's
socket. Each instance gets its own under ``$SHEQUN_HOME/run/`` (named by host and port), or none
with ``--no-control-socket`` (also when the path would be too long for a Unix socket)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

#: the longest path a Unix domain socket accepts (sun_path is 108 bytes on Linux, 104 on BSD)
MAX_SOCKET_PATH = 100


def control_socket_args(host: str, port: int, *, path: str | None = None, disabled: bool = False) -> list[str]:
    """gunicorn arguments placing this instance's control socket (or disabling it)."""
    if disabled:
        return ["--no-control-socket"]
    if path is None:
        run_dir = Path(settings.HOME) / "run"
        safe_host = "".join(c if c.isalnum() else "_" for c in host)
        path = str(run_dir / f"gunicorn-{safe_host}-{port}.ctl")
    if len(path.encode()) > MAX_SOCKET_PATH:
        return ["--no-control-socket"]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return ["--control-socket", path]


class Command(BaseCommand):
    help = "Serve shequn with gunicorn (production)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("SHEQUN_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("SHEQUN_PORT", "8000")))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("SHEQUN_WORKERS", "2")),
                            help="gunicorn worker processes (default 2; rule of thumb 2 × cores)")
        parser.add_argument("--threads", type=int, default=4)
        parser.add_argument("--control-socket", default=None,
                            help="gunicorn control socket (default: $SHEQUN_HOME/run/gunicorn-<host>-<port>.ctl)")
        parser.add_argument("--no-control-socket", action="store_true", help="run without a control socket")

    def handle(self, *args: Any, **opts: Any) -> None:
        argv = gunicorn_argv(opts["host"], opts["port"], workers=opts["workers"], threads=opts["threads"],
                             control_socket=opts["control_socket"], no_control_socket=opts["no_control_socket"])
        os.execvp(argv[0], argv)  # noqa: S606 - replace this process with gunicorn


def gunicorn_argv(host: str, port: int, *, workers: int = 2, threads: int = 4, control_socket: str | None = None,
                  no_control_socket: bool = False) -> list[str]:
    """The gunicorn command line of ``serve`` (also run as a child by ``shequn demo``)."""
    return [
        sys.executable, "-m", "gunicorn", "shequn.wsgi:application",
        "--bind", f"{host}:{port}", "--workers", str(workers),
        "--threads", str(threads), "--worker-class", "gthread", "--access-logfile", "-",
        "--timeout", "60", "--graceful-timeout", "20",
        *control_socket_args(host, port, path=control_socket, disabled=no_control_socket),
    ]
