"""Operations: the demo's children never outlive it, one cron scheduler per installation, and
``createoperator`` without a terminal (password from stdin, or generated)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from shequn.core.management.commands import worker as worker_command
from shequn.core.models import StaffMembership
from shequn.core.processes import single_instance

SRC = str(Path(__file__).resolve().parents[3])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes (reaped by init once its parent is gone)
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pids: list[int], timeout: float = 20) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _parent(body: str) -> subprocess.Popen[str]:
    script = textwrap.dedent("""
        import sys, time
        from shequn.core.processes import spawn, supervise
        sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    """) + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)


def _pids(proc: subprocess.Popen[str], n: int) -> list[int]:
    assert proc.stdout is not None
    pids = [int(x) for x in proc.stdout.readline().split()]
    assert len(pids) == n
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_stopping_the_supervisor_stops_every_child() -> None:
    """What ``shequn demo`` does: SIGTERM (or Ctrl-C, or closing the terminal) stops web and worker."""
    proc = _parent("""
        web, worker = spawn(sleeper), spawn(sleeper)
        print(web.pid, worker.pid, flush=True)
        sys.exit(supervise(web, [worker], grace=5))
    """)
    pids = _pids(proc, 2)
    assert all(_alive(p) for p in pids)
    # the pids are printed just before supervise() installs its handlers: a SIGTERM in between
    # takes the default action (-15), which is not what this test is about (seen on a loaded CI box)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert _wait_gone(pids) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_children_die_with_a_killed_parent() -> None:
    """Even SIGKILL (no cleanup code runs) leaves no orphan: the kernel signals the children."""
    proc = _parent("""
        a, b = spawn(sleeper), spawn(sleeper)
        print(a.pid, b.pid, flush=True)
        time.sleep(120)
    """)
    pids = _pids(proc, 2)
    proc.kill()
    proc.wait(timeout=10)
    assert _wait_gone(pids) == []


def test_the_web_server_exiting_stops_the_worker() -> None:
    proc = _parent("""
        worker = spawn(sleeper)
        web = spawn([sys.executable, "-c", "raise SystemExit(3)"])
        print(worker.pid, flush=True)
        sys.exit(supervise(web, [worker], grace=5))
    """)
    pids = _pids(proc, 1)
    assert proc.wait(timeout=20) == 3  # e.g. the port was taken: the demo fails, nothing stays behind
    assert _wait_gone(pids) == []


def test_one_scheduler_per_installation(settings: Any, tmp_path: Path, monkeypatch: Any) -> None:
    settings.HOME = tmp_path
    started: list[list[str]] = []

    class FakeChild:
        def __init__(self, argv: list[str]) -> None:
            started.append(argv)

        def poll(self) -> int:
            return 0

        def wait(self, timeout: float | None = None) -> int:
            return 0

    monkeypatch.setattr(worker_command, "spawn", FakeChild)
    monkeypatch.setattr(worker_command, "call_command", lambda *a, **k: None)  # the task loop itself
    monkeypatch.setattr(worker_command.taskqueue, "do_requeue_abandoned", lambda: 0)  # no database here
    # a first demo's worker holds the scheduler lock: a second one starts no scheduler
    with single_instance(worker_command.scheduler_lock_path()) as first:
        assert first
        err = io.StringIO()
        call_command("worker", stderr=err)
        assert [a[-1] for a in started] == ["realtime"] and "调度器已在本机运行" in err.getvalue()
        with single_instance(worker_command.scheduler_lock_path()) as second:
            assert second is False
    started.clear()
    call_command("worker")  # the first one stopped: the lock is free again
    assert sorted(a[3] for a in started) == ["connectors", "crontask"]


@pytest.mark.django_db
def test_createoperator_reads_the_password_from_stdin(tenant: Any) -> None:
    out = io.StringIO()
    call_command("createoperator", "bob", "--tenant", tenant.slug, stdin=io.StringIO("s3cret-pass-1\n"), stdout=out)
    assert StaffMembership.objects.get(user__username="bob").user.check_password("s3cret-pass-1")
    assert "s3cret" not in out.getvalue()  # never echoed


@pytest.mark.django_db
def test_createoperator_generates_a_password_without_a_terminal(tenant: Any) -> None:
    out = io.StringIO()
    call_command("createoperator", "carol", "--tenant", tenant.slug, stdin=io.StringIO(""), stdout=out)
    password = out.getvalue().split("password: ")[1].split()[0]
    assert len(password) >= 12
    assert StaffMembership.objects.get(user__username="carol").user.check_password(password)
