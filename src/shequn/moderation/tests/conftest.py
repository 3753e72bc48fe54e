"""Moderation tests share nothing through Redis: behaviour keys are cleared around each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings


def _clear() -> None:
    url = getattr(settings, "REDIS_URL", None)
    if not url:
        return
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter("shequn:mod:*", count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _clean_behaviour_state() -> Iterator[None]:
    _clear()
    yield
    _clear()
