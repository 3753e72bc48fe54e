"""Read-replica routing with bounded staleness (``SHEQUN_DATABASE_REPLICA_URL``).

With a replica configured, settings add a second database alias, ``replica``, and this router. Only
reads *marked* as replica-safe ever go there — the analytics API and dashboards, and the console's
list pages (:func:`replica_reads`, a context manager and view decorator). Everything else — every
write, every read of the services, every read inside a transaction — is the primary's.

A marked read still goes to the primary when:

* a transaction is open on the primary (``atomic``: the read belongs to a read-modify-write);
* the request has written already (any ORM write in the same request/context pins the rest of it);
* the caller wrote within the last ``SHEQUN_DATABASE_REPLICA_STICKY`` seconds (default 5): the
  middleware sets a short cookie after a request that wrote (any unsafe method, or an ORM write),
  and the same pin under a cache key (Redis when configured) per API token and per signed-in staff
  user (a member's portal browser keeps the cookie): a phone that posts an order and then reads
  sees its own write;
* the replica lags more than ``SHEQUN_DATABASE_REPLICA_MAX_LAG`` seconds (default 5), measured as
  ``now() - pg_last_xact_replay_timestamp()`` when the replica has WAL received but not yet replayed
  (an idle replica that has replayed all it got is not behind), checked at most once a second per
  process; a replica that cannot be reached counts as lagging for ``DOWN_SECONDS``.

PgBouncer in transaction mode: ``SHEQUN_DATABASE_POOLER=transaction`` turns off server-side cursors
and prepared statements on both aliases (settings), and nothing here uses session state.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.http import HttpRequest, HttpResponse

log = logging.getLogger(__name__)

REPLICA = "replica"
COOKIE = "sq_pin"
CACHE_PREFIX = "sq:pin:"
LAG_CHECK_SECONDS = 1.0
DOWN_SECONDS = 10.0
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: bookkeeping writes a read request makes (an API key's last use, a session's last activity, the
#: throttle's counters): they do not pin the caller's reads to the primary
NOT_PINNING = frozenset({"core.apikey", "sessions.session", "core.throttlehit"})

LAG_SQL = (
    "SELECT pg_is_in_recovery(), CASE WHEN pg_last_wal_receive_lsn() IS NULL"
    " OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
    " ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END"
)


@dataclass
class _Context:
    replica_ok: bool = False  # inside replica_reads()
    pinned: bool = False  # this caller wrote recently: primary only
    wrote: bool = False  # an ORM write happened in this context


_ctx: contextvars.ContextVar[_Context | None] = contextvars.ContextVar("shequn_dbrouting", default=None)


def _current() -> _Context:
    c = _ctx.get()
    if c is None:
        c = _Context()
        _ctx.set(c)
    return c


def configured() -> bool:
    return REPLICA in settings.DATABASES and bool(getattr(settings, "SHEQUN_REPLICA_ROUTING", False))


def max_lag() -> float:
    return float(getattr(settings, "SHEQUN_REPLICA_MAX_LAG", 5.0))


def sticky_seconds() -> int:
    return int(getattr(settings, "SHEQUN_REPLICA_STICKY", 5))


# --- the replica's lag, measured at most once a second per process ------------------------------------
_lag_lock = threading.Lock()
_lag: dict[str, float] = {"value": 0.0, "checked": -1e9, "down_until": -1e9}


def replica_lag(*, fresh: bool = False) -> float:
    """Seconds the replica is behind (``inf`` when it cannot be reached)."""
    now = time.monotonic()
    with _lag_lock:
        if now < _lag["down_until"] and not fresh:
            return float("inf")
        if not fresh and now - _lag["checked"] < LAG_CHECK_SECONDS:
            return _lag["value"]
    conn = connections[REPLICA]
    value: float
    try:
        if conn.vendor != "postgresql":
            value = 0.0
        else:
            with conn.cursor() as cur:
                cur.execute(LAG_SQL)
                in_recovery, lag = cur.fetchone()
            # a mirror or a promoted replica is not behind anything
            value = float(lag or 0) if in_recovery else 0.0
    except DatabaseError as exc:
        log.warning("replica unreachable, reading from the primary: %s", exc)
        with _lag_lock:
            _lag.update(value=float("inf"), checked=now, down_until=now + DOWN_SECONDS)
        conn.close_if_unusable_or_obsolete()
        return float("inf")
    with _lag_lock:
        _lag.update(value=value, checked=now, down_until=-1e9)
    return value


def reset_lag_cache() -> None:
    with _lag_lock:
        _lag.update(value=0.0, checked=-1e9, down_until=-1e9)


def read_alias() -> str:
    """Where a read made now goes (the router's answer, also for raw SQL: ``connections[read_alias()]``)."""
    c = _ctx.get()
    if c is None or not c.replica_ok or c.pinned or c.wrote or not configured():
        return DEFAULT_DB_ALIAS
    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return DEFAULT_DB_ALIAS
    if replica_lag() > max_lag():
        return DEFAULT_DB_ALIAS
    return REPLICA


class ReplicaRouter:
    """``DATABASE_ROUTERS`` entry. Writes and migrations: the primary only."""

    def db_for_read(self, model: type[Any], **hints: Any) -> str:
        return read_alias()

    def db_for_write(self, model: type[Any], **hints: Any) -> str:
        c = _ctx.get()
        if c is not None and model._meta.label_lower not in NOT_PINNING:
            c.wrote = True
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # the replica is a copy of the primary: the same rows

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        return db != REPLICA


# --- marking reads --------------------------------------------------------------------------------------
@contextmanager
def replica_reads() -> Iterator[None]:
    """Reads inside may go to the replica (bounded staleness, see the module). Nested writes pin."""
    c = _current()
    before = c.replica_ok
    c.replica_ok = True
    try:
        yield
    finally:
        c.replica_ok = before


def replica_view[F: Callable[..., Any]](view: F) -> F:
    """Decorator form of :func:`replica_reads` for a view or API handler."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with replica_reads():
            return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@contextmanager
def pinned_to_primary(pinned: bool = True) -> Iterator[_Context]:
    """A fresh routing context for one request (or task): ``pinned`` when the caller wrote lately."""
    token = _ctx.set(_Context(pinned=pinned))
    try:
        yield _ctx.get()  # type: ignore[misc]
    finally:
        _ctx.reset(token)


# --- who wrote lately: cookie + cache key ---------------------------------------------------------------
def _caller_keys(request: HttpRequest) -> list[str]:
    keys: list[str] = []
    auth = request.headers.get("Authorization", "")
    if auth:
        keys.append("tok:" + hashlib.sha256(auth.encode()).hexdigest()[:32])
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        keys.append(f"user:{user.pk}")
    return keys


def _recently_wrote(request: HttpRequest) -> bool:
    if request.COOKIES.get(COOKIE):
        try:
            if float(request.COOKIES[COOKIE]) > time.time():
                return True
        except ValueError:
            pass
    keys = [CACHE_PREFIX + k for k in _caller_keys(request)]
    if not keys:
        return False
    try:
        return bool(cache.get_many(keys))
    except Exception:  # a cache outage must not fail reads: read the primary
        log.warning("pin cache unavailable: reading from the primary")
        return True


def _remember_write(request: HttpRequest, response: HttpResponse) -> None:
    seconds = sticky_seconds()
    response.set_cookie(COOKIE, f"{time.time() + seconds:.3f}", max_age=seconds, httponly=True, samesite="Lax",
                        secure=bool(getattr(settings, "SESSION_COOKIE_SECURE", False)))
    keys = _caller_keys(request)
    if keys:
        try:
            cache.set_many({CACHE_PREFIX + k: 1 for k in keys}, timeout=seconds)
        except Exception:  # the cookie still pins a browser
            log.warning("pin cache unavailable: write not remembered for API callers")


class ReplicaPinMiddleware:
    """One routing context per request; pinned to the primary when the caller wrote within the sticky
    window; remembers a request that wrote (unsafe method or ORM write). Without a replica: a no-op."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not configured():
            return self.get_response(request)
        with pinned_to_primary(_recently_wrote(request)) as ctx:
            response = self.get_response(request)
            if ctx.wrote or request.method not in SAFE_METHODS:
                _remember_write(request, response)
        return response
