"""A character n-gram naive Bayes classifier in pure Python (no ML dependencies).

Features are the distinct character bigrams of the normalised text (plus its length
bucket), so no word segmentation runs on the per-message path. The model keeps per-class document
counts, which makes it additive: a tenant's model is the shipped counts plus its moderators'
decisions (each weighted ``TENANT_WEIGHT``), recomputed in milliseconds (:meth:`NaiveBayes.merged`).

Scoring precomputes one log-likelihood ratio per feature, so classifying a message is a set of
slices and dictionary look-ups: the log-odds are the prior plus the sum of the ratios, scaled by
``1/sqrt(#features)`` so long messages do not get overconfident, and clipped to ±``CLIP``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import ahocorasick_rs

from .normalize import normalise

MAX_CHARS = 400
ALPHA = 0.5
CLIP = 8.0
MIN_DF = 2
TENANT_WEIGHT = 5
SCALE = 2.0


_NONZERO = re.compile("[1-9]")
# English carries its meaning in words, which character bigrams ("th", "he") barely see: whole
# ASCII words of three letters or more are features too (prefixed \x01, looked up in a dict)
_HAS_LATIN = re.compile("[a-z]{3}")
_WORD = re.compile(r"[a-z]+")  # runs of letters; only 3-20 letter ones are features


def features(text: str) -> set[str]:
    """Distinct character bigrams of the (normalised) text, and a length bucket. Digits
    are folded to ``0`` first: a phone number's shape matters, its digits are noise."""
    t = _NONZERO.sub("0", text[:MAX_CHARS])
    n = len(t)
    feats = {t[i : i + 2] for i in range(n - 1)}
    feats.add(f"\x00len{min(n.bit_length(), 9)}")
    if _HAS_LATIN.search(t):
        feats.update("\x01" + w for w in _WORD.findall(t) if 2 < len(w) <= 20)
    return feats


