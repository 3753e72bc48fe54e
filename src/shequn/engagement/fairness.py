"""Provably fair lottery draws (commit–reveal), pure Python and free of Django so the verifier can be
re-implemented or audited by anyone.

Algorithm ``shequn-lottery-v1``
-------------------------------
1. When the lottery is created a secret 32-byte seed is drawn and ``seed_commitment = SHA-256(seed)``
   is published.
2. When entries close the entrant snapshot is frozen and
   ``commitment = SHA-256(canonical_json({"algorithm", "lottery", "snapshot", "seed_commitment",
   "beacon"}))`` is published (``canonical_json``: sorted keys, no spaces, UTF-8). ``snapshot`` holds
   the entrants in entry order (``[{"id": "...", "weight": w}]``) and the prizes in rank order
   (``[{"id": "...", "name": "...", "stock": n}]``); ``beacon`` optionally names a future public
   randomness round whose value is mixed in at the draw.
3. At the draw the seed (and the beacon value, if any) is revealed. The generator key is
   ``K = SHA-256("shequn-lottery-v1" | seed | beacon_value | commitment)``; block *i* of the stream is
   ``SHA-256(K | i as 8-byte big-endian)``, read as four unsigned 64-bit big-endian words.
4. ``uniform(n)`` draws a word ``w`` and rejects it while ``w >= 2^64 - (2^64 mod n)`` (no modulo
   bias), then returns ``w mod n``.
5. Winners come from a (weighted) Fisher–Yates shuffle of the entrant list: for position ``i = 0, 1,
   …`` draw ``r = uniform(remaining weight)`` and pick the position ``j >= i`` where the running sum of
   the remaining entrants' weights (in current array order) first exceeds ``r``; swap ``a[i], a[j]``.
   With all weights 1 this is exactly the classic Fisher–Yates step ``j = i + uniform(n - i)``; with
   weights it is successive sampling without replacement proportional to weight.
6. The first ``Σ stock`` shuffled entrants win, prizes filled in rank order. A reroll (a winner
   forfeits) takes the next entrant of the same shuffle, so rerolls are verifiable too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

ALGORITHM = "shequn-lottery-v1"
_TWO64 = 1 << 64


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seed_commitment(seed_hex: str) -> str:
    return sha256_hex(bytes.fromhex(seed_hex))


def snapshot_commitment(
    *, lottery: str, snapshot: dict[str, Any], seed_commitment: str, beacon: str = ""
) -> str:
    """SHA-256 over the entrant snapshot, the algorithm and the seed commitment (published at close)."""
    return sha256_hex(canonical_json({
        "algorithm": ALGORITHM, "lottery": lottery, "snapshot": snapshot,
        "seed_commitment": seed_commitment, "beacon": beacon,
    }))


class CounterRng:
    """SHA-256 in counter mode, read as 64-bit words; ``uniform`` uses rejection sampling."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._counter = 0
        self._words: list[int] = []

    def _refill(self) -> None:
        block = hashlib.sha256(self._key + self._counter.to_bytes(8, "big")).digest()
        self._counter += 1
        self._words = [int.from_bytes(block[i : i + 8], "big") for i in range(24, -1, -8)]

    def word(self) -> int:
        if not self._words:
            self._refill()
        return self._words.pop()  # words are consumed in block order: 0..7, 8..15, ...

    def uniform(self, n: int) -> int:
        """A uniform integer in ``[0, n)`` without modulo bias."""
        if n <= 0:
            raise ValueError("n must be positive")
        limit = _TWO64 - (_TWO64 % n)
        while True:
            w = self.word()
            if w < limit:
                return w % n


def rng_key(seed_hex: str, beacon_value: str, commitment: str) -> bytes:
    return hashlib.sha256(
        ALGORITHM.encode() + bytes.fromhex(seed_hex) + beacon_value.encode("utf-8") + bytes.fromhex(commitment)
    ).digest()


class _Fenwick:
    def __init__(self, weights: Sequence[int]) -> None:
        self.n = len(weights)
        self.tree = [0] * (self.n + 1)
        for i, w in enumerate(weights):
            self.add(i, w)
        self._top = 1 << max(self.n.bit_length() - 1, 0) if self.n else 0

    def add(self, i: int, delta: int) -> None:
        i += 1
        while i <= self.n:
            self.tree[i] += delta
            i += i & -i

    def find(self, r: int) -> int:
        """Smallest position ``p`` with prefix_sum(p) > r (prefix over positions 0..p)."""
        pos = 0
        step = self._top
        while step:
            nxt = pos + step
            if nxt <= self.n and self.tree[nxt] <= r:
                pos = nxt
                r -= self.tree[nxt]
            step >>= 1
        return pos  # 0-based position


