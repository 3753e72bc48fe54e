from __future__ import annotations

import pytest
from django.core.cache import cache

from shequn.testing.scenarios import PaidCommunity, paid_community


@pytest.fixture
def world(tenant) -> PaidCommunity:
    return paid_community(tenant)


@pytest.fixture(autouse=True)
def _sql_leaderboards(settings):
    settings.REDIS_URL = None


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Member counts are cached per tenant id, and ids come back between tests: start clean."""
    cache.clear()
    yield
    cache.clear()
