"""Moderation tests share nothing through Redis (behaviour keys are cleared around each test) and
share the community and Matrix group they moderate."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

from shequn.communities.models import ChatGroup, Community
from shequn.core.models import Tenant


def _clear() -> None:
    url = getattr(settings, "REDIS_URL", None)
    if not url:
        return

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter("shequn:mod:*", count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _clean_behaviour_state() -> Iterator[None]:
    _clear()
    yield
    _clear()


@pytest.fixture
def community(tenant: Tenant) -> Community:
    return Community.objects.create(tenant=tenant, name="车友会")


@pytest.fixture
def group(tenant: Tenant, community: Community) -> ChatGroup:
    return ChatGroup.objects.create(tenant=tenant, community=community, platform="matrix",
                                    external_id="!cars:hs.test", name="车友群")