def shuffle_order(weights: Sequence[int], rng: CounterRng) -> Iterator[int]:
    """Yield entrant indices in (weighted) Fisher–Yates order, lazily (stop when you have enough)."""
    if any(w <= 0 for w in weights):
        raise ValueError("weights must be positive integers")
    arr = list(range(len(weights)))
    pos_w = [int(w) for w in weights]  # weight at each array position; consumed positions get 0
    fen = _Fenwick(pos_w)
    remaining = sum(pos_w)
    for i in range(len(arr)):
        r = rng.uniform(remaining)
        j = fen.find(r)
        # positions < i carry weight 0, so j >= i
        wi, wj = pos_w[i], pos_w[j]
        arr[i], arr[j] = arr[j], arr[i]
        if j != i:
            pos_w[j] = wi
            fen.add(j, wi - wj)
        fen.add(i, -wi)
        pos_w[i] = 0
        remaining -= wj
        yield arr[i]


@dataclass
class DrawResult:
    winners: list[dict[str, Any]] = field(default_factory=list)  # {"prize", "entrant", "position"}
    rerolls: list[dict[str, Any]] = field(default_factory=list)  # {"forfeited", "entrant", "prize", "position"}


def draw(
    snapshot: dict[str, Any], *, seed_hex: str, commitment: str, beacon_value: str = "",
    forfeited: Sequence[str] = (),
) -> DrawResult:
    """Derive winners (and the replacements for ``forfeited`` winners, in order) from revealed data."""
    entrants = snapshot["entrants"]
    prizes = snapshot["prizes"]
    rng = CounterRng(rng_key(seed_hex, beacon_value, commitment))
    order = shuffle_order([int(e["weight"]) for e in entrants], rng)
    result = DrawResult()
    position = 0
    slots: list[str] = [str(p["id"]) for p in prizes for _ in range(int(p["stock"]))]
    holder: dict[str, str] = {}  # entrant -> prize
    for prize_id in slots:
        idx = next(order, None)
        if idx is None:
            break
        entrant = str(entrants[idx]["id"])
        result.winners.append({"prize": prize_id, "entrant": entrant, "position": position})
        holder[entrant] = prize_id
        position += 1
    for gone in forfeited:
        if str(gone) not in holder:
            raise ValueError(f"forfeited entrant {gone} did not hold a prize")
        prize_id = holder.pop(str(gone))
        idx = next(order, None)
        if idx is None:
            result.rerolls.append({"forfeited": str(gone), "entrant": None, "prize": prize_id, "position": None})
            continue
        entrant = str(entrants[idx]["id"])
        result.rerolls.append({"forfeited": str(gone), "entrant": entrant, "prize": prize_id, "position": position})
        holder[entrant] = prize_id
        position += 1
    return result


@dataclass
class Verification:
    ok: bool
    problems: list[str]
    winners: list[dict[str, Any]]
    rerolls: list[dict[str, Any]]


def verify(published: dict[str, Any]) -> Verification:
    """Re-derive everything from a published lottery record (the ``shequn lottery verify`` file).

    Checks: the revealed seed matches the seed commitment; the snapshot (entrants, prizes) hashes to
    the commitment published before the draw; the winners and rerolls follow from the seed."""
    problems: list[str] = []
    try:
        if published.get("algorithm") != ALGORITHM:
            problems.append(f"unknown algorithm {published.get('algorithm')!r}")
            return Verification(False, problems, [], [])
        seed = str(published["seed"])
        if seed_commitment(seed) != published["seed_commitment"]:
            problems.append("seed does not match seed_commitment")
        expected = snapshot_commitment(
            lottery=str(published["lottery"]), snapshot=published["snapshot"],
            seed_commitment=str(published["seed_commitment"]), beacon=str(published.get("beacon", "")),
        )
        if expected != published["commitment"]:
            problems.append("snapshot does not match the published commitment (tampered snapshot?)")
        forfeited = [r["forfeited"] for r in published.get("rerolls", [])]
        result = draw(published["snapshot"], seed_hex=seed, commitment=str(published["commitment"]),
                      beacon_value=str(published.get("beacon_value", "")), forfeited=forfeited)
    except (KeyError, TypeError, ValueError) as exc:
        problems.append(f"malformed record: {exc}")
        return Verification(False, problems, [], [])
    if result.winners != published.get("winners"):
        problems.append("winners differ from the ones derived from the seed")
    if result.rerolls != published.get("rerolls", []):
        problems.append("rerolls differ from the ones derived from the seed")
    return Verification(not problems, problems, result.winners, result.rerolls)
