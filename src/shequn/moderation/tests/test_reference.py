"""The optimised pipeline judges exactly like the implementation the reference was frozen from.

``data/reference_verdicts.jsonl.gz`` (see ``reference.py``) holds, for the labelled set, both
hold-out sets and 3,000 synthetic evasion-heavy messages, what the pipeline produced before the
performance work: normalised text, flags, lifted URLs/hosts/e-mails/mentions/digit runs, verdict,
category, score, signals, every reason and the classifier's log-odds.
"""

from __future__ import annotations

import gzip
import json
import math
from typing import Any

import pytest

from shequn.moderation.classifier import default_model
from shequn.moderation.pipeline import Moderator
from shequn.moderation.rules import cached_pack

from .reference import PATH, inputs, judge


@pytest.fixture(scope="module")
def reference() -> list[dict[str, Any]]:
    with gzip.open(PATH, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _close(a: object, b: object) -> bool:
    """Equal, floats within 1e-9 (summation order may differ in the last bits)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b, rel_tol=1e-9,
                                                                                          abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_reference_covers_the_current_inputs(reference: list[dict[str, Any]]) -> None:
    # a labelled-set edit must regenerate the reference (and say so), not silently shrink it
    assert [(r["source"], r["text"]) for r in reference] == inputs()
    assert {r["verdict"] for r in reference} == {"ad", "review", "ok"}


def test_every_row_matches_the_reference(reference: list[dict[str, Any]]) -> None:
    moderator = Moderator(cached_pack(""), default_model(), cache_size=0)
    cached = Moderator(cached_pack(""), default_model())
    mismatches = []
    for i, row in enumerate(reference):
        expected = {k: v for k, v in row.items() if k not in ("source", "text")}
        # JSON turns the reasons' span tuples into lists and keeps floats exact (repr round-trips)
        got = json.loads(json.dumps(judge(moderator, i, row["text"])))
        if not _close(got, expected):
            diff = {k: (expected[k], got.get(k)) for k in expected if not _close(got.get(k), expected[k])}
            mismatches.append((i, row["text"][:60], diff))
        # the content cache must not change anything either (the second call is served from it)
        if i % 7 == 0:
            cached.classify(row["text"])
            again = json.loads(json.dumps(judge(cached, i, row["text"])))
            if not _close(again, expected):
                mismatches.append((i, "cached: " + row["text"][:52], {}))
    assert not mismatches, f"{len(mismatches)} rows differ, first: {mismatches[:3]}"
