"""Fixtures shared by every app's tests."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from shequn.core.models import Tenant
from shequn.core.permissions import Principal


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


ROOT = Path(__file__).resolve().parent


def _synapse_module() -> Any:
    path = ROOT / "scripts" / "synapse.py"
    spec = importlib.util.spec_from_file_location("shequn_test_synapse", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def synapse() -> Iterator[Any]:
    """A real Synapse homeserver (session-scoped, one per xdist worker on its own free port; the
    shared install in .synapse/venv is guarded by a file lock). Used by the connectors' and the
    moderation's end-to-end tests (marker ``synapse``)."""
    mod = _synapse_module()
    server = mod.Synapse(home=ROOT / ".synapse").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tenant(db: None) -> Tenant:
    return Tenant.objects.create(slug="acme", name="Acme 车友会", kind=Tenant.Kind.CLUB)


@pytest.fixture
def other_tenant(db: None) -> Tenant:
    return Tenant.objects.create(slug="other", name="别家护肤群")


@pytest.fixture
def system(tenant: Tenant) -> Principal:
    return Principal.system(tenant.pk)


@pytest.fixture
def now() -> timezone.datetime:
    return timezone.now()
