"""A character n-gram text classifier in pure Python (no ML dependencies on the per-message path).

Two ways to weight the same features, one scoring path. The shipped model (``data/model.json``) is
**naive Bayes** over per-class document counts, its log-odds **Platt-calibrated** (``platt``: a scale
and a shift fitted on out-of-fold scores, folds grouped by seed template; :func:`train_naive_bayes`; since
round 6 of issue 16 one calibration for text with a CJK character and one, ``platt_en``, for text without).
A **logistic regression** over the same features (:func:`train_logistic`, L2, AdaGrad, plain Python,
also calibrated) was built for issue 16 and measured against it on the grouped cross-validation:
the calibrated count model generalised better there (recall 0.845 vs 0.805 at precision 0.98) and
keeps tenants' updates exactly additive, so it is the one shipped; the regression stays for
comparison (``bench/moderation_quality.py --model lr``). A model with ``lr`` weights scores with
them; a tenant's decisions then shift each weight by the change they make to the naive-Bayes ratio.

Emoji, pictographs and other symbols are never features (``_neutral``), and a message in which no
known feature occurs scores exactly 0: unseen characters and emoji-only messages carry no evidence.

Features are the distinct character bigrams of the normalised text (plus its length
bucket) and its whole English words, so no word segmentation runs on the per-message path; bigrams with
a Latin letter carry no weight (English is read by its words). Since round 3 of issue 16 the counts are
per seed **template**, not per labelled row (:func:`_template_counts`). The model keeps per-class document
counts, which makes it additive: a tenant's model is the shipped counts plus its moderators'
decisions (each weighted ``TENANT_WEIGHT``), recomputed in milliseconds (:meth:`NaiveBayes.merged`).

Scoring precomputes one log-likelihood ratio per feature, so classifying a message is a set of
slices and dictionary look-ups: the log-odds are the prior plus the sum of the ratios, scaled by
``1/sqrt(#features)`` so long messages do not get overconfident, and clipped to ±``CLIP``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import ahocorasick_rs

from .normalize import normalise

MAX_CHARS = 400
# additive smoothing of the per-template counts (0.25; 0.5 on per-row counts before round 3): a feature
# seen in one ad template and no ordinary one is worth about +1.4, no longer the +2.5 that its six
# variants made of it (chosen on the grouped CV and the seen sets: 0.1 / 0.25 / 0.5 / 1.0 measured)
ALPHA = 0.25
CLIP = 8.0
MIN_DF = 1  # in templates: the model's counts are seed templates, not rows (see _template_counts)
# short messages have few features, and two of them divided by sqrt(2) made "+1 same here" an ad: the
# evidence is divided by sqrt(NB_K0 - 1 + features found), two pseudo-features of weight 0 (chosen on
# the grouped CV: 1 → 3 changed little there, and the short ordinary messages it is for stay ok)
NB_K0 = 3
#: calibrate the naive-Bayes half apart for Chinese and for text without a CJK character (round 6)
NB_PLATT_BY_LANGUAGE = os.environ.get("SHEQUN_NB_PLATT_LANG", "1") == "1"
TENANT_WEIGHT = 5
SCALE = 2.0
#: the model ``train-default`` builds: "nb" (calibrated naive Bayes), "lr" (plain-Python regression over the
#: bigrams, round 1), "sk" (the scikit-learn regression over 1–3-grams, round 4, :mod:`.train`) or "blend"
#: (naive Bayes with that regression as its partner, their log-odds averaged: shipped since round 4)
DEFAULT_KIND = "blend"
NGRAMS = tuple(int(x) for x in os.environ.get("SHEQUN_NGRAMS", "2").split(","))


_NONZERO = re.compile("[1-9]")
# English carries its meaning in words, which character bigrams ("th", "he") barely see: whole
# ASCII words of three letters or more are features too (prefixed \x01, looked up in a dict)
_HAS_LATIN = re.compile("[a-z]{3}")
_WORD = re.compile(r"[a-z]+")  # runs of letters; only 3-20 letter ones are features
_NOT_LETTERS = re.compile("[^a-z]+")  # between two runs of letters (the word pairs of the regression)
_RUN_SEP = "\x02"  # joins the runs of letters for the automaton (normalisation strips C0 controls from text)
_LETTERS = re.compile("[a-z]+")


def _neutral(feature: str) -> bool:
    """Features that must carry no evidence: n-grams with a symbol or emoji (Unicode So/Sk/Co/Cn, the
    variation selectors), which the corpus's evasions put next to ads more often than next to chat, and
    n-grams without a letter."""
    if feature.startswith(("\x00", "\x01")):
        return False
    if _SUBWORD.fullmatch(feature):
        # 3-5 letters inside an English word (round 5: the regression's sub-word features, "casin",
        # "bonu", "loan" in "loans"); naive Bayes never makes them (its n-grams are bigrams)
        return False
    if _LATIN_IN.search(feature):
        # Latin letter pairs ("th", "ix", "x "): English is read by its whole words (the \x01 features);
        # letter pairs only added noise that rare templates made loud ("Netflix" → "ix" +4.3, an ad)
        return True
    if not any(c.isalpha() for c in feature):
        # digits, blanks and punctuation only (" 0", "00", ", "): the corpus fills every ad template with
        # an amount or an id, so the regression learnt "a number, so an ad" ("打卡 第 12 天" as one);
        # numbers that matter are the phone, QQ and contact-handle signals' business
        return True
    return any(unicodedata.category(c) in _SYMBOL_CATEGORIES or "\ufe00" <= c <= "\ufe0f" for c in feature)


_LATIN_IN = re.compile("[a-z]")
_CJK_CHAR = re.compile("[\u3400-\u9fff\uf900-\ufaff]")  # the naive-Bayes half's language (platt / platt_en)
_SUBWORD = re.compile("[a-z]{3,5}")
_SYMBOL_CATEGORIES = frozenset({"So", "Sk", "Co", "Cn", "Cs"})


def features(text: str) -> set[str]:
    """Distinct character bigrams of the (normalised) text, and a length bucket. Digits
    are folded to ``0`` first: a phone number's shape matters, its digits are noise."""
    t = _NONZERO.sub("0", text[:MAX_CHARS])
    n = len(t)
    feats = {t[i : i + g] for g in NGRAMS for i in range(n - g + 1)}
    feats.add(f"\x00len{min(n.bit_length(), 9)}")
    if _HAS_LATIN.search(t):
        feats.update("\x01" + w for w in _WORD.findall(t) if 2 < len(w) <= 20)
    return feats


