from __future__ import annotations

import pytest

from .world import World, build_world


@pytest.fixture
def world(tenant) -> World:
    return build_world(tenant)


@pytest.fixture(autouse=True)
def _sql_leaderboards(settings):
    settings.REDIS_URL = None
