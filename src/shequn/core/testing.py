"""Helpers shared by the test suites (no test runs from here; nothing in the product imports it)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connection, connections

#: PostgreSQL's max_connections is shared with other test runs on the machine, so N concurrent
#: operations run on at most this many threads, each with its own connection, released together.
MAX_THREADS = 20


def race[T](target: Callable[[int], T], n: int, *, threads: int = MAX_THREADS) -> list[T | Exception]:
    """Run ``target(i)`` for ``i`` in ``range(n)`` on up to ``threads`` threads that each open their
    own database connection and are released at once by a barrier (the lost-update window is as
    wide as it gets). Returns each call's result, or the exception it raised, in ``i`` order.
    Connections are closed when a thread ends. Races are real only on PostgreSQL: SQLite serialises
    writers."""
    workers = max(1, min(n, threads))
    barrier = threading.Barrier(workers)
    results: list[T | Exception] = [RuntimeError("not run")] * n

    def run(w: int) -> None:
        try:
            connection.ensure_connection()
            barrier.wait()
            for i in range(w, n, workers):
                try:
                    results[i] = target(i)
                except Exception as exc:
                    results[i] = exc
        finally:
            connections.close_all()

    pool = [threading.Thread(target=run, args=(w,)) for w in range(workers)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return results