def lr_features(text: str, ngrams: tuple[int, ...], subword: tuple[int, ...] = (), pairs: bool = False) -> set[str]:
    """Every feature a discriminative model over character ``ngrams`` could know in the normalised
    ``text`` (issue 16 round 4, :mod:`.train`): its distinct non-neutral n-grams (digits folded to
    ``0``) and its whole English words (``\x01`` + word, 3–20 letters). No length bucket. With
    ``subword`` sizes (round 5, 3–5), also every run of that many letters inside a word (the letters
    of a run of ``a-z``: the runtime's Aho-Corasick pass finds exactly these, since the pattern has no
    blank or other character it could match across). With ``pairs`` (round 6), also every pair of
    consecutive runs of letters (``\x01`` + "dm me"), which the runtime looks up as it looks up words."""
    t = _NONZERO.sub("0", text[:MAX_CHARS])
    n = len(t)
    feats = {g for size in ngrams for i in range(n - size + 1)
             if not _neutral(g := t[i : i + size]) and not _LATIN_IN.search(g)}
    if _HAS_LATIN.search(t):
        words = _WORD.findall(t)
        feats.update("\x01" + w for w in words if 2 < len(w) <= 20)
        for w in words:
            for size in subword:
                feats.update(w[i : i + size] for i in range(len(w) - size + 1))
        if pairs:
            feats.update(_pairs(words))
    return feats


def _pairs(words: list[str]) -> list[str]:
    """Pairs of consecutive letter runs ("dm me", "in bio"), each as ``\x01`` + "first second": a blank
    cannot occur inside a run, so a pair never collides with a whole word's feature."""
    return [f"\x01{a} {b}" for a, b in itertools.pairwise(words) if len(a) <= 20 and len(b) <= 20]


