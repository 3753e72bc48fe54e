"""The pipeline's fast paths are exact shortcuts: each one is checked against the plain computation
it replaces, on arbitrary input (the frozen reference covers the shipped pack and model)."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shequn.moderation import normalize, pipeline, rules
from shequn.moderation.classifier import CLIP, MAX_CHARS, NaiveBayes, default_model
from shequn.moderation.normalize import normalise
from shequn.moderation.rules import compile_pack, required_literals

from .reference import inputs

_PIECES = ["微信", "wechat", "qq", "tg", "加", "我", "本人", "联系", "找", "滴滴", "戳", "号", ":", "：", " ",
           "日", "一天", "每天", "赚", "入", "结", "earn ", "$", "300", "per", "a", "every", "day", "week", "abc123",
           "店铺码", "1234", "foo", "bar", "x", "y", "z", "\n", "中", "文"]
_texts = st.lists(st.sampled_from(_PIECES), max_size=12).map("".join) | st.text(alphabet="加微信qtg我日结赚0123 :abcx",
                                                                             max_size=30)
_PATTERNS = [
    *(r.pattern for r in compile_pack("").pack.rules if r.kind == "regex"),
    r"店铺码\d{4}", r"(?:ab|cd)?e", r"x|yz", r"(?:加|找)(?:我)?(?:微信|qq)", r"a\bb", r"(?<=x)y+z", r"[xy]{2}z",
    r"(?:foo){1,2}bar", r"(?:x|)y", r"(?=a)abc", r"(a)\1", r"[^a]bc", r"qq?", r"(?:微信|qq)号?[:：]?\s?[a-z]{3}",
]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"(?:微信|wechat|qq|tg)号?[:：]?\s?[a-z][a-z0-9_-]{5,19}", {"微信", "wechat", "qq", "tg"}),
        (r"(?:日|一天|每天)(?:赚|入|结)\s?\d{2,4}", {"日赚", "日入", "日结", "一天赚", "一天入", "一天结", "每天赚",
                                                 "每天入", "每天结"}),
        (r"店铺码\d{4}", {"店铺码"}),
        (r"(?:a|)b", {"b"}),
        (r"a|b", {"a", "b"}),
        (r"(?i)abc", None),  # case-insensitive: no literal is certain
        (r"(?i:ab)cd", {"cd"}),
        (r"x?", None),  # can match the empty string
        (r".*", None),
        (r"[^a]bc", {"bc"}),
    ],
)
def test_required_literals(pattern: str, expected: set[str] | None) -> None:
    assert required_literals(re.compile(pattern)) == expected


@given(st.sampled_from(_PATTERNS), _texts)
@settings(max_examples=600, deadline=None)
def test_a_regex_never_matches_text_without_its_literals(pattern: str, text: str) -> None:
    literals = required_literals(re.compile(pattern))
    if literals is not None and re.search(pattern, text):
        assert any(lit in text for lit in literals)


_COMMUNITY = (
    "category x 测试\n"
    "  regex 2.0 @shop_code 店铺码\\d{4}\n"
    "  regex 1.0 @yz (?:x|)y+z\n"
    "  regex 1.0 @digits \\d{3}\n"  # no literal: always searched
    "  regex 1.0 @nocase (?i)WeChat\n"
    "  term 1.5 联系我\n"
)


def test_gated_regexes_hit_exactly_like_searching_every_regex(monkeypatch: pytest.MonkeyPatch) -> None:
    gated = compile_pack(_COMMUNITY)
    monkeypatch.setattr(rules, "required_literals", lambda rx: None)
    plain = compile_pack(_COMMUNITY)
    assert not plain._gate_regexes and gated._gate_regexes

    texts = [t for _source, t in inputs()] + ["店铺码1234 联系我 wechat", "xyyz 123", "yz", "找我qq abcdef"]
    for text in texts:
        norm = normalise(text)
        assert gated.match(norm) == plain.match(norm), text


@given(_texts)
@settings(max_examples=300, deadline=None)
def test_gated_regexes_on_arbitrary_text(text: str) -> None:
    gated = compile_pack(_COMMUNITY)
    norm = normalise(text)
    expected = [(r.id, m.span()) for r, rx in zip(gated._regexes, gated._each, strict=True)
                if (m := rx.search(norm.text)) and norm.text]
    assert [(h.rule_id, h.span) for h in gated.match(norm) if ".regex." in h.rule_id] == expected


_HANDLE_PIECES = ["微信", "qq", "tg", "wa", "ig", "line", "signal", "viber", "snap", "discord", "加", "号", "v", "q",
                  ":", "：", " ", "@", "#", "_", ".", "-", "+", "abc", "x", "8", "1234", "三二五六七", "零", "一",
                  "\ue002", "is", "me", "on", "dot", "slash", "big", "online"]


def _handle_ungated(text: str) -> re.Match[str] | None:
    return pipeline._HANDLE.search(text) or pipeline._APP_HANDLE.search(text)


@given(st.lists(st.sampled_from(_HANDLE_PIECES), max_size=12).map("".join) | st.text(max_size=30))
@settings(max_examples=500, deadline=None)
def test_handle_gates_skip_only_text_without_a_handle(text: str) -> None:
    """Round 6: ``_handle`` searches ``_HANDLE`` only when the text has an ASCII digit or five Chinese numerals
    in a row, and ``_APP_HANDLE`` only when ``_APP_GATE`` matches — conditions every branch of each needs."""
    got, full = pipeline._handle(text), _handle_ungated(text)
    assert (got and got.span()) == (full and full.span())


def test_handle_gates_on_the_reference_inputs() -> None:
    for _source, text in inputs():
        norm = normalise(text).text
        got, full = pipeline._handle(norm), _handle_ungated(norm)
        assert (got and got.span()) == (full and full.span()), text


@given(st.lists(st.sampled_from(["one", "two", "oh", "five", "phone", "someone", " ", ",", "-", ".", "x", "1"]),
                max_size=20).map("".join) | st.text(max_size=30))
@settings(max_examples=500, deadline=None)
def test_number_word_gate_is_met_wherever_a_spelled_number_is(text: str) -> None:
    if normalize._EN_NUMBER_RUN.search(text):
        assert normalize._EN_NUMBER_GATE.search(text), text


_OLD_SINGLES = re.compile(rf"(?:^|[^a-z0-9])[a-z0-9][{normalize._SEP}]+[a-z0-9](?:[^a-z0-9]|$)")


@given(st.text(alphabet="ab19 .-·_*|/\\~,=•\n\t中x", max_size=16))
@settings(max_examples=500, deadline=None)
def test_single_letter_gate_finds_what_the_original_pattern_found(text: str) -> None:
    assert bool(normalize._SINGLES.search(text)) == bool(_OLD_SINGLES.search(text))


_cjk = st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=20)


@given(_cjk | st.text(max_size=20))
@settings(max_examples=500, deadline=None)
def test_fold_gates_agree_with_the_character_sets(text: str) -> None:
    either, traditional = normalize._fold_gates()
    changes_t2s = not normalize._traditional_chars().isdisjoint(text)
    assert (traditional.search(text) is not None) == changes_t2s
    has_lookalike = not {ord(c) for c in text}.isdisjoint(normalize._LOOKALIKES)
    assert (normalize._LOOKALIKE_GATE.search(text) is not None) == has_lookalike
    assert (either.search(text) is not None) == (
        changes_t2s or bool(normalize._DIGIT_GATE.search(text)) or has_lookalike)


def _slow_logit(model: NaiveBayes, text: str) -> float:
    """The classifier written out plainly: every distinct known n-gram (of the sizes the model was
    trained on: bigrams for naive Bayes, 1–3-grams for the regression), every distinct known word;
    nothing known, or only single characters known → exactly 0 (no evidence); a partner's log-odds
    averaged in."""
    if model.partner is not None:
        w = model.partner_weight
        return (1 - w) * _slow_logit(replace(model, partner=None), text) + w * _slow_logit(model.partner, text)
    weights = model._compile() if model._weights is None else model._weights
    t = re.sub("[1-9]", "0", text[:MAX_CHARS])
    total = weights.get(f"\x00len{min(len(t).bit_length(), 9)}", 0.0)
    k = model._k0
    sizes = tuple(model.lr.get("ngrams", (2,))) if model.lr else (2,)  # type: ignore[arg-type]
    # round 5: the regression also knows runs of 3-5 letters inside English words
    sub = tuple(model.lr.get("subword") or ()) if model.lr else ()  # type: ignore[arg-type]
    longer = False
    grams = [t[i:i + n] for n in sizes for i in range(len(t) - n + 1)]
    grams += [w[i:i + n] for w in re.findall("[a-z]+", t) for n in sub for i in range(len(w) - n + 1)]
    for gram in dict.fromkeys(grams):
        w = weights.get(gram)
        if w is not None and not gram.startswith(("\x00", "\x01")):
            total += w
            k += 1
            longer = longer or len(gram) > 1
    words = re.findall("[a-z]+", t)
    # round 6: and pairs of consecutive words ("dm me"), looked up as words are
    pairs = [f"{a} {b}" for a, b in itertools.pairwise(words)] if model.lr and model.lr.get("pairs") else []
    for word in dict.fromkeys(words + pairs):
        w = weights.get("\x01" + word)
        if w is not None and re.search("[a-z]{3}", t):
            total += w
            k += 1
            longer = True
    if k == model._k0 or not longer:
        return 0.0
    prior, scale = model._prior, model._scale
    if model._prior_en is not None and not re.search("[\u3400-\u9fff\uf900-\ufaff]", t):
        prior, scale = model._prior_en, model._scale_en  # round 6: text without CJK has its own calibration
    z = prior + scale * total / math.sqrt(k)
    return max(-CLIP, min(CLIP, z))


@given(st.text(max_size=60) | st.lists(st.sampled_from(["加微信", "兼职", "刷单", "日结", "earn", "money", "today",
                                                         "周末", "露营", "123", " "]), max_size=12).map("".join))
@settings(max_examples=400, deadline=None)
def test_logit_equals_the_plain_computation(text: str) -> None:
    model = default_model()
    norm = normalise(text).text
    if norm:
        assert math.isclose(model.logit(norm), _slow_logit(model, norm), rel_tol=1e-9, abs_tol=1e-9)
    if norm and model.partner is not None:  # the shipped model is a blend: each half on its own too
        assert math.isclose(model.partner.logit(norm), _slow_logit(model.partner, norm), rel_tol=1e-9, abs_tol=1e-9)
