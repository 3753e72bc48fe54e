"""The connectors' real-time loops, run by ``shequn worker`` (as its ``connectors realtime`` child
process) or alone by ``shequn connectors realtime`` for scaling out.

* **Inbound** — one thread per active Matrix connection long-polls ``/sync``, and one per active
  Telegram connection in polling mode (``config.mode = "polling"``) long-polls ``getUpdates``. A
  supervisor re-reads the connection list every ``refresh`` seconds: a connection added, switched
  on, changed (config or secrets) or switched off is picked up without a restart (a changed one is
  restarted, a removed one stopped). A failing connection backs off alone (1 s doubling to 60 s)
  and never slows the others; with no connections the supervisor just sleeps.
* **Outbound** — one thread delivers the outbox as soon as an action commits:
  :func:`shequn.connectors.services.outbox.do_request_action` sends ``NOTIFY shequn_outbox`` on
  commit when the database is PostgreSQL (the thread ``LISTEN``\\s); elsewhere the thread polls for a
  due row every ``poll`` seconds (one indexed ``EXISTS``). The per-minute cron task stays as the
  safety net. When it starts and every :data:`RELEASE_EVERY` seconds it releases the actions a
  delivery process of this host left ``sending`` when it died (see
  :func:`shequn.connectors.services.delivery.release_abandoned`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import close_old_connections, connections
from django.utils import timezone

from . import services
from .adapters import load_adapters
from .models import Connection, OutboxAction
from .services.delivery import CHANNEL, deliver_due, release_abandoned

log = logging.getLogger(__name__)

BACKOFF_MIN = 1.0
BACKOFF_MAX = 60.0
#: seconds between looks for actions a dead delivery process of this host left ``sending``
RELEASE_EVERY = 30.0


def _fingerprint(conn: Any) -> str:
    raw = f"{conn.platform}|{sorted((conn.config or {}).items())}|{conn.secrets_encrypted}"
    return hashlib.sha256(raw.encode()).hexdigest()


def wanted_connections(platforms: tuple[str, ...] = ("matrix", "telegram")) -> dict[int, tuple[str, str]]:
    """``{id: (platform, fingerprint)}`` of the connections that need an inbound loop here."""
    out: dict[int, tuple[str, str]] = {}
    for c in Connection.objects.filter(is_active=True, platform__in=platforms):
        if c.platform == "telegram" and (c.config or {}).get("mode") != "polling":
            continue
        out[c.pk] = (c.platform, _fingerprint(c))
    return out


@dataclass
class _Loop:
    connection_id: int
    platform: str
    fingerprint: str
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    failures: int = 0
    rounds: int = 0


class Runner:
    """Supervises the inbound loops and the outbox delivery thread (see the module docstring)."""

    def __init__(self, *, refresh: float = 3.0, poll: float = 0.5, long_poll: int = 20,
                 inbound: bool = True, outbound: bool = True, out: Callable[[str], None] | None = None,
                 platforms: tuple[str, ...] = ("matrix", "telegram")) -> None:
        self.platforms = platforms
        self.refresh = refresh
        self.poll = poll
        self.long_poll = long_poll
        self.inbound = inbound
        self.outbound = outbound
        self.loops: dict[int, _Loop] = {}
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.out = out or (lambda msg: log.info("%s", msg))
        self._threads: list[threading.Thread] = []

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Runner:
        self._spawn(self._warm_up, "warm-up")
        if self.outbound:
            self._spawn(self._deliver_loop, "outbox")
            if connections["default"].vendor == "postgresql":
                self._spawn(self._listen_loop, "outbox-listen")
        if self.inbound:
            self._spawn(self._supervise_loop, "supervisor")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.wake.set()
        for loop in self.loops.values():
            loop.stop.set()
        for t in self._threads + [lp.thread for lp in self.loops.values() if lp.thread]:
            t.join(timeout)

    def run_forever(self) -> None:
        self.start()
        try:
            while not self.stopping.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def _spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        t = threading.Thread(target=self._guard(target), name=f"shequn-{name}", daemon=True)
        t.start()
        self._threads.append(t)
        return t

    def _guard(self, target: Callable[..., None], *args: Any) -> Callable[[], None]:
        def run() -> None:
            try:
                target(*args)
            finally:
                connections.close_all()  # this thread's database connections
        return run

    def _warm_up(self) -> None:
        try:
            load_adapters()  # the platform libraries, imported before the first connection needs them
            self.out("platform modules loaded")
        except Exception:
            log.exception("connectors realtime: importing the platform modules failed")

    # --- inbound --------------------------------------------------------------------------------
    def _supervise_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                close_old_connections()
                self.reconcile(wanted_connections(self.platforms))
            except Exception:
                log.exception("connectors realtime: reading the connection list failed")
            self.stopping.wait(self.refresh)

    def reconcile(self, wanted: dict[int, tuple[str, str]]) -> None:
        """Start, restart and stop loops so that exactly ``wanted`` runs."""
        for cid, loop in list(self.loops.items()):
            if cid not in wanted or wanted[cid][1] != loop.fingerprint or not (loop.thread and loop.thread.is_alive()):
                loop.stop.set()
                del self.loops[cid]
                self.out(f"connection {cid}: stopped")
        for cid, (platform, fp) in wanted.items():
            if cid in self.loops:
                continue
            loop = _Loop(cid, platform, fp)
            loop.thread = threading.Thread(target=self._guard(self._inbound_loop, loop),
                                           name=f"shequn-{platform}-{cid}", daemon=True)
            self.loops[cid] = loop
            loop.thread.start()
            self.out(f"connection {cid}: {platform} loop started")

    def _inbound_loop(self, loop: _Loop) -> None:
        first = True
        while not (loop.stop.is_set() or self.stopping.is_set()):
            try:
                if loop.platform == "matrix":
                    # the first round returns at once (it catches up), later ones long-poll
                    out = services.do_matrix_sync(loop.connection_id, timeout_ms=0 if first else self.long_poll * 1000)
                    n = int(out.get("stored", 0))
                else:
                    if first:  # the bot's admin rights in its chats, for the health page
                        services.do_check_rights_quietly(loop.connection_id)
                    n = services.do_poll_telegram(loop.connection_id, timeout=0 if first else self.long_poll,
                                                  drop_webhook=first)
                first = False
                loop.failures = 0
                loop.rounds += 1
                if n:
                    self.out(f"connection {loop.connection_id}: {n} new")
            except Exception as exc:
                loop.failures += 1
                delay = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** (loop.failures - 1))
                if loop.platform == "telegram":
                    with contextlib.suppress(Exception):  # the database may be gone too
                        services.do_note_connection_error(loop.connection_id, f"poll: {type(exc).__name__}")
                log.warning("connection %s: %s (retry in %.0f s)", loop.connection_id, type(exc).__name__, delay)
                close_old_connections()
                loop.stop.wait(delay)

    # --- outbound -------------------------------------------------------------------------------
    def _due(self) -> bool:
        return OutboxAction.objects.filter(
            status__in=(OutboxAction.Status.PENDING, OutboxAction.Status.SENDING),
            next_attempt_at__lte=timezone.now()).exists()

    def _deliver_loop(self) -> None:
        postgres = connections["default"].vendor == "postgresql"
        released_at = float("-inf")
        while not self.stopping.is_set():
            try:
                close_old_connections()
                if time.monotonic() - released_at >= RELEASE_EVERY:
                    # actions claimed by a delivery process of this host that died (kill -9, OOM)
                    release_abandoned()
                    released_at = time.monotonic()
                if self._due():
                    stats = deliver_due(200)
                    if stats.claimed:
                        self.out(" ".join(f"{k}={v}" for k, v in stats.as_dict().items() if v))
                        continue  # more may be due
            except Exception:
                log.exception("connectors realtime: outbox delivery failed")
                self.stopping.wait(2.0)
            # PostgreSQL: woken by NOTIFY (and every few seconds for rows that fall due later)
            self.wake.wait(2.0 if postgres else self.poll)
            self.wake.clear()

    def _listen_loop(self) -> None:  # pragma: no cover - PostgreSQL only
        conn = connections["default"]
        while not self.stopping.is_set():
            try:
                conn.ensure_connection()
                raw = conn.connection
                raw.autocommit = True
                raw.execute(f"LISTEN {CHANNEL}")
                while not self.stopping.is_set():
                    for _note in raw.notifies(timeout=1.0):
                        self.wake.set()
            except Exception:
                log.warning("connectors realtime: LISTEN failed; reconnecting", exc_info=True)
                with contextlib.suppress(Exception):
                    conn.close()
                self.stopping.wait(2.0)


__all__ = ["Runner", "wanted_connections"]