@dataclass
class NaiveBayes:
    """Document counts per feature: ``df[f] = [ham, spam]``; ``n = [ham docs, spam docs]``."""

    n: list[int] = field(default_factory=lambda: [0, 0])
    df: dict[str, list[int]] = field(default_factory=dict)
    #: logistic-regression weights (``{"bias": b, "w": {feature: weight}}``) or None for naive Bayes
    lr: dict[str, object] | None = None
    #: a tenant's own decisions (weighted document counts, like ``n``/``df``), applied on top of ``lr``
    extra_n: list[int] = field(default_factory=lambda: [0, 0])
    extra_df: dict[str, list[int]] = field(default_factory=dict)
    #: Platt calibration (a, b) of the naive-Bayes log-odds: a·z + b (None: uncalibrated, a=1, b=0)
    platt: tuple[float, float] | None = None
    #: round 6: a calibration of its own for text with no CJK character (English, emoji-only), ``platt`` then
    #: being fitted on Chinese text only — so a larger English corpus cannot move the Chinese scores (None: one)
    platt_en: tuple[float, float] | None = None
    #: a second model whose calibrated log-odds are averaged with this one's (issue 16 round 4: the
    #: shipped model is naive Bayes + the scikit-learn regression, ``partner_weight`` the regression's share)
    partner: NaiveBayes | None = None
    partner_weight: float = 0.0
    _scale: float = SCALE
    _k0: int = 1  # evidence is divided by sqrt(_k0 - 1 + number of features found); LR_K0 for the regression
    _weights: dict[str, float] | None = field(default=None, repr=False)
    _prior: float = 0.0
    _gram_w: dict[str, float] = field(default_factory=dict, repr=False)
    _len_w: list[float] = field(default_factory=list, repr=False)
    _word_w: dict[str, float] = field(default_factory=dict, repr=False)
    _ac: ahocorasick_rs.AhoCorasick | None = field(default=None, repr=False)
    _gram_get: Callable[[str], float] | None = field(default=None, repr=False)  # bound once, not per call
    _word_get: Callable[[str], float | None] | None = field(default=None, repr=False)
    _unigrams: bool = field(default=False, repr=False)  # single characters are features (see _logit)
    _pairs: bool = field(default=False, repr=False)  # pairs of consecutive words are features (lr_features)
    # with pairs: the words and pairs are patterns of the n-grams' automaton too (see _compile)
    _words_in_ac: bool = field(default=False, repr=False)
    _prior_en: float | None = field(default=None, repr=False)  # with platt_en: prior and scale for text
    _scale_en: float = field(default=SCALE, repr=False)  # without a CJK character

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
        if self.partner is not None:
            self.partner.prune(min_df)
        return self

    def _nb_ratios(self, n: list[int], df: dict[str, list[int]]) -> tuple[dict[str, float], float]:
        n_ham, n_spam = n
        dh = math.log(n_ham + 2 * ALPHA)
        ds = math.log(n_spam + 2 * ALPHA)
        ratios = {f: (math.log(c[1] + ALPHA) - ds) - (math.log(c[0] + ALPHA) - dh) for f, c in df.items()}
        return ratios, math.log((n_spam + 1) / (n_ham + 1))

    def _compile(self) -> dict[str, float]:
        if self.lr is None:
            weights, prior = self._nb_ratios(self.n, self.df)
            self._prior, self._scale = prior, SCALE
            if self.platt is not None:  # calibrated: z' = a·(prior + SCALE·Σ/√k) + b
                a, b = self.platt
                self._prior = a * prior + b
                self._scale = a * SCALE
            self._prior_en = None
            if self.platt_en is not None:
                a, b = self.platt_en
                self._prior_en, self._scale_en = a * prior + b, a * SCALE
            self._k0 = NB_K0
        else:
            weights = {str(f): float(w) for f, w in self.lr["w"].items()}  # type: ignore[attr-defined]
            prior = float(self.lr["bias"])  # type: ignore[arg-type]
            if self.extra_df:
                # a tenant's decisions: each feature moves by the change they make to its naive-Bayes ratio
                # (SCALE is the naive-Bayes model's own factor), so confirmed ads and reversals count
                # at once, without refitting the regression
                merged_df = {f: list(c) for f, c in self.df.items()}
                for f, (h, a) in self.extra_df.items():
                    row = merged_df.setdefault(f, [0, 0])
                    row[0] += h
                    row[1] += a
                merged_n = [self.n[0] + self.extra_n[0], self.n[1] + self.extra_n[1]]
                before, prior_before = self._nb_ratios(self.n, {f: self.df.get(f, [0, 0]) for f in self.extra_df})
                after, prior_after = self._nb_ratios(merged_n, {f: merged_df[f] for f in self.extra_df})
                for f in self.extra_df:
                    weights[f] = weights.get(f, 0.0) + SCALE * (after[f] - before[f])
                prior += prior_after - prior_before
            self._prior = prior
            self._scale = 1.0
            self._k0 = LR_K0
        weights = {f: w for f, w in weights.items() if not _neutral(f)}
        # one Aho-Corasick automaton over every n-gram feature: a message's features are found in one
        # native call (overlapping matches, in text order) and summed with map(), no per-n-gram Python
        # loop. The automaton hands back its stored pattern objects, which are the keys of _gram_w
        # (hash cached, found by identity): cheaper than building an (index, start, end) tuple per match
        self._gram_w = {f: w for f, w in weights.items() if not f.startswith(("\x00", "\x01"))}
        self._len_w = [weights.get(f"\x00len{i}", 0.0) for i in range(10)]
        self._word_w = {f[1:]: w for f, w in weights.items() if f.startswith("\x01")}
        self._unigrams = any(len(f) == 1 for f in self._gram_w)
        self._word_get = self._word_w.get
        self._pairs = bool(self.lr.get("pairs")) if self.lr is not None else False
        patterns = self._gram_w
        self._words_in_ac = bool(self._pairs and self._word_w)
        if self._words_in_ac:
            # round 6: with word pairs, the words and pairs are found by the same native call as the n-grams,
            # over the text with each run of letters replaced by \x02 (a character normalisation strips; no
            # n-gram feature has a Latin letter, so they all still match there, and none has a \x02 to match
            # across) followed by the runs of letters joined by \x02, where the letter runs inside words match:
            # "\x02first\x02second\x02" exactly where two runs are consecutive, "\x02word\x02" exactly a whole
            # run — the features lr_features lists
            patterns = {**self._gram_w, **{f"\x02{f.replace(' ', _RUN_SEP)}\x02": w for f, w in self._word_w.items()}}
        self._gram_get = patterns.__getitem__
        self._ac = (
            ahocorasick_rs.AhoCorasick(list(patterns), matchkind=ahocorasick_rs.MatchKind.Standard,
                                       store_patterns=True)
            if patterns else None
        )
        # published last: a thread that sees ``_weights`` set finds every table above built (logit
        # compiles lazily, and two threads may race to it; the loser only builds the same tables twice)
        self._weights = weights
        return weights

    def logit(self, text: str) -> float:
        """Log-odds that the normalised ``text`` is an ad, in [-CLIP, CLIP]; with a partner, the
        weighted mean of both models' calibrated log-odds (each 0 when it knows no feature of the text)."""
        t = _NONZERO.sub("0", text[:MAX_CHARS])  # (returns ``t`` itself when it has no digit 1-9)
        latin = _HAS_LATIN.search(t) is not None
        if self.partner is not None:
            # (the digit-folded text and whether it has English in it, worked out once for both halves)
            w = self.partner_weight
            return (1.0 - w) * self._score(t, latin) + w * self.partner._score(t, latin)
        return self._score(t, latin)

    def _logit(self, text: str) -> float:
        """This model's own log-odds (without its partner)."""
        t = _NONZERO.sub("0", text[:MAX_CHARS])
        return self._score(t, _HAS_LATIN.search(t) is not None)

    def _score(self, t: str, latin: bool) -> float:
        """:meth:`_logit` of the digit-folded text ``t``; ``latin``: whether it has a run of 3 letters."""
        if self._weights is None:
            self._compile()
        n = len(t).bit_length()
        total = self._len_w[n if n < 9 else 9]
        k = self._k0
        # a model with single characters as features (the round-4 regression) reads them only next to a
        # known longer feature: one character alone ("㊙️" folds to 秘) is no evidence by itself
        alone = self._unigrams
        if self._ac is not None:
            found = self._ac.find_matches_as_strings(
                f"{_LETTERS.sub(_RUN_SEP, t)}\x02{_NOT_LETTERS.sub(_RUN_SEP, t)}\x02" if latin and self._words_in_ac
                else t, overlapping=True)
            if found:
                # distinct n-grams, in first-seen order (a set's order would follow the hash seed): a
                # phrase pasted 200 times is one piece of evidence, not √200 of them
                found = list(dict.fromkeys(found))
                total += sum(map(self._gram_get, found))  # type: ignore[arg-type]
                k += len(found)
                if alone:
                    alone = all(len(g) == 1 for g in found)
        if latin and not self._words_in_ac:
            # distinct words in first-seen order (a set's order would vary with the hash seed, and with it
            # the last bits of the sum); runs shorter than 3 or longer than 20 letters are never known
            weights = list(map(self._word_get, dict.fromkeys(_WORD.findall(t))))  # type: ignore[arg-type]
            known = len(weights) - weights.count(None)
            if known:
                total += sum(filter(None, weights))  # (a weight of exactly 0.0 adds nothing either way)
                k += known
                alone = False
        if k == self._k0 or alone:
            return 0.0  # nothing known in the text (emoji only, unseen script): no evidence either way
        if self._prior_en is not None and (t.isascii() or _CJK_CHAR.search(t) is None):
            z = self._prior_en + self._scale_en * total / math.sqrt(k)
        else:
            z = self._prior + self._scale * total / math.sqrt(k)
        return CLIP if z > CLIP else -CLIP if z < -CLIP else z

    def merged(self, extra: Iterable[tuple[str, bool]], weight: int = TENANT_WEIGHT) -> NaiveBayes:
        """A copy with ``extra`` (normalised text, is_spam) added at ``weight`` each."""
        extra = list(extra)
        partner = self.partner.merged(extra, weight) if self.partner is not None else None
        if self.lr is None:
            out = NaiveBayes(n=list(self.n), df={f: list(c) for f, c in self.df.items()}, platt=self.platt,
                             platt_en=self.platt_en, partner=partner, partner_weight=self.partner_weight)
            for text, spam in extra:
                out.add(text, spam, weight)
            return out
        out = NaiveBayes(n=list(self.n), df=self.df, lr=self.lr, extra_n=list(self.extra_n),
                         extra_df={f: list(c) for f, c in self.extra_df.items()}, partner=partner,
                         partner_weight=self.partner_weight)
        # a model trained over other n-gram sizes (the scikit-learn regression: 1–3) reads the tenant's
        # decisions through its own features, so they move the weights it has
        ngrams = self.lr.get("ngrams")
        subword = tuple(int(g) for g in self.lr.get("subword") or ())  # type: ignore[attr-defined]
        pairs = bool(self.lr.get("pairs"))
        feats_of: Callable[[str], set[str]] = (
            (lambda t: lr_features(t, tuple(int(g) for g in ngrams), subword, pairs))  # type: ignore[attr-defined]
            if ngrams else features)
        for text, spam in extra:
            label = 1 if spam else 0
            out.extra_n[label] += weight
            for f in feats_of(text):
                out.extra_df.setdefault(f, [0, 0])[label] += weight
        return out

    def to_json(self) -> str:
        return json.dumps(self._as_dict(), ensure_ascii=False, separators=(",", ":"))

    def _as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"version": 1, "n": self.n, "df": self.df}
        if self.platt is not None:
            data["platt"] = list(self.platt)
        if self.platt_en is not None:
            data["platt_en"] = list(self.platt_en)
        if self.lr is not None:
            data = {"version": 2, "n": self.n, "df": self.df, "lr": self.lr}
            if self.extra_df:
                data["extra_n"], data["extra_df"] = self.extra_n, self.extra_df
        if self.partner is not None:
            data["version"] = 3
            data["partner"] = self.partner._as_dict()
            data["partner_weight"] = self.partner_weight
        return data

    @classmethod
    def from_json(cls, data: str | bytes) -> NaiveBayes:
        return cls._from_dict(json.loads(data))

    @classmethod
    def _from_dict(cls, raw: dict[str, Any]) -> NaiveBayes:
        lr = raw.get("lr")
        return cls(n=[int(x) for x in raw["n"]], df={str(f): [int(a), int(b)] for f, (a, b) in raw["df"].items()},
                   lr={**lr, "bias": float(lr["bias"]), "w": {str(f): float(w) for f, w in lr["w"].items()}}
                   if lr else None,
                   platt=(float(raw["platt"][0]), float(raw["platt"][1])) if raw.get("platt") else None,
                   platt_en=(float(raw["platt_en"][0]), float(raw["platt_en"][1])) if raw.get("platt_en") else None,
                   extra_n=[int(x) for x in raw.get("extra_n", [0, 0])],
                   extra_df={str(f): [int(a), int(b)] for f, (a, b) in raw.get("extra_df", {}).items()},
                   partner=cls._from_dict(raw["partner"]) if raw.get("partner") else None,
                   partner_weight=float(raw.get("partner_weight", 0.0)))


