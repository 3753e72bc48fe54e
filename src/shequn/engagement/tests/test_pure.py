"""Pure cores: lottery fairness, red-packet split, streaks, the score formula."""

from __future__ import annotations

import copy
import datetime as dt
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shequn.engagement import fairness, redpacket, scoring
from shequn.engagement.streaks import compute_streak, day_bounds, local_day

SEED = "11" * 32


def _record(n: int = 20, weights: list[int] | None = None, stock: tuple[int, ...] = (1, 2)) -> dict:
    snapshot = {
        "entrants": [{"id": f"m{i}", "weight": (weights[i] if weights else 1)} for i in range(n)],
        "prizes": [{"id": f"p{j}", "name": f"奖{j}", "stock": s} for j, s in enumerate(stock)],
    }
    sc = fairness.seed_commitment(SEED)
    commitment = fairness.snapshot_commitment(lottery="7", snapshot=snapshot, seed_commitment=sc)
    res = fairness.draw(snapshot, seed_hex=SEED, commitment=commitment)
    return {"algorithm": fairness.ALGORITHM, "lottery": "7", "snapshot": snapshot, "seed_commitment": sc,
            "commitment": commitment, "beacon": "", "seed": SEED, "beacon_value": "",
            "winners": res.winners, "rerolls": res.rerolls}


def test_draw_is_deterministic_and_verifies():
    a, b = _record(), _record()
    assert a["winners"] == b["winners"]
    assert len(a["winners"]) == 3
    assert len({w["entrant"] for w in a["winners"]}) == 3
    assert [w["prize"] for w in a["winners"]] == ["p0", "p1", "p1"]
    assert fairness.verify(a).ok


def test_verifier_rejects_tampered_snapshot_seed_and_winners():
    rec = _record()
    t = copy.deepcopy(rec)
    t["snapshot"]["entrants"].append({"id": "m999", "weight": 1})
    v = fairness.verify(t)
    assert not v.ok and any("snapshot" in p for p in v.problems)
    t = copy.deepcopy(rec)
    t["snapshot"]["entrants"][0]["weight"] = 50
    assert not fairness.verify(t).ok
    t = copy.deepcopy(rec)
    t["seed"] = "22" * 32
    assert not fairness.verify(t).ok
    t = copy.deepcopy(rec)
    t["winners"][0]["entrant"] = "m19" if t["winners"][0]["entrant"] != "m19" else "m18"
    assert not fairness.verify(t).ok


def test_reroll_takes_next_of_same_shuffle_and_verifies():
    rec = _record()
    first = rec["winners"][0]["entrant"]
    res = fairness.draw(rec["snapshot"], seed_hex=SEED, commitment=rec["commitment"], forfeited=[first])
    assert res.winners == rec["winners"]
    assert res.rerolls[0]["forfeited"] == first and res.rerolls[0]["position"] == 3
    assert res.rerolls[0]["entrant"] not in {w["entrant"] for w in rec["winners"]}
    rec["rerolls"] = res.rerolls
    assert fairness.verify(rec).ok


def test_uniform_has_no_modulo_bias_and_rejects():
    class Fixed(fairness.CounterRng):
        def __init__(self, words):
            self.w = list(words)

        def word(self):
            return self.w.pop(0)

    # n = 3: limit = 2^64 - (2^64 mod 3); a word at/above the limit is rejected
    limit = (1 << 64) - ((1 << 64) % 3)
    r = Fixed([limit, limit + 0, 5])
    assert r.uniform(3) == 5 % 3
    rng = fairness.CounterRng(b"k")
    counts = Counter(rng.uniform(6) for _ in range(12000))
    assert set(counts) == set(range(6)) and min(counts.values()) > 1700


def test_unweighted_is_classic_fisher_yates():
    key = fairness.rng_key(SEED, "", "00" * 32)
    order = list(fairness.shuffle_order([1] * 10, fairness.CounterRng(key)))
    rng = fairness.CounterRng(key)
    arr = list(range(10))
    for i in range(10):
        j = i + rng.uniform(10 - i)
        arr[i], arr[j] = arr[j], arr[i]
    assert order == arr


def test_weighted_draw_is_proportional():
    hits = Counter()
    for s in range(3000):
        rng = fairness.CounterRng(s.to_bytes(4, "big"))
        hits[next(fairness.shuffle_order([1, 3], rng))] += 1
    assert 0.70 < hits[1] / 3000 < 0.80  # expected 0.75


