"""Build-time training of the discriminative moderation classifier (issue 16, round 4).

    shequn moderation train-default            # → data/model.json (uses this module)

A logistic regression over the character 1–3-grams of the normalised text (digits folded to ``0``,
every n-gram with a Latin letter, a symbol or emoji, or no letter at all left out — the same
``_neutral`` rule as the count model), its whole English words (3–20 letters), since round 5 every
run of 3–5 letters inside an English word (``SK_SUBWORD``: "casinos" shares "casin" with "casino") and, since
round 6, every pair of consecutive English words (``SK_PAIRS``: "dm me", "in bio"), fitted with
scikit-learn (L2, liblinear) and exported as plain weights: the runtime (:meth:`NaiveBayes.logit`)
stays pure Python — one Aho-Corasick pass over the known n-grams, a dictionary look-up per word, the
sum of their weights divided by ``sqrt(LR_K0 + features found)``, plus the bias. The row vectors
built here are exactly what that path sums, so the exported weights mean at runtime what they meant
in training.

Why these choices:

- **Vocabulary by template** (``min_df`` counted in seed templates, not rows): a feature seen in one
  hand-written seed only (its six variants) is that seed's idiosyncrasy, not evidence; it gets no
  weight, and an n-gram or word unseen in training weighs 0 by construction, so unseen characters and
  emoji-only messages carry no evidence.
- **Rows weighted 1 / variants of their template**: every seed counts once, however many evasion
  variants the corpus builder made of it (the reason the CV folds are grouped by template).
- **Platt calibration** on out-of-fold decision values, folds grouped by template (a scale and a
  shift folded into the exported weights), so the pipeline's ``CLF_WEIGHT`` reads calibrated
  log-odds as it does for the count model.
- The template document counts of the vocabulary are kept in the file: a tenant's moderator
  decisions move each weight by the change they make to the naive-Bayes ratio of that feature
  (:meth:`NaiveBayes.merged`), which needs no refit and no scikit-learn at run time.

scikit-learn is a dev (build-time) dependency only; nothing on the per-message path imports it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable

from .classifier import LR_K0, NaiveBayes, _grouped_folds, _platt, lr_features

#: n-gram sizes of the discriminative model (1–3: single characters carry much of Chinese; 3-grams
#: catch 加微信-like phrases whatever surrounds them)
SK_NGRAMS = tuple(int(x) for x in os.environ.get("SHEQUN_SK_NGRAMS", "1,2,3").split(","))
#: sizes of the letter runs inside English words that are features too (round 5: English was read by
#: whole words only, so "casinos", "cashback" and "loans" knew nothing of "casino", "cash", "loan")
SK_SUBWORD = tuple(int(x) for x in os.environ.get("SHEQUN_SK_SUBWORD", "3,4,5").split(",") if x)
#: inverse regularisation strength (chosen on the grouped CV of the whole pipeline)
SK_C = float(os.environ.get("SHEQUN_SK_C", "16"))
#: a feature must occur in this many seed templates to get a weight
SK_MIN_DF = int(os.environ.get("SHEQUN_SK_MIN_DF", "2"))
SK_SOLVER = os.environ.get("SHEQUN_SK_SOLVER", "liblinear")
SK_TEMPLATE_WEIGHT = os.environ.get("SHEQUN_SK_TW", "1") == "1"
#: pairs of consecutive English words as features too ("dm me", "in bio"; round 6 — measured in round 4 without the
#: sub-word features, when English precision fell; with them and the round-6 corpus, English recall rose on the CV
#: and on every seen set at level precision)
SK_PAIRS = os.environ.get("SHEQUN_SK_PAIRS", "1") == "1"
#: the weight of an ad row relative to an ordinary one (class weighting; 1 = none: 1.5 was measured in round 6 and
#: moved the figures within the noise of the CV and the seen sets)
SK_AD_WEIGHT = float(os.environ.get("SHEQUN_SK_AD_WEIGHT", "1"))


def candidate_features(text: str, ngrams: tuple[int, ...] = SK_NGRAMS,
                       subword: tuple[int, ...] = SK_SUBWORD, pairs: bool = SK_PAIRS) -> set[str]:
    return lr_features(text, ngrams, subword, pairs)


def _vocabulary(data: list[tuple[str, bool, str]], feats: list[set[str]],
                min_df: int) -> tuple[dict[str, int], NaiveBayes]:
    """Features in at least ``min_df`` templates (index by sorted name), and their per-template
    document counts (``n``/``df``, for tenants' additive updates)."""
    by_template: dict[str, tuple[bool, set[str]]] = {}
    for (_x, spam, template), row_feats in zip(data, feats, strict=True):
        by_template.setdefault(template, (spam, set()))[1].update(row_feats)
    counts = NaiveBayes()
    for spam, fs in by_template.values():
        label = 1 if spam else 0
        counts.n[label] += 1
        for f in fs:
            row = counts.df.get(f)
            if row is None:
                row = counts.df[f] = [0, 0]
            row[label] += 1
    counts.df = {f: c for f, c in counts.df.items() if c[0] + c[1] >= min_df}
    return {f: i for i, f in enumerate(sorted(counts.df))}, counts


def _evidence(fs: set[str], index: dict[str, int]) -> bool:
    """Whether a row carries evidence at runtime: some known feature longer than one character (single
    characters count only next to one — :meth:`NaiveBayes._logit`)."""
    return any(len(f) > 1 and f in index for f in fs)


def _matrix(feats: list[set[str]], index: dict[str, int]):  # type: ignore[no-untyped-def]
    """Rows as the runtime sums them: 1/sqrt(LR_K0 + known features) on each known feature."""
    from scipy.sparse import csr_matrix  # noqa: PLC0415 - build time only

    indptr, indices, values = [0], [], []
    for fs in feats:
        known = sorted(index[f] for f in fs if f in index)
        if _evidence(fs, index):
            v = 1.0 / ((len(known) + LR_K0) ** 0.5)
            indices.extend(known)
            values.extend([v] * len(known))
        indptr.append(len(indices))
    return csr_matrix((values, indices, indptr), shape=(len(feats), len(index)))


def _fit(x, y: list[int], w: list[float], c: float):  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415 - build time only

    clf = LogisticRegression(C=c, solver=SK_SOLVER, max_iter=2000, tol=1e-5)
    clf.fit(x, y, sample_weight=w)
    return clf


def train_sklearn(rows: Iterable[tuple[str, bool, str]], *, folds: int = 5, calibrate: bool = True,
                  c: float | None = None, min_df: int | None = None) -> NaiveBayes:
    """The discriminative model from (normalised text, is_ad, template) rows, exported as weights."""
    data = list(rows)
    c = SK_C if c is None else c
    min_df = SK_MIN_DF if min_df is None else min_df
    feats = [candidate_features(x) for x, _s, _t in data]
    labels = [1 if s else 0 for _x, s, _t in data]
    per_template = Counter(t for _x, _s, t in data)
    weights = [1.0 / per_template[t] if SK_TEMPLATE_WEIGHT else 1.0 for _x, _s, t in data]
    if SK_TEMPLATE_WEIGHT:  # keep the total weight (and so the meaning of C) at the number of rows
        scale = len(data) / sum(weights)
        weights = [w * scale for w in weights]
    if SK_AD_WEIGHT != 1.0:
        weights = [w * SK_AD_WEIGHT if s else w for w, (_x, s, _t) in zip(weights, data, strict=True)]
    a, b = 1.0, 0.0
    if calibrate and folds > 1:
        fold_of = _grouped_folds(data, folds)
        oof = [0.0] * len(data)
        for k in range(folds):
            train = [i for i, d in enumerate(data) if fold_of[d[2]] != k]
            test = [i for i, d in enumerate(data) if fold_of[d[2]] == k]
            index_k, _ = _vocabulary([data[i] for i in train], [feats[i] for i in train], min_df)
            clf = _fit(_matrix([feats[i] for i in train], index_k), [labels[i] for i in train],
                       [weights[i] for i in train], c)
            scores = clf.decision_function(_matrix([feats[i] for i in test], index_k))
            for i, s in zip(test, scores, strict=True):
                # a row with no known feature scores exactly 0 at runtime, whatever the bias
                oof[i] = float(s) if _evidence(feats[i], index_k) else 0.0
        a, b = _platt(oof, labels)
    index, counts = _vocabulary(data, feats, min_df)
    clf = _fit(_matrix(feats, index), labels, weights, c)
    coef = clf.coef_[0]
    names = sorted(index)
    # every vocabulary feature is exported, even a weight of ~0: each known feature found in a message
    # counts in sqrt(LR_K0 + found), at runtime as in training
    w = {f: round(a * float(coef[index[f]]), 5) for f in names}
    counts.lr = {"bias": round(a * float(clf.intercept_[0]) + b, 6), "w": w, "platt": [round(a, 6), round(b, 6)],
                 "ngrams": list(SK_NGRAMS), "subword": list(SK_SUBWORD), "pairs": SK_PAIRS, "kind": "sklearn-logistic",
                 "C": c, "min_df": min_df}
    counts._weights = None
    return counts