LR_L2 = float(os.environ.get("SHEQUN_LR_L2", "1e-3"))  # per-example L2 penalty
LR_EPOCHS = int(os.environ.get("SHEQUN_LR_EPOCHS", "12"))
LR_RATE = 0.5  # AdaGrad base rate
# a short message has few features, and a regression that sums two or three weights and divides by
# sqrt(3) is sure of itself on little ("打卡 第 12 天" scored as an ad): three pseudo-features of
# weight 0 damp the evidence of short texts (the same in training and scoring)
LR_K0 = 4


def _row_vector(text: str, vocab: dict[str, object]) -> dict[str, float]:
    """The feature values the scoring path sums, written out: each distinct known n-gram and word,
    all divided by sqrt(LR_K0 + number of matches) — so weights
    trained here are used by :meth:`NaiveBayes.logit` unchanged."""
    t = _NONZERO.sub("0", text[:MAX_CHARS])
    counts: dict[str, float] = {}
    k = 1
    for size in NGRAMS:
        for i in range(len(t) - size + 1):
            g = t[i : i + size]
            if g in vocab and g not in counts:
                counts[g] = 1.0
                k += 1
    if _HAS_LATIN.search(t):
        for w in dict.fromkeys(_WORD.findall(t)):
            f = "\x01" + w
            if f in vocab:
                counts[f] = 1.0
                k += 1
    if k == 1:
        return {}
    # no length bucket: in the corpus short messages are mostly chat ("收到", emoji), and the regression
    # learnt "short, so not an ad" strongly enough to outweigh "刷单日结" — the length says nothing by itself
    inv = 1.0 / math.sqrt(k - 1 + LR_K0)
    return {f: c * inv for f, c in counts.items()}