@dataclass
class NaiveBayes:
    """Document counts per feature: ``df[f] = [ham, spam]``; ``n = [ham docs, spam docs]``."""

    n: list[int] = field(default_factory=lambda: [0, 0])
    df: dict[str, list[int]] = field(default_factory=dict)
    _weights: dict[str, float] | None = field(default=None, repr=False)
    _prior: float = 0.0
    _gram_w: dict[str, float] = field(default_factory=dict, repr=False)
    _len_w: list[float] = field(default_factory=list, repr=False)
    _word_w: dict[str, float] = field(default_factory=dict, repr=False)
    _ac: ahocorasick_rs.AhoCorasick | None = field(default=None, repr=False)
    _gram_get: Callable[[str], float] | None = field(default=None, repr=False)  # bound once, not per call
    _word_get: Callable[[str], float | None] | None = field(default=None, repr=False)

    def add(self, text: str, spam: bool, weight: int = 1) -> None:
        label = 1 if spam else 0
        self.n[label] += weight
        for f in features(text):
            row = self.df.get(f)
            if row is None:
                row = self.df[f] = [0, 0]
            row[label] += weight
        self._weights = None

    def fit(self, rows: Iterable[tuple[str, bool]], *, normalised: bool = False) -> NaiveBayes:
        for text, spam in rows:
            self.add(text if normalised else normalise(text).text, spam)
        return self

    def prune(self, min_df: int = MIN_DF) -> NaiveBayes:
        self.df = {f: c for f, c in self.df.items() if c[0] + c[1] >= min_df}
        self._weights = None
        return self

    def _compile(self) -> dict[str, float]:
        n_ham, n_spam = self.n
        dh = math.log(n_ham + 2 * ALPHA)
        ds = math.log(n_spam + 2 * ALPHA)
        self._weights = {
            f: (math.log(c[1] + ALPHA) - ds) - (math.log(c[0] + ALPHA) - dh) for f, c in self.df.items()
        }
        self._prior = math.log((n_spam + 1) / (n_ham + 1))
        # one Aho-Corasick automaton over every n-gram feature: a message's features are found in one
        # native call (overlapping matches, in text order) and summed with map(), no per-n-gram Python
        # loop. The automaton hands back its stored pattern objects, which are the keys of _gram_w
        # (hash cached, found by identity): cheaper than building an (index, start, end) tuple per match
        self._gram_w = {f: w for f, w in self._weights.items() if not f.startswith(("\x00", "\x01"))}
        self._len_w = [self._weights.get(f"\x00len{i}", 0.0) for i in range(10)]
        self._word_w = {f[1:]: w for f, w in self._weights.items() if f.startswith("\x01")}
        self._gram_get = self._gram_w.__getitem__
        self._word_get = self._word_w.get
        self._ac = (
            ahocorasick_rs.AhoCorasick(list(self._gram_w), matchkind=ahocorasick_rs.MatchKind.Standard,
                                       store_patterns=True)
            if self._gram_w else None
        )
        return self._weights

    def logit(self, text: str) -> float:
        """Log-odds that the normalised ``text`` is an ad, in [-CLIP, CLIP]."""
        if self._weights is None:
            self._compile()
        t = _NONZERO.sub("0", text[:MAX_CHARS])  # (returns ``t`` itself when it has no digit 1-9)
        n = len(t).bit_length()
        total = self._len_w[n if n < 9 else 9]
        k = 1
        if self._ac is not None:
            found = self._ac.find_matches_as_strings(t, overlapping=True)
            if found:
                total += sum(map(self._gram_get, found))  # type: ignore[arg-type]
                k += len(found)
        if _HAS_LATIN.search(t):
            # distinct words in first-seen order (a set's order would vary with the hash seed, and with it
            # the last bits of the sum); runs shorter than 3 or longer than 20 letters are never known
            weights = list(map(self._word_get, dict.fromkeys(_WORD.findall(t))))  # type: ignore[arg-type]
            known = len(weights) - weights.count(None)
            if known:
                total += sum(filter(None, weights))  # (a weight of exactly 0.0 adds nothing either way)
                k += known
        z = self._prior + SCALE * total / math.sqrt(k)
        return CLIP if z > CLIP else -CLIP if z < -CLIP else z

    def merged(self, extra: Iterable[tuple[str, bool]], weight: int = TENANT_WEIGHT) -> NaiveBayes:
        """A copy with ``extra`` (normalised text, is_spam) added at ``weight`` each."""
        out = NaiveBayes(n=list(self.n), df={f: list(c) for f, c in self.df.items()})
        for text, spam in extra:
            out.add(text, spam, weight)
        return out

    def to_json(self) -> str:
        return json.dumps({"version": 1, "n": self.n, "df": self.df}, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: str | bytes) -> NaiveBayes:
        raw = json.loads(data)
        return cls(n=[int(x) for x in raw["n"]], df={str(f): [int(a), int(b)] for f, (a, b) in raw["df"].items()})


def labelled_rows() -> list[dict[str, object]]:
    """The labelled set shipped with the package (``data/labelled.jsonl``)."""
    text = (files("shequn.moderation") / "data" / "labelled.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_default_model() -> Path:
    """Retrain ``data/model.json`` from ``data/labelled.jsonl`` (run after editing the labelled set)."""
    path = Path(__file__).resolve().parent / "data" / "model.json"
    path.write_text(train_default().to_json(), encoding="utf-8")
    default_model.cache_clear()
    return path


def train_default() -> NaiveBayes:
    return NaiveBayes().fit((str(r["text"]), r["label"] == "ad") for r in labelled_rows()).prune()


@lru_cache(maxsize=1)
def default_model() -> NaiveBayes:
    """The shipped model (``data/model.json``), or one trained on the shipped set when it is missing."""
    try:
        data = (files("shequn.moderation") / "data" / "model.json").read_text(encoding="utf-8")
        return NaiveBayes.from_json(data)
    except FileNotFoundError:
        return train_default()
