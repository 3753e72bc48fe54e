"""Recovering the background-task queue after a worker dies (kill -9, OOM, power loss, a database
restart under it).

django-tasks-db claims a task by committing ``status = RUNNING`` and only then runs it, outside that
transaction. A worker killed while it runs a task leaves the row ``RUNNING`` for ever, and nothing
would run it again: an order event would never reach the referrals listener (no commission), a
payout would never be executed. A task that raised a *transient* error (the database restarted or a
connection broke under it) is stored ``FAILED`` and not run again either.

:func:`do_requeue_abandoned` puts such rows back to ``READY``:

* ``RUNNING`` rows claimed by a worker of **this host whose process is gone** (``shequn worker``
  names its task worker ``<host>:<pid>:<random>``) — at once, when a worker starts and every minute;
* ``RUNNING`` rows older than the lease (``SHEQUN_TASK_LEASE`` seconds, default 600; longer than any
  task of shequn runs) — a worker on another host that died;
* ``FAILED`` rows whose exception is a database/Redis connection error, while they have been tried
  fewer than :data:`MAX_ATTEMPTS` times (each claim appends the worker's id to ``worker_ids``).

Every task of shequn is idempotent (order-event listeners on the event id, ledger posts on their
key, payouts on the withdrawal), so running one again after a crash is safe; this is what makes
"each action exactly once" hold across a kill -9."""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid

from django.db import transaction
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

#: claims (first run included) after which a task failing with a transient error stays FAILED
MAX_ATTEMPTS = 5
#: exceptions after which a task is run again: the database or Redis went away under it
TRANSIENT = (
    "django.db.utils.OperationalError",
    "django.db.utils.InterfaceError",
    "psycopg.OperationalError",
    "psycopg.errors.AdminShutdown",
    "redis.exceptions.ConnectionError",
    "redis.exceptions.TimeoutError",
)


def lease() -> dt.timedelta:
    return dt.timedelta(seconds=int(os.environ.get("SHEQUN_TASK_LEASE", "600")))


def new_worker_id() -> str:
    """``<host>:<pid>:<random>`` (≤ 64 characters): lets a worker on the same host tell a dead one."""
    host = socket.gethostname()[:40]
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead_here(worker_id: str, host: str) -> bool:
    parts = worker_id.split(":")
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def do_requeue_abandoned(*, now: dt.datetime | None = None) -> int:
    """Put abandoned and transiently failed task rows back to READY; returns how many."""
    now = now or timezone.now()
    host = socket.gethostname()[:40]
    requeued = 0
    with transaction.atomic():
        running = (DBTaskResult.objects.select_for_update(skip_locked=True)
                   .filter(status=TaskResultStatus.RUNNING).only("id", "worker_ids", "started_at"))
        ids = [r.pk for r in running
               if (r.worker_ids and _dead_here(str(r.worker_ids[-1]), host))
               or (r.started_at is not None and r.started_at < now - lease())]
        if ids:
            requeued += DBTaskResult.objects.filter(pk__in=ids, status=TaskResultStatus.RUNNING).update(
                status=TaskResultStatus.READY, started_at=None)
        failed = (DBTaskResult.objects.select_for_update(skip_locked=True)
                  .filter(status=TaskResultStatus.FAILED, exception_class_path__in=TRANSIENT)
                  .only("id", "worker_ids"))
        ids = [r.pk for r in failed if len(r.worker_ids or []) < MAX_ATTEMPTS]
        if ids:
            requeued += DBTaskResult.objects.filter(pk__in=ids, status=TaskResultStatus.FAILED).update(
                status=TaskResultStatus.READY, started_at=None, finished_at=None, exception_class_path="",
                traceback="")
    return requeued