def _fit_logistic(vectors: list[dict[str, float]], labels: list[int], seed: int = 16) -> tuple[float, dict[str, float]]:
    """L2-regularised logistic regression by AdaGrad (sparse, plain Python: ~5k rows in seconds)."""
    w: dict[str, float] = {}
    g2: dict[str, float] = {}
    bias, bias_g2 = 0.0, 0.0
    order = list(range(len(vectors)))
    rng = random.Random(seed)
    for _epoch in range(LR_EPOCHS):
        rng.shuffle(order)
        for i in order:
            x = vectors[i]
            if not x:
                continue
            z = bias + sum(w.get(f, 0.0) * v for f, v in x.items())
            p = 1.0 / (1.0 + math.exp(-z)) if z > -30 else 0.0
            err = p - labels[i]
            bias_g2 += err * err
            bias -= LR_RATE * err / math.sqrt(bias_g2 + 1e-8)
            for f, v in x.items():
                wf = w.get(f, 0.0)
                grad = err * v + LR_L2 * wf
                acc = g2.get(f, 0.0) + grad * grad
                g2[f] = acc
                w[f] = wf - LR_RATE * grad / math.sqrt(acc + 1e-8)
    return bias, w


def _score(bias: float, w: dict[str, float], x: dict[str, float]) -> float:
    return bias + sum(w.get(f, 0.0) * v for f, v in x.items()) if x else 0.0


