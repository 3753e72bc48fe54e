"""The pytest plugin of the suite (the root ``conftest.py`` loads it): markers that skip without
their service, a clean throttle per test, and the fixtures every app's tests share.

- ``tenant``, ``other_tenant``, ``system`` (the tenant's system principal), ``now``;
- ``make_client(tenant, scopes=..., language=...)`` → an :class:`~.client.ApiClient` with a real key;
- ``world`` / ``other_world`` — :func:`~.scenarios.api_world` of ``tenant`` / ``other_tenant``;
- ``browser`` (Debian's chromium through Playwright; skips without it) and ``serial_sqlite_server``
  (the live server answers one request at a time on in-memory SQLite) for the browser tests.

An app's own ``conftest.py`` may override a fixture for its tests (the portal's ``world`` is its
paid community).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from shequn.core import localcache, throttle
from shequn.core.models import Tenant
from shequn.core.permissions import Principal

from .browser import launch_chromium, serve_sqlite_serially, skip_reason
from .client import ApiClient
from .factories import TenantFactory
from .scenarios import ApiWorld, api_key_for, api_world


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`postgres` tests skip on SQLite; `redis` tests skip without SHEQUN_REDIS_URL. The test script
    runs the suite a second time on PostgreSQL + Redis, where they run (and CI requires them)."""
    is_pg = connection.vendor == "postgresql"
    has_redis = bool(os.environ.get("SHEQUN_REDIS_URL"))
    for item in items:
        if "postgres" in item.keywords and not is_pg:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL (runs in the PostgreSQL pass)"))
        if "redis" in item.keywords and not has_redis:
            item.add_marker(pytest.mark.skip(reason="needs Redis (runs in the Redis pass)"))


@pytest.fixture(autouse=True)
def _fresh_throttle() -> Iterator[None]:
    """The throttle's Redis counters outlive a test's database rollback: start every test with none,
    so failed sign-ins or bad API keys in one test never lock out another (the database backend's
    rows roll back with the test)."""
    client = throttle._redis()
    if client is not None:
        for key in client.scan_iter("sq:thr:*"):
            client.delete(key)
    localcache.clear_all()  # resolved API keys, open doors, cached flash sales: per test
    yield


# --- tenants ------------------------------------------------------------------------------------


@pytest.fixture
def tenant(db: None) -> Tenant:
    return TenantFactory.create(slug="acme", name="Acme 车友会", kind=Tenant.Kind.CLUB)


@pytest.fixture
def other_tenant(db: None) -> Tenant:
    return TenantFactory.create(slug="other", name="别家护肤群")


@pytest.fixture
def system(tenant: Tenant) -> Principal:
    return Principal.system(tenant.pk)


@pytest.fixture
def now() -> dt.datetime:
    return timezone.now()


# --- the API ------------------------------------------------------------------------------------


@pytest.fixture
def make_client(db: None) -> Callable[..., ApiClient]:
    """``make_client(tenant, scopes=["members.read"], language="en") -> ApiClient``"""

    def make(tenant: Tenant, scopes: list[str] | None = None, language: str | None = None) -> ApiClient:
        _key, secret = api_key_for(tenant, scopes)
        return ApiClient(secret, language=language)

    return make


@pytest.fixture
def world(tenant: Tenant) -> ApiWorld:
    return api_world(tenant, "甲")


@pytest.fixture
def other_world(other_tenant: Tenant) -> ApiWorld:
    return api_world(other_tenant, "乙")


# --- browsers -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def serial_sqlite_server() -> None:
    """With in-memory SQLite the live server's request threads would share one connection (and one
    transaction): serve one request at a time there (see :func:`.browser.serve_sqlite_serially`)."""
    serve_sqlite_serially()


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Debian's chromium, headless (skips when it or Playwright is missing)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes between
    # browser steps are still synchronous and safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    yield from launch_chromium()
