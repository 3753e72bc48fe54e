"""Behaviour stores: the database store and the Redis store answer the same way."""

from __future__ import annotations

import datetime as dt

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from shequn.activity.services import do_ingest
from shequn.communities.models import ChatGroup, Community
from shequn.core.models import Tenant
from shequn.moderation.behaviour import DbStore, Observation, RedisStore
from shequn.moderation.models import Violation


def _exercise(store: object, tenant_id: int) -> list[tuple[int, int]]:
    t0 = timezone.now()
    out = []
    calls = [
        (1, 10, 100, "h1", t0),                                # first message
        (2, 10, 100, "h2", t0 + dt.timedelta(seconds=10)),     # same member, other text
        (3, 11, 200, "h1", t0 + dt.timedelta(seconds=20)),     # same text, other group
        (4, 12, 300, "h1", t0 + dt.timedelta(seconds=30)),     # same text, third group
        (5, 10, 100, "h3", t0 + dt.timedelta(seconds=100)),    # a minute later: flood window moved on
        (6, 13, 100, "h1", t0 + dt.timedelta(minutes=15)),     # duplicates expired
    ]
    for event_id, member, group, h, at in calls:
        out.append(store.observe(tenant_id, event_id=event_id, member_id=member, group_id=group,  # type: ignore[attr-defined]
                                 text_hash=h, at=at))
    return out


EXPECTED = [(0, 0), (1, 0), (0, 1), (0, 2), (0, 0), (0, 0)]


@pytest.mark.django_db
def test_db_store(tenant: Tenant) -> None:
    assert _exercise(DbStore(), tenant.pk) == EXPECTED


@pytest.mark.redis
def test_redis_store_matches_and_is_idempotent() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    store = RedisStore(client)
    assert _exercise(store, 987654) == EXPECTED
    at = timezone.now()
    first = store.observe(987655, event_id=1, member_id=1, group_id=1, text_hash="x", at=at)
    again = store.observe(987655, event_id=1, member_id=1, group_id=1, text_hash="x", at=at)  # retried batch
    assert first == (0, 0)
    assert again == (0, 0)  # the same event and group are not counted twice


@pytest.mark.django_db
def test_db_store_batch_matches_one_by_one(tenant: Tenant) -> None:
    t0 = timezone.now()
    items = [
        Observation(1, 10, 100, "h1", t0),
        Observation(2, 10, 100, "h2", t0 + dt.timedelta(seconds=10)),
        Observation(3, 11, 200, "h1", t0 + dt.timedelta(seconds=20)),
        Observation(4, 12, 300, "h1", t0 + dt.timedelta(seconds=30)),
        Observation(5, 10, 100, "h3", t0 + dt.timedelta(seconds=100)),
        Observation(6, 13, 100, "h1", t0 + dt.timedelta(minutes=15)),
    ]
    assert DbStore().observe_batch(tenant.pk, items) == EXPECTED


@pytest.mark.django_db
def test_one_ingest_batch_sees_its_own_duplicates(tenant: Tenant) -> None:
    community = Community.objects.create(tenant=tenant, name="c")
    for g in ("a", "b", "c"):
        ChatGroup.objects.create(tenant=tenant, community=community, platform="matrix", external_id=g, name=g)
    now = timezone.now()
    text = "看看这个好东西 http://x-deal.xyz/p 限时"
    do_ingest(tenant.pk, [
        {"platform": "matrix", "event_id": f"$d{i}", "kind": "message", "sender": f"@s{i}", "group": g,
         "occurred_at": (now + dt.timedelta(seconds=i)).isoformat(), "payload": {"text": text}}
        for i, g in enumerate(("a", "b", "c"))
    ])
    signals = [
        any(r["rule"] == "signal.duplicate_across_groups" for r in v.reasons)
        for v in Violation.objects.filter(tenant=tenant).order_by("occurred_at")
    ]
    assert signals and signals[-1]
