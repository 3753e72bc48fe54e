"""The real-time runner's supervisor (issue #19): connections added, changed and switched off are
picked up from the list without a restart; a failing connection backs off alone."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from shequn.connectors import realtime
from shequn.connectors.models import Connection
from shequn.connectors.services import do_create_connection

pytestmark = pytest.mark.django_db


def _matrix(system: Any, name: str) -> Connection:
    return do_create_connection(system, platform="matrix", name=name,
                                config={"homeserver": "http://127.0.0.1:9", "user_id": f"@{name}:x"},
                                secret_values={"access_token": f"tok-{name}"}, verify=False)


def test_wanted_connections_follow_the_list(system: Any) -> None:
    a = _matrix(system, "a")
    b = _matrix(system, "b")
    tg = do_create_connection(system, platform="telegram", name="t", config={},
                              secret_values={"bot_token": "1:x", "webhook_secret": "s"}, verify=False)
    wanted = realtime.wanted_connections()
    assert set(wanted) == {a.pk, b.pk}  # the Telegram bot is in webhook mode
    Connection.objects.filter(pk=tg.pk).update(config={"mode": "polling"})
    Connection.objects.filter(pk=b.pk).update(is_active=False)
    before = wanted[a.pk][1]
    Connection.objects.filter(pk=a.pk).update(config={"homeserver": "http://127.0.0.1:10", "user_id": "@a:x"})
    wanted = realtime.wanted_connections()
    assert set(wanted) == {a.pk, tg.pk}
    assert wanted[a.pk][1] != before  # a changed connection gets a new fingerprint → restarted


def test_reconcile_starts_restarts_and_stops_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    running: dict[int, int] = {}
    lock = threading.Lock()

    def fake_loop(self: realtime.Runner, loop: Any) -> None:
        with lock:
            running[loop.connection_id] = running.get(loop.connection_id, 0) + 1
        loop.stop.wait(10)
        with lock:
            running[loop.connection_id] -= 1

    monkeypatch.setattr(realtime.Runner, "_inbound_loop", fake_loop)
    runner = realtime.Runner(out=lambda _m: None)
    runner.reconcile({1: ("matrix", "f1"), 2: ("matrix", "f2")})
    time.sleep(0.1)
    assert running == {1: 1, 2: 1}
    runner.reconcile({1: ("matrix", "f1-changed")})  # 1 changed, 2 switched off
    time.sleep(0.1)
    assert running == {1: 1, 2: 0}
    assert runner.loops[1].fingerprint == "f1-changed"
    runner.reconcile({})
    time.sleep(0.1)
    assert running == {1: 0, 2: 0} and runner.loops == {}


def test_a_failing_connection_backs_off_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def boom(cid: int, **_kw: Any) -> dict[str, int]:
        calls.append(time.monotonic())
        raise OSError("unreachable")

    monkeypatch.setattr("shequn.connectors.services.do_matrix_sync", boom)
    runner = realtime.Runner(out=lambda _m: None)
    loop = realtime._Loop(7, "matrix", "f")
    t = threading.Thread(target=runner._inbound_loop, args=(loop,))
    t.start()
    time.sleep(3.5)
    loop.stop.set()
    t.join(5)
    # 1 s, 2 s, ...: at most 3 tries in 3.5 s, not a busy loop
    assert 2 <= len(calls) <= 3 and loop.failures == len(calls)
