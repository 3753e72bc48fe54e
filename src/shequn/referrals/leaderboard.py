"""Leaderboards: by valid referrals and by commission, per scope (all / community / campaign) and
period (day / week / month / all time). Ties go to whoever reached the value first.

SQL (``LeaderboardEntry``) is the source of truth and is written in the business transaction; when
``settings.REDIS_URL`` is set, a sorted set per (board, period) mirrors it after commit and serves
reads (rebuild with :func:`do_rebuild_redis`).

Redis loss: a read falls back to SQL when Redis does not answer or no longer has the board (a
restart without data); a mirror update that Redis refuses is logged and dropped — never raised into
the business transaction that already committed — so a board Redis kept through an outage may miss
the outage's increments until :func:`do_rebuild_redis` (SQL is right all along)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .models import LeaderboardEntry

log = logging.getLogger(__name__)

METRICS = ("referrals", "commission")
PERIODS = ("all", "day", "week", "month")


@dataclass(frozen=True)
class Row:
    rank: int
    member_id: int
    value: int
    reached_at: float


@dataclass(frozen=True)
class MyRank:
    rank: int | None
    value: int
    gap_to_next: int | None  # how much more to pass the place above; None when first or unranked
    total: int


def period_key(period: str, at: datetime) -> str:
    local = timezone.localtime(at)
    if period == "all":
        return "all"
    if period == "day":
        return f"d{local:%Y-%m-%d}"
    if period == "week":
        iso = local.isocalendar()
        return f"w{iso.year}-{iso.week:02d}"
    if period == "month":
        return f"m{local:%Y-%m}"
    raise ValueError(f"unknown period {period}")


def scopes_for(community_id: int | None, campaign: str) -> list[str]:
    out = ["all"]
    if community_id:
        out.append(f"community:{community_id}")
    if campaign:
        out.append(f"campaign:{campaign}")
    return out


_CLIENTS: dict[str, Any] = {}


def _redis() -> Any:
    """One client (connection pool) per URL: a new TCP connection per read costs more than the read."""
    url = str(settings.REDIS_URL)
    client = _CLIENTS.get(url)
    if client is None:
        client = _CLIENTS[url] = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    return client


def _zkey(tenant_id: int, board: str, period: str) -> str:
    return f"shequn:lb:{tenant_id}:{board}:{period}"


def do_bump(tenant_id: int, metric: str, scopes: list[str], member_id: int, delta: int, *, at: datetime) -> None:
    """Add ``delta`` to ``member_id`` on every (scope, period) board. Call inside the business
    transaction; ``reached_at`` moves only when the value grows. Locking: one row UPDATE per board
    (``value = value + delta``), no read-modify-write."""
    if delta == 0:
        return
    updates: list[tuple[str, str, int, float]] = []
    for scope in scopes:
        board = f"{metric}|{scope}"
        for period in PERIODS:
            pkey = period_key(period, at)
            qs = LeaderboardEntry.objects.filter(tenant_id=tenant_id, board=board, period=pkey, member_id=member_id)
            fields: dict[str, Any] = {"value": F("value") + delta}
            if delta > 0:
                fields["reached_at"] = at
            if not qs.update(**fields):
                try:
                    with transaction.atomic():
                        LeaderboardEntry.objects.create(tenant_id=tenant_id, board=board, period=pkey,
                                                        member_id=member_id, value=delta, reached_at=at)
                except IntegrityError:
                    qs.update(**fields)
            updates.append((board, pkey, delta, at.timestamp()))
    if settings.REDIS_URL:
        transaction.on_commit(lambda: _redis_apply(tenant_id, member_id, updates))


def _redis_apply(tenant_id: int, member_id: int, updates: list[tuple[str, str, int, float]]) -> None:
    r = _redis()
    pipe = r.pipeline()
    for board, pkey, delta, ts in updates:
        key = _zkey(tenant_id, board, pkey)
        pipe.zincrby(key, delta, member_id)
        if delta > 0:
            pipe.hset(key + ":t", member_id, ts)
    try:
        pipe.execute()
    except redis.RedisError as exc:  # after commit: SQL has it; the mirror is stale until a rebuild
        log.warning("leaderboard mirror not updated (tenant %s): %s; reads fall back to SQL while Redis is "
                    "down, rebuild the boards after it returns", tenant_id, exc)


def do_rebuild_redis(tenant_id: int, metric: str, scope: str, period_key_: str) -> int:
    """Reload one board's sorted set from SQL (after a Redis flush or a deploy)."""
    board = f"{metric}|{scope}"
    key = _zkey(tenant_id, board, period_key_)
    r = _redis()
    r.delete(key, key + ":t")
    n = 0
    qs = LeaderboardEntry.objects.filter(tenant_id=tenant_id, board=board, period=period_key_).values_list(
        "member_id", "value", "reached_at")
    scores: dict[str, int] = {}
    times: dict[str, float] = {}

    def flush() -> None:
        if scores:
            pipe = r.pipeline()
            pipe.zadd(key, scores)
            pipe.hset(key + ":t", mapping=times)
            pipe.execute()
            scores.clear()
            times.clear()

    for member_id, value, reached in qs.iterator(chunk_size=10000):
        scores[str(member_id)] = value
        times[str(member_id)] = reached.timestamp()
        n += 1
        if len(scores) >= 10000:
            flush()
    flush()
    return n


