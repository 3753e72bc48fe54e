"""Fixtures shared by every app's tests."""

from __future__ import annotations

import os

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