def test_fenwick_weighted_matches_naive():
    weights = [random.Random(i).randint(1, 9) for i in range(30)]
    key = b"x"
    fast = list(fairness.shuffle_order(weights, fairness.CounterRng(key)))
    rng = fairness.CounterRng(key)
    arr = list(range(30))
    w = list(weights)
    naive = []
    for i in range(30):
        r = rng.uniform(sum(w[i:]))
        j = i
        while r >= w[j]:
            r -= w[j]
            j += 1
        arr[i], arr[j] = arr[j], arr[i]
        w[i], w[j] = w[j], w[i]
        naive.append(arr[i])
    assert fast == naive


@settings(max_examples=300)
@given(total=st.integers(1, 10_000_000), count=st.integers(1, 500), seed=st.integers(0, 2**32))
def test_red_packet_random_split_exact_to_the_fen(total, count, seed):
    if total < count:
        with pytest.raises(ValueError):
            redpacket.split(total, count)
        return
    rnd = random.Random(seed)
    shares = redpacket.split(total, count, randint=rnd.randint)
    assert sum(shares) == total
    assert len(shares) == count
    assert min(shares) >= 1
    remaining = total
    for i, s in enumerate(shares[:-1]):
        left = count - i
        assert s <= max(1, 2 * remaining // left)
        remaining -= s


@given(total=st.integers(1, 10_000_000), count=st.integers(1, 500))
def test_red_packet_fixed_split_exact(total, count):
    if total < count:
        return
    shares = redpacket.split(total, count, mode="fixed")
    assert sum(shares) == total and min(shares) >= 1 and max(shares) - min(shares) <= 1


def test_red_packet_extremes():
    assert redpacket.split(5, 5, randint=random.Random(1).randint) == [1, 1, 1, 1, 1]
    assert redpacket.next_share(7, 1) == 7


D = dt.date


def test_streaks():
    t = D(2026, 3, 10)
    assert compute_streak([], t).current == 0
    s = compute_streak([D(2026, 3, 8), D(2026, 3, 9), D(2026, 3, 10), D(2026, 3, 1)], t)
    assert (s.current, s.longest, s.total) == (3, 3, 4)
    s = compute_streak([D(2026, 3, 8), D(2026, 3, 9)], t)  # today not yet: still current
    assert s.current == 2
    s = compute_streak([D(2026, 3, 7), D(2026, 3, 8)], t)  # missed yesterday: broken
    assert (s.current, s.longest) == (0, 2)


def test_local_day_across_midnight_shanghai_and_utc():
    before = dt.datetime(2026, 3, 9, 15, 59, 59, tzinfo=dt.UTC)  # 23:59:59 in Shanghai
    after = dt.datetime(2026, 3, 9, 16, 0, 0, tzinfo=dt.UTC)  # 00:00 next day
    assert local_day(before, "Asia/Shanghai") == D(2026, 3, 9)
    assert local_day(after, "Asia/Shanghai") == D(2026, 3, 10)
    assert local_day(after, "UTC") == D(2026, 3, 9)
    assert local_day(after, "Asia/Kolkata") == D(2026, 3, 9)  # 21:30, DST-free half-hour zone
    start, end = day_bounds(D(2026, 3, 10), "Asia/Shanghai")
    assert start == after and end - start == dt.timedelta(hours=24)
    start, end = day_bounds(D(2026, 3, 8), "America/New_York")  # DST begins: 23-hour day
    assert end - start == dt.timedelta(hours=23)


def test_score_steadiness_beats_bursts():
    today = D(2026, 3, 30)
    steady = {D(2026, 3, d): 6 for d in range(1, 31)}
    burst = {D(2026, 3, 1): 180}
    s1, _ = scoring.score_from_daily(steady, today)
    s2, _ = scoring.score_from_daily(burst, today)
    assert s1 == pytest.approx(6.0)
    assert s2 < 0.5 < s1
    assert scoring.level_for(s1) > scoring.level_for(s2)


def test_score_decays_per_month():
    today = D(2026, 3, 31)
    now_month = {D(2026, 3, d): 6 for d in range(1, 32)}
    two_ago = {D(2026, 1, d): 6 for d in range(1, 32)}
    a, _ = scoring.score_from_daily(now_month, today)
    b, parts = scoring.score_from_daily(two_ago, today)
    assert b == pytest.approx(a * 0.81)
    assert parts[0].months_ago == 2
    assert scoring.level_for(0) == 0 and scoring.level_for(1000) == 10
