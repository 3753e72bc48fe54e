"""Django's PostgreSQL backend with a health check that costs one round trip per second per
connection, not one per request.

``CONN_HEALTH_CHECKS`` makes Django send ``SELECT 1`` on the first query of every request on a
persistent connection: on a hot endpoint whose work is one statement (the flash-sale gate's member
check) that doubles the database round trips (profiled: 28 % of a gunicorn worker's samples). Here a
connection that passed a check less than ``HEALTH_CHECK_GAP`` seconds ago skips the next one. What
that costs: after a database restart, a connection used within that second fails one request (the
query raises, the request answers 5xx with nothing written, and Django's end-of-request check
closes the connection), instead of being replaced before it — the same clean failure the fault
suite already allows for requests in flight during a restart (``tests/faults/test_pg_restart.py``)."""

from __future__ import annotations

import time

from django.db.backends.postgresql import base

#: seconds a passed health check stands for the connection's next requests
HEALTH_CHECK_GAP = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    _checked_at = 0.0
    # set by Django's BaseDatabaseWrapper (untyped there)
    health_check_enabled: bool
    health_check_done: bool

    def close_if_health_check_failed(self) -> None:
        if (self.connection is not None and self.health_check_enabled and not self.health_check_done
                and time.monotonic() - self._checked_at < HEALTH_CHECK_GAP):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
        if self.connection is not None:
            self._checked_at = time.monotonic()

    def connect(self) -> None:
        super().connect()
        self._checked_at = time.monotonic()  # a new connection has just answered