def _platt(scores: list[float], labels: list[int]) -> tuple[float, float]:
    """Fit p = sigmoid(a*s + b) to out-of-fold scores: Newton's method on two parameters with step
    halving (plain Newton diverges when many scores sit at the ±CLIP bounds)."""
    n1 = sum(labels)
    n0 = len(labels) - n1
    t1, t0 = (n1 + 1) / (n1 + 2), 1 / (n0 + 2)  # Platt's smoothed targets
    targets = [t1 if y else t0 for y in labels]

    def loss(a: float, b: float) -> float:
        total = 0.0
        for s_, t in zip(scores, targets, strict=True):
            z = max(-30.0, min(30.0, a * s_ + b))
            total += math.log1p(math.exp(-z)) + (1 - t) * z  # cross-entropy with soft target t
        return total

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(100):
        ga = gb = haa = hab = hbb = 0.0
        for s_, t in zip(scores, targets, strict=True):
            p = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, a * s_ + b))))
            d = p - t
            ga += d * s_
            gb += d
            q = p * (1 - p) + 1e-9
            haa += q * s_ * s_
            hab += q * s_
            hbb += q
        det = haa * hbb - hab * hab
        if abs(det) < 1e-12:
            break
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        step = 1.0
        while step > 1e-6:
            trial = loss(a - step * da, b - step * db)
            if trial <= current:
                break
            step /= 2
        else:
            break
        a, b = a - step * da, b - step * db
        improved = current - trial
        current = trial
        if improved < 1e-9:
            break
    return a, b


