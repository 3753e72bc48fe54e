"""The Redis gate for hot flash sales: one Lua script checks the per-member limit (SISMEMBER),
decrements the stock (DECRBY, never below zero) and appends the accepted attempt to a stream (XADD),
atomically — for one attempt, or for every attempt a process's gate batcher collected, in order.
The database consumer (``services.do_consume_flash_gate``) turns stream entries into reservations
and orders idempotently; the database stays the source of truth (its own conditional decrement and
unique (flash sale, member) row still apply).

Keys (per flash sale): ``shequn:flash:<id>:stock``, ``shequn:flash:<id>:buyers``,
``shequn:flash:<id>:stream``, ``shequn:flash:<id>:wake``; consumer group ``orders``.

Waking the consumer: a call that accepts sets ``wake`` (``SET NX EX``) in the same script; the one
attempt whose call set it gets :data:`ACCEPTED_WAKE` instead of :data:`ACCEPTED`, and its caller
enqueues the consumer task. The consumer deletes ``wake`` before it reads, so an entry added while
it drains sets the flag again and wakes another run: every entry is followed by a consumer run that
starts after it, with one task row per consumer run instead of one per buyer. A caller that died
between the flag and the enqueue delays its entries until the flag expires (``WAKE_SECONDS``) and
the next acceptance, or the minute sweep (``sweep_flash_gates``), whichever comes first."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import redis
from django.conf import settings

from shequn.core import microbatch

# ARGV = member, quantity, attr for each attempt (one or many, of one sale), then the wake flag's
# seconds: taken in order, each checked for its member first (SISMEMBER), then for a prepared gate,
# then for enough stock, which the attempts before it in the same call have already drawn on; one
# DECRBY for all that were taken; the first taken gets 2 when this call set the wake flag
GATE_LUA = """
local stock = tonumber(redis.call('GET', KEYS[1]) or '-1')
local out = {}
local taken = 0
for i = 1, #ARGV - 1, 3 do
  local n = tonumber(ARGV[i + 1])
  if redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 1 then
    out[#out + 1] = -1
  elseif stock < 0 then
    out[#out + 1] = -2
  elseif stock - taken < n then
    out[#out + 1] = 0
  else
    taken = taken + n
    redis.call('SADD', KEYS[2], ARGV[i])
    redis.call('XADD', KEYS[3], '*', 'member', ARGV[i], 'qty', ARGV[i + 1], 'attr', ARGV[i + 2])
    out[#out + 1] = 1
  end
end
if taken > 0 then
  redis.call('DECRBY', KEYS[1], taken)
  if redis.call('SET', KEYS[4], '1', 'NX', 'EX', tonumber(ARGV[#ARGV])) then
    for i = 1, #out do
      if out[i] == 1 then out[i] = 2 break end
    end
  end
end
return out
"""

RELEASE_LUA = """
if redis.call('SREM', KEYS[2], ARGV[1]) == 1 then
  redis.call('INCRBY', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

ACCEPTED, SOLD_OUT, DUPLICATE, NOT_PREPARED = 1, 0, -1, -2
#: accepted, and this caller must wake the consumer (enqueue ``consume_flash_gate``)
ACCEPTED_WAKE = 2
#: how long a wake flag stands without a consumer run deleting it
WAKE_SECONDS = 5


class GateDown(Exception):
    """Redis did not answer the gate (down, restarting, too slow): the attempt was not decided here,
    or its answer was lost; the caller fails closed (a retry meets the gate again, where a decided
    attempt is a DUPLICATE)."""


#: what a caller of the gate catches to fail closed (the gate's own calls and direct client calls)
DOWN: tuple[type[Exception], ...] = (GateDown, redis.RedisError)


def keys(flash_sale_id: int) -> list[str]:
    base = f"shequn:flash:{flash_sale_id}"
    return [f"{base}:stock", f"{base}:buyers", f"{base}:stream", f"{base}:wake"]


@lru_cache(maxsize=4)
def _client(url: str) -> Any:
    # bounded waits: a Redis that hangs must not hold a request thread (the gate then fails closed)
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)


def client() -> Any:
    if not settings.REDIS_URL:
        return None
    return _client(settings.REDIS_URL)


class Gate:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._gate = conn.register_script(GATE_LUA)
        self._release = conn.register_script(RELEASE_LUA)

    def prepare(self, flash_sale_id: int, stock: int, buyers: list[int]) -> None:
        """Load stock and the members already holding a reservation (idempotent: only if absent)."""
        k = keys(flash_sale_id)
        if self.conn.set(k[0], stock, nx=True) and buyers:
            self.conn.sadd(k[1], *buyers)
        try:
            self.conn.xgroup_create(k[2], "orders", id="0", mkstream=True)
        except Exception as exc:  # BUSYGROUP: already there
            if "BUSYGROUP" not in str(exc):
                raise

    def reset(self, flash_sale_id: int) -> None:
        self.conn.delete(*keys(flash_sale_id))

    def attempt(self, flash_sale_id: int, member_id: int, quantity: int, attr: str = "") -> int:
        return self.attempt_many(flash_sale_id, [(member_id, quantity, attr)])[0]

    def attempt_many(self, flash_sale_id: int, attempts: list[tuple[int, int, str]]) -> list[int]:
        """Decide many (member, quantity, attr) attempts of one sale in one round trip, in order."""
        args: list[Any] = []
        for member_id, quantity, attr in attempts:
            args += [member_id, quantity, attr]
        args.append(WAKE_SECONDS)
        try:
            return [int(r) for r in self._gate(keys=keys(flash_sale_id), args=args)]
        except redis.RedisError as exc:
            raise GateDown(str(exc)) from exc

    def attempt_batched(self, flash_sale_id: int, member_id: int, quantity: int, attr: str = "") -> int:
        """:meth:`attempt` through this process's gate batcher: concurrent callers share one round
        trip (:meth:`attempt_many`); the result is the one :meth:`attempt` would give."""

        def factory(on_idle: Any) -> microbatch.MicroBatcher[tuple[int, int, str], int]:
            return microbatch.MicroBatcher(
                f"flash-gate-{flash_sale_id}", lambda items: self.attempt_many(flash_sale_id, items),
                max_batch=500, max_wait=0.001, on_idle=on_idle)

        return microbatch.submit(("gate", id(self.conn), flash_sale_id), factory, (member_id, quantity, attr))

    def release(self, flash_sale_id: int, member_id: int, quantity: int) -> bool:
        return bool(self._release(keys=keys(flash_sale_id), args=[member_id, quantity]))

    def is_buyer(self, flash_sale_id: int, member_id: int) -> bool:
        """Whether the gate took an attempt of this member (one ``SISMEMBER``)."""
        try:
            return bool(self.conn.sismember(keys(flash_sale_id)[1], member_id))
        except redis.RedisError as exc:
            raise GateDown(str(exc)) from exc

    def woken(self, flash_sale_id: int) -> None:
        """A consumer run starts: clear the wake flag before reading (see the module's docstring)."""
        self.conn.delete(keys(flash_sale_id)[3])

    def read(self, flash_sale_id: int, consumer: str, count: int = 500) -> list[tuple[str, dict[str, str]]]:
        """Pending entries first (a crashed consumer's), then new ones."""
        stream = keys(flash_sale_id)[2]
        out: list[tuple[str, dict[str, str]]] = []
        for start in ("0", ">"):
            resp = self.conn.xreadgroup("orders", consumer, {stream: start}, count=count)
            for _name, entries in resp or []:
                for entry_id, fields in entries:
                    out.append((_s(entry_id), {_s(k): _s(v) for k, v in fields.items()}))
            if out:
                break
        return out

    def ack(self, flash_sale_id: int, entry_ids: list[str]) -> None:
        if entry_ids:
            self.conn.xack(keys(flash_sale_id)[2], "orders", *entry_ids)

    def stock(self, flash_sale_id: int) -> int | None:
        v = self.conn.get(keys(flash_sale_id)[0])
        return None if v is None else int(v)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def gate() -> Gate | None:
    conn = client()
    return Gate(conn) if conn is not None else None
