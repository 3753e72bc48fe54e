"""The fault suite's harness: real ``shequn serve`` / ``shequn worker`` processes against the test
database, Redis servers and PostgreSQL clusters of the suite's own (never the machine's shared
ones), an HTTP client that retries like a phone does, and the figures each test prints."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def db_url(name: str | None = None, *, port: int | None = None, host: str | None = None) -> str:
    """A URL for the test database (``name`` another database of the same server)."""
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{host or s['HOST'] or '127.0.0.1'}:{port or s['PORT'] or 5432}/{name or s['NAME']}"


def figures(test: str, **values: Any) -> None:
    """One line: ``FAULT <test> attempts=… committed=… lost=0 duplicated=0 …`` (stdout with ``-s``,
    and appended to ``test-output/faults.log``)."""
    parts = " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    line = f"FAULT {test} {parts}"
    print(f"\n{line}", flush=True)
    # pytest-xdist does not show a worker's output: the lines are also kept in test-output/faults.log
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    with open(out / "faults.log", "a", encoding="utf-8") as fh:
        fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}\n")


def wait_for(cond: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if cond():
            return time.monotonic() - start
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout} s")


class Site:
    """Processes of one shequn site (the test database, a temporary home) started as an operator
    would: ``python -m shequn.cli serve|worker …``, each in its own process group."""

    def __init__(self, home: Path, database_url: str, redis_url: str | None = None, **env: str) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("SHEQUN_", "DJANGO_", "PYTEST_")) and k != "PYTHONPATH"}
        base.update(PYTHONPATH=str(SRC), SHEQUN_HOME=str(home), DJANGO_SETTINGS_MODULE="shequn.settings",
                    # the test process's keys: what it signs or encrypts (sandbox notifications, connector
                    # secrets) the site must read
                    SHEQUN_DATABASE_URL=database_url, SHEQUN_SECRET_KEY=str(settings.SECRET_KEY),
                    SHEQUN_FIELD_KEY=str((getattr(settings, "SHEQUN", {}) or {}).get("FIELD_KEY") or ""),
                    SHEQUN_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
        if redis_url:
            base["SHEQUN_REDIS_URL"] = redis_url
        base.update(env)
        self.env = base
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Any]] = {}

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen([sys.executable, "-m", "shequn.cli", *args], env=self.env | env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = (proc, log)
        return proc

    def serve(self, name: str = "web", *, workers: int = 2, threads: int = 4, **env: str) -> int:
        port = free_port()
        self.start(name, "serve", "--port", str(port), "--workers", str(workers), "--threads", str(threads),
                   "--no-control-socket", **env)
        try:
            wait_for(lambda: _answers(port), 90, f"shequn serve on :{port}", step=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from exc
        return port

    def kill(self, name: str) -> None:
        proc, log = self.procs.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()

    def stop(self) -> None:
        for proc, _log in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, log in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            log.close()
        self.procs.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.home.glob("*.log"))


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def gunicorn_workers(serve_pid: int) -> list[int]:
    """The worker processes of the gunicorn master ``shequn serve`` became (it execs in place)."""
    return children(serve_pid)


def _answers(port: int) -> bool:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/static/none")  # any answer will do: the process is up
        ok = c.getresponse().status < 500
        c.close()
        return ok
    except OSError:
        return False


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    attempts: int
    seconds: float
    done: float = field(default_factory=time.monotonic)


@dataclass
class Client:
    """An outside HTTP client: one keep-alive connection per thread, a bounded retry with the same
    Idempotency-Key on a broken connection or a 5xx (what a phone does when the line drops)."""

    port: int
    token: str
    retries: int = 40
    pause: float = 0.1
    deadline: float = 120.0
    errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)

    def _conn(self) -> http.client.HTTPConnection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        return c

    def _drop(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
        self._local.conn = None

    def post(self, path: str, payload: dict[str, Any], *, key: str | None = None,
             headers: dict[str, str] | None = None, raw: bytes | None = None) -> Answer:
        body = raw if raw is not None else json.dumps(payload).encode()
        hdrs = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}", **(headers or {})}
        if key:
            hdrs["Idempotency-Key"] = key
        t0 = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            try:
                c = self._conn()
                c.request("POST", path, body=body, headers=hdrs)
                r = c.getresponse()
                data = r.read()
                if r.status < 500:
                    try:
                        parsed = json.loads(data) if data else {}
                    except ValueError:
                        parsed = {"raw": data[:200].decode(errors="replace")}
                    return Answer(r.status, parsed, attempts, time.monotonic() - t0)
                with self._lock:
                    self.errors += 1
            except (OSError, http.client.HTTPException):
                self._drop()
                with self._lock:
                    self.errors += 1
            if attempts >= self.retries or time.monotonic() - t0 > self.deadline:
                return Answer(0, {}, attempts, time.monotonic() - t0)
            time.sleep(self.pause)


class RedisServer:
    """A Redis of the test's own on a free port (the shared one on 6379 is never stopped), with an
    append-only file fsynced on every write, as the flash-sale gate's Redis must run."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        assert exe, "redis-server not installed"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(self.ping, 15, f"redis-server on :{self.port}")
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