def train_logistic(rows: Iterable[tuple[str, bool, str]], *, folds: int = 5, calibrate: bool = True) -> NaiveBayes:
    """Train the shipped discriminative model from (normalised text, is_ad, template) rows: document
    counts (kept for tenants' additive updates) + logistic-regression weights over the same features,
    Platt-calibrated on out-of-fold scores with folds grouped by ``template`` (no variant of a seed
    is scored by a model that saw it)."""
    data = list(rows)
    nb = NaiveBayes()
    for text, spam, _t in data:
        nb.add(text, spam)
    nb.prune()
    vocab: dict[str, object] = {f: None for f in nb.df if not _neutral(f) and not f.startswith("\x00")}
    vectors = [_row_vector(text, vocab) for text, _s, _t in data]
    labels = [1 if spam else 0 for _t, spam, _x in data]
    a, b = 1.0, 0.0
    if calibrate and folds > 1:
        templates = sorted({t for _x, _s, t in data})
        random.Random(16).shuffle(templates)
        fold_of = {t: i % folds for i, t in enumerate(templates)}
        oof: list[float] = [0.0] * len(data)
        for k in range(folds):
            train = [i for i, (_x, _s, t) in enumerate(data) if fold_of[t] != k]
            bias_k, w_k = _fit_logistic([vectors[i] for i in train], [labels[i] for i in train])
            for i, (_x, _s, t) in enumerate(data):
                if fold_of[t] == k:
                    oof[i] = _score(bias_k, w_k, vectors[i])
        a, b = _platt(oof, labels)
    bias, w = _fit_logistic(vectors, labels)
    weights = {f: round(a * v, 6) for f, v in sorted(w.items()) if abs(a * v) >= 1e-4}
    nb.lr = {"bias": round(a * bias + b, 6), "w": weights, "platt": [round(a, 6), round(b, 6)]}
    nb._weights = None
    return nb


def _grouped_folds(data: list[tuple[str, bool, str]], folds: int) -> dict[str, int]:
    templates = sorted({t for _x, _s, t in data})
    random.Random(16).shuffle(templates)
    return {t: i % folds for i, t in enumerate(templates)}


def _template_counts(data: list[tuple[str, bool, str]]) -> NaiveBayes:
    """Document counts with one document per seed **template**: a feature counts once per template in
    which any variant has it. The labelled set has about six variants of each hand-written seed (its
    evasions, @mentions, traditional spelling); counted per row, one unusual word of one seed ("door",
    "lucky") was worth six independent ads and swung the log-odds by 3, so everyday words that a single
    ad template happened to use made ordinary English chat an ad. The templates are the independent
    pieces of evidence (the same reason the CV folds are grouped by template)."""
    by_template: dict[str, tuple[bool, set[str]]] = {}
    for text, spam, template in data:
        by_template.setdefault(template, (spam, set()))[1].update(features(text))
    model = NaiveBayes()
    df = model.df
    for spam, feats in by_template.values():
        label = 1 if spam else 0
        model.n[label] += 1
        for f in feats:
            row = df.get(f)
            if row is None:
                row = df[f] = [0, 0]
            row[label] += 1
    return model