def top(tenant_id: int, metric: str, scope: str = "all", period: str = "all", n: int = 100, *,
        at: datetime | None = None, use_redis: bool | None = None) -> list[Row]:
    """The first ``n`` places (value desc, then earliest ``reached_at``)."""
    pkey = period_key(period, at or timezone.now())
    board = f"{metric}|{scope}"
    if use_redis if use_redis is not None else bool(settings.REDIS_URL):
        try:
            found = _top_redis(tenant_id, board, pkey, n)
        except redis.RedisError as exc:
            log.warning("leaderboard read from SQL: Redis unavailable (%s)", exc)
            found = None
        if found is not None:
            return found
    rows = (LeaderboardEntry.objects.filter(tenant_id=tenant_id, board=board, period=pkey, value__gt=0)
            .order_by("-value", "reached_at", "member_id").values_list("member_id", "value", "reached_at")[:n])
    return [Row(i + 1, m, v, r.timestamp()) for i, (m, v, r) in enumerate(rows)]


#: one round trip: the first n, everyone tied with the n-th (they may sit just beyond n), their
#: scores and the times they reached them
_TOP_LUA = """
local head = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
if #head == 0 then return {{}, {}, {}} end
local last = head[#head]
local members, scores, seen = {}, {}, {}
for i = 1, #head, 2 do
  members[#members + 1] = head[i]; scores[#scores + 1] = head[i + 1]; seen[head[i]] = true
end
local tied = redis.call('ZRANGEBYSCORE', KEYS[1], last, last, 'LIMIT', 0, 1000)
for _, m in ipairs(tied) do
  if not seen[m] then members[#members + 1] = m; scores[#scores + 1] = last end
end
local times = redis.call('HMGET', KEYS[2], unpack(members))
return {members, scores, times}
"""
_SCRIPTS: dict[int, Any] = {}


def _top_redis(tenant_id: int, board: str, pkey: str, n: int) -> list[Row] | None:
    """The board from Redis, or None when Redis does not have it (then SQL answers)."""
    r = _redis()
    script = _SCRIPTS.get(id(r))
    if script is None:
        script = _SCRIPTS[id(r)] = r.register_script(_TOP_LUA)
    key = _zkey(tenant_id, board, pkey)
    members, scores, times = script(keys=[key, key + ":t"], args=[n])
    if not members and not r.exists(key):
        return None
    rows = sorted(
        ((int(m), int(float(sc)), float(t or 0)) for m, sc, t in zip(members, scores, times, strict=True)
         if float(sc) > 0),
        key=lambda x: (-x[1], x[2], x[0]),
    )[:n]
    return [Row(i + 1, m, v, t) for i, (m, v, t) in enumerate(rows)]


def my_rank(tenant_id: int, metric: str, member_id: int, scope: str = "all", period: str = "all", *,
            at: datetime | None = None) -> MyRank:
    """A member's place and the gap to the place above (SQL; two index range counts)."""
    pkey = period_key(period, at or timezone.now())
    board = f"{metric}|{scope}"
    base = LeaderboardEntry.objects.filter(tenant_id=tenant_id, board=board, period=pkey, value__gt=0)
    total = base.count()
    mine = base.filter(member_id=member_id).values_list("value", "reached_at").first()
    if mine is None:
        last = base.order_by("value").values_list("value", flat=True).first()
        return MyRank(None, 0, (last or 0) + 1 if last is not None else None, total)
    value, reached = mine
    # three index range counts (an OR of them would not use the (value, reached_at) index)
    ahead = (base.filter(value__gt=value).count() + base.filter(value=value, reached_at__lt=reached).count()
             + base.filter(value=value, reached_at=reached, member_id__lt=member_id).count())
    rank = ahead + 1
    gap = None
    if rank > 1:
        above = base.filter(value__gt=value).order_by("value").values_list("value", flat=True).first()
        tied_ahead = ahead - base.filter(value__gt=value).count() > 0
        gap = 1 if tied_ahead or above is None else above - value + 1
    return MyRank(rank, value, gap, total)
