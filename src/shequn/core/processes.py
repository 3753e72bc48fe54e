"""Child processes of ``shequn demo`` and ``shequn worker``: started so that they never outlive their
parent, stopped together, and the cron scheduler started once per installation.

* :func:`spawn` — a child that receives SIGTERM when its parent dies, however it dies (Linux
  ``PR_SET_PDEATHSIG``; elsewhere the parent's own shutdown still stops it).
* :func:`supervise` — wait for the main child (the web server); on SIGTERM, SIGHUP or Ctrl-C, or
  when the main child exits, stop every child (SIGTERM, then SIGKILL after a grace period).
* :func:`single_instance` — a non-blocking ``flock`` on a file under ``$SHEQUN_HOME/run``: a second
  ``shequn demo`` (or worker) on the same installation sees the lock taken and starts no second
  scheduler. The kernel releases the lock when the holder dies, so a crash never leaves it stale.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

PR_SET_PDEATHSIG = 1
GRACE_SECONDS = 15.0


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Start a child that is sent SIGTERM if this process dies."""
    # preexec_fn only calls prctl (async-signal-safe) in the forked child
    child: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]  # noqa: S603
        list(argv), preexec_fn=_die_with_parent, **kwargs)  # noqa: PLW1509
    return child


def stop(children: Sequence[subprocess.Popen[bytes]], *, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM every live child, wait up to ``grace`` seconds in total, SIGKILL the rest."""
    for child in children:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def supervise(main: subprocess.Popen[bytes], children: Sequence[subprocess.Popen[bytes]], *,
              grace: float = GRACE_SECONDS) -> int:
    """Wait for ``main``; whatever ends the wait (its exit, SIGTERM, SIGHUP, Ctrl-C), stop ``main``
    and ``children`` before returning ``main``'s exit status (0 when stopped by a signal)."""
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    code = 0
    try:
        code = main.wait()
    except (_Stop, KeyboardInterrupt):
        code = 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        stop([main, *children], grace=grace)
    return code


@contextlib.contextmanager
def single_instance(path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` for the ``with`` block; yields False when another process
    holds it (nothing is waited for)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield True
    finally:
        os.close(fd)
