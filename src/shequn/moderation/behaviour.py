"""Short-lived behaviour state for flood and cross-group duplicate checks.

Two stores with one interface, ``observe_batch``: record each message and answer how many messages
the member sent in the minute before this one and in how many *other* groups the same
normalised text appeared in the last ten minutes.

* :class:`DbStore` (default): ``Fingerprint`` rows, pruned hourly. Written inside the dispatch
  transaction, so a rolled-back batch leaves nothing behind.
* :class:`RedisStore` (when ``SHEQUN_REDIS_URL`` is set): two sorted sets per key with TTLs; no
  database writes on the hot path. Members of the sets are the event id (flood) and the group id
  (duplicates), so a retried batch re-adds the same members and counts nothing twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

import redis
from django.conf import settings

from .models import Fingerprint

FLOOD_WINDOW = dt.timedelta(minutes=1)
DUPLICATE_WINDOW = dt.timedelta(minutes=10)


class Observation(NamedTuple):
    event_id: int
    member_id: int | None
    group_id: int | None
    text_hash: str
    at: dt.datetime


class BehaviourStore(Protocol):
    def observe_batch(self, tenant_id: int, items: Sequence[Observation]) -> list[tuple[int, int]]: ...


class DbStore:
    """Two queries per batch (the batch's members' recent rows, the batch's hashes' recent rows),
    the rest in memory, one bulk insert. Messages earlier in the same batch count too."""

    def observe_batch(self, tenant_id: int, items: Sequence[Observation]) -> list[tuple[int, int]]:
        if not items:
            return []
        first = min(i.at for i in items)
        hi = max(i.at for i in items)
        members = {i.member_id for i in items if i.member_id is not None}
        hashes = {i.text_hash for i in items if i.text_hash}
        by_member: dict[int, list[dt.datetime]] = {}
        for member_id, at in Fingerprint.objects.filter(
            tenant_id=tenant_id, member_id__in=members, at__gt=first - FLOOD_WINDOW, at__lte=hi,
        ).values_list("member_id", "at"):
            if member_id is not None:
                by_member.setdefault(member_id, []).append(at)
        by_hash: dict[str, list[tuple[int | None, dt.datetime]]] = {}
        for h, group_id, at in Fingerprint.objects.filter(
            tenant_id=tenant_id, text_hash__in=hashes, at__gt=first - DUPLICATE_WINDOW, at__lte=hi,
        ).values_list("text_hash", "group_id", "at"):
            by_hash.setdefault(h, []).append((group_id, at))
        out: list[tuple[int, int]] = []
        new_rows = []
        for item in items:
            flood = 0
            if item.member_id is not None:
                since = item.at - FLOOD_WINDOW
                flood = sum(1 for at in by_member.get(item.member_id, ()) if since < at <= item.at)
            others = 0
            if item.text_hash:
                since = item.at - DUPLICATE_WINDOW
                others = len({g for g, at in by_hash.get(item.text_hash, ()) if since < at <= item.at
                              and g != item.group_id})
                by_hash.setdefault(item.text_hash, []).append((item.group_id, item.at))
                if item.member_id is not None:
                    by_member.setdefault(item.member_id, []).append(item.at)
                new_rows.append(Fingerprint(tenant_id=tenant_id, text_hash=item.text_hash, member_id=item.member_id,
                                            group_id=item.group_id, at=item.at))
            out.append((flood, others))
        Fingerprint.objects.bulk_create(new_rows, batch_size=500)
        return out

    def observe(self, tenant_id: int, *, event_id: int, member_id: int | None, group_id: int | None,
                text_hash: str, at: dt.datetime) -> tuple[int, int]:
        return self.observe_batch(tenant_id, [Observation(event_id, member_id, group_id, text_hash, at)])[0]


class RedisStore:
    def __init__(self, client: Any) -> None:
        self.r = client

    def observe_batch(self, tenant_id: int, items: Sequence[Observation]) -> list[tuple[int, int]]:
        return [self.observe(tenant_id, event_id=i.event_id, member_id=i.member_id, group_id=i.group_id,
                             text_hash=i.text_hash, at=i.at) for i in items]

    def observe(self, tenant_id: int, *, event_id: int, member_id: int | None, group_id: int | None,
                text_hash: str, at: dt.datetime) -> tuple[int, int]:
        ts = at.timestamp()
        pipe = self.r.pipeline(transaction=False)
        flood_key = dup_key = None
        if member_id is not None:
            flood_key = f"shequn:mod:{tenant_id}:flood:{member_id}"
            pipe.zremrangebyscore(flood_key, "-inf", ts - FLOOD_WINDOW.total_seconds())
            pipe.zcount(flood_key, ts - FLOOD_WINDOW.total_seconds(), ts)
            pipe.zscore(flood_key, str(event_id))
            pipe.zadd(flood_key, {str(event_id): ts})
            pipe.expire(flood_key, int(FLOOD_WINDOW.total_seconds()) * 2)
        if text_hash:
            dup_key = f"shequn:mod:{tenant_id}:dup:{text_hash}"
            pipe.zremrangebyscore(dup_key, "-inf", ts - DUPLICATE_WINDOW.total_seconds())
            pipe.zrangebyscore(dup_key, ts - DUPLICATE_WINDOW.total_seconds(), ts)
            pipe.zadd(dup_key, {str(group_id or 0): ts})
            pipe.expire(dup_key, int(DUPLICATE_WINDOW.total_seconds()) * 2)
        res = pipe.execute()
        flood = 0
        if flood_key:
            seen_before = res[2] is not None and ts - FLOOD_WINDOW.total_seconds() <= float(res[2]) <= ts
            flood = int(res[1]) - int(seen_before)  # a retried event does not count itself
        others = 0
        if dup_key:
            groups = res[6 if flood_key else 1]
            mine = str(group_id or 0).encode()
            others = len({g for g in groups if g != mine})
        return flood, others


@lru_cache(maxsize=1)
def _redis_store(url: str) -> RedisStore:
    return RedisStore(redis.Redis.from_url(url, socket_timeout=0.5))


def store() -> BehaviourStore:
    """The Redis store when ``settings.REDIS_URL`` is set, else the database store."""
    url = getattr(settings, "REDIS_URL", None)
    if url:
        return _redis_store(url)
    return DbStore()