_SEED_LANGUAGE = re.compile(r"_(zh|en)\.txt:")


def _row_is_chinese(text: str, template: str) -> bool:
    """A training row's language for the calibration: the seed file's (``ham_en.txt:12``; the builder puts
    哈哈 or 请问 on some English rows, which stay English), else whether the text has a CJK character."""
    m = _SEED_LANGUAGE.search(template)
    return m.group(1) == "zh" if m else _CJK_CHAR.search(text) is not None


def train_naive_bayes(rows: Iterable[tuple[str, bool, str]], *, folds: int = 5, calibrate: bool = True) -> NaiveBayes:
    """The shipped model: naive Bayes over the document counts, its log-odds Platt-calibrated on
    out-of-fold scores with folds grouped by ``template`` (a scale and a shift, so a tenant's
    decisions still add to the counts). Chosen over :func:`train_logistic` on the grouped
    cross-validation (see docs/subsystems/moderation.md, Quality)."""
    data = list(rows)
    model = _template_counts(data).prune()
    if calibrate and folds > 1:
        fold_of = _grouped_folds(data, folds)
        oof: list[float] = [0.0] * len(data)
        for k in range(folds):
            part = _template_counts([d for d in data if fold_of[d[2]] != k]).prune()
            for i, (x, _s, t) in enumerate(data):
                if fold_of[t] == k:
                    oof[i] = part.logit(x)
        labels = [1 if s_ else 0 for _x, s_, _t in data]
        if NB_PLATT_BY_LANGUAGE:
            # round 6: Chinese and English calibrated apart (text with / without a CJK character), as the
            # runtime reads them: the English corpus grew by a third and its ads were harder for the count
            # model, which raised the joint calibration's shift by 0.6 and with it every short Chinese text
            zh = [_row_is_chinese(x, t) for x, _s, t in data]
            a, b = _platt([o for o, c in zip(oof, zh, strict=True) if c],
                          [y for y, c in zip(labels, zh, strict=True) if c])
            ae, be = _platt([o for o, c in zip(oof, zh, strict=True) if not c],
                            [y for y, c in zip(labels, zh, strict=True) if not c])
            model.platt_en = (round(ae, 6), round(be, 6))
        else:
            a, b = _platt(oof, labels)
        model.platt = (round(a, 6), round(b, 6))
        model._weights = None
    return model


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


#: the regression's share of the shipped blend's log-odds (chosen on the grouped CV: 0.3 / 0.5 / 0.7)
BLEND_WEIGHT = float(os.environ.get("SHEQUN_BLEND", "0.5"))


def train_blend(rows: Iterable[tuple[str, bool, str]]) -> NaiveBayes:
    """The shipped model since round 4 of issue 16: calibrated naive Bayes over bigrams and words, with
    the scikit-learn logistic regression over 1–3-grams and words (:mod:`.train`) as its partner, their
    calibrated log-odds averaged (``BLEND_WEIGHT``). Build time only (needs scikit-learn)."""
    from .train import train_sklearn  # noqa: PLC0415 - build time only (scikit-learn, a dev dependency)

    data = list(rows)
    model = train_naive_bayes(data)
    model.partner = train_sklearn(data)
    model.partner_weight = BLEND_WEIGHT
    return model


def train_default() -> NaiveBayes:
    kind = os.environ.get("SHEQUN_MODEL_KIND", DEFAULT_KIND)
    trainer: Callable[..., NaiveBayes]
    if kind == "blend":
        trainer = train_blend
    elif kind == "sk":
        from .train import train_sklearn  # noqa: PLC0415 - build time only (scikit-learn, a dev dependency)

        trainer = train_sklearn
    else:
        trainer = train_logistic if kind == "lr" else train_naive_bayes
    return trainer((normalise(str(r["text"])).text, r["label"] == "ad", str(r.get("template", r["text"])))
                          for r in labelled_rows())


@lru_cache(maxsize=1)
def default_model() -> NaiveBayes:
    """The shipped model (``data/model.json``), or one trained on the shipped set when it is missing."""
    try:
        data = (files("shequn.moderation") / "data" / "model.json").read_text(encoding="utf-8")
        return NaiveBayes.from_json(data)
    except FileNotFoundError:
        return train_default()
