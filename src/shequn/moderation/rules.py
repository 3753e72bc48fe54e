"""Rule packs: a readable, line-based format operators can edit, compiled to one Aho-Corasick
automaton (ahocorasick-rs) plus one combined regular expression and domain lists.

The format is documented at the top of ``data/default_rules.txt``. :func:`parse_pack` refuses a pack
with errors and names every bad line (``第 12 行: …``), so nothing half-valid is ever saved.
A community's pack is the default pack plus the community's own lines (:func:`compile_pack` takes
both texts), so "allow our domain" or "add this word" is a two-line edit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import ahocorasick_rs
from django.utils.translation import gettext as _

from .normalize import Normalised, normalise

SIGNALS = (
    "phone", "email", "link", "qq_number", "new_member_link", "new_member_mentions",
    "first_message", "trusted_member", "flood", "duplicate_across_groups", "mention_storm",
)
DEFAULT_THRESHOLDS = {"ad": 0.85, "review": 0.55}
_INLINE_COMMENT = re.compile(r"\s+#(?:\s.*)?$")
_CATEGORY_ID = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
MAX_WEIGHT = 10.0
_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
MAX_RULES = 5000


@dataclass(frozen=True)
class PackLineError:
    line: int
    message: str

    def __str__(self) -> str:
        return _("第 %(line)d 行: %(msg)s") % {"line": self.line, "msg": self.message}


class RulePackError(ValueError):
    """A rule pack that does not parse. ``errors`` lists each bad line."""

    def __init__(self, errors: list[PackLineError], source: str = "") -> None:
        self.errors = errors
        self.source = source
        head = "; ".join(str(e) for e in errors[:5])
        more = _(" (另有 %(n)d 处错误)") % {"n": len(errors) - 5} if len(errors) > 5 else ""
        super().__init__(f"{source + ': ' if source else ''}{head}{more}")

    def as_details(self) -> list[dict[str, object]]:
        return [{"line": e.line, "message": e.message, "source": self.source} for e in self.errors]


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    kind: str  # term | regex | domain
    pattern: str
    weight: float
    line: int
    source: str = "default"


@dataclass
class Pack:
    """A parsed (not yet compiled) rule pack."""

    rules: list[Rule] = field(default_factory=list)
    categories: dict[str, str] = field(default_factory=dict)
    allow_terms: list[str] = field(default_factory=list)
    allow_domains: list[str] = field(default_factory=list)
    signals: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)


def _weight(token: str, line: int, errors: list[PackLineError]) -> float | None:
    try:
        w = float(token)
    except ValueError:
        errors.append(PackLineError(line, _("权重必须是数字, 得到 “%(t)s”") % {"t": token}))
        return None
    if math.isnan(w) or not -MAX_WEIGHT <= w <= MAX_WEIGHT:
        errors.append(PackLineError(line, _("权重必须在 -10 到 10 之间")))
        return None
    return w


def parse_pack(text: str, *, source: str = "default", into: Pack | None = None) -> Pack:
    """Parse rule-pack text. Raises :class:`RulePackError` listing every bad line; returns ``into``
    (extended) or a new :class:`Pack`."""
    pack = into if into is not None else Pack()
    errors: list[PackLineError] = []
    category: str | None = None
    if not isinstance(text, str):
        raise RulePackError([PackLineError(0, _("规则包必须是文本"))], source)
    seen: set[str] = {r.id for r in pack.rules}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head = line.split(None, 1)[0].lower()
        if head != "regex":  # inline comments ("term 2.0 代购  # note"); a regex is taken verbatim
            line = _INLINE_COMMENT.sub("", line)
        parts = line.split(None, 2)
        if head == "category":
            if len(parts) < 2 or not _CATEGORY_ID.match(parts[1]):
                errors.append(PackLineError(
                    lineno, _("分类 ID 只能用小写字母、数字和下划线, 例如 category contact 联系方式")))
                continue
            category = parts[1]
            label = parts[2].strip() if len(parts) > 2 else ""
            pack.categories[category] = label or pack.categories.get(category, category)
        elif head in ("term", "regex", "domain"):
            if len(parts) < 3:
                errors.append(PackLineError(lineno, _("格式应为: %(k)s <权重> <内容>") % {"k": head}))
                continue
            if category is None:
                errors.append(PackLineError(lineno, _("规则前需要先写 category 行")))
                continue
            weight = _weight(parts[1], lineno, errors)
            if weight is None:
                continue
            pattern = parts[2].strip()
            name = ""
            if head == "regex" and pattern.startswith("@"):
                # "regex 2.0 @wechat_id <pattern>": a readable rule id instead of the pattern
                name, _sep, pattern = pattern[1:].partition(" ")
                pattern = pattern.strip()
                if not _CATEGORY_ID.match(name) or not pattern:
                    errors.append(PackLineError(
                        lineno, _("正则规则名只能用小写字母、数字和下划线, 格式: regex <权重> @名称 <正则>")))
                    continue
            if head == "term":
                folded = normalise(pattern).text
                if not folded:
                    errors.append(PackLineError(lineno, _("关键词规范化后为空")))
                    continue
                pattern = folded
            elif head == "regex":
                try:
                    re.compile(pattern)
                except re.error as exc:
                    errors.append(PackLineError(lineno, _("正则表达式错误: %(e)s") % {"e": exc}))
                    continue
            else:
                pattern = pattern.lower().removeprefix("https://").removeprefix("http://").strip("/")
                if not _DOMAIN.match(pattern):
                    errors.append(PackLineError(lineno, _("域名格式不正确: %(d)s") % {"d": pattern}))
                    continue
            rule_id = f"{category}.{head}.{name or pattern}"[:120]
            if rule_id in seen:
                # a community pack may re-weight a default rule: the later line wins
                pack.rules = [r for r in pack.rules if r.id != rule_id]
            seen.add(rule_id)
            pack.rules.append(Rule(rule_id, category, head, pattern, weight, lineno, source))
        elif head == "allow":
            sub = parts[1].lower() if len(parts) > 1 else ""
            value = parts[2].strip() if len(parts) > 2 else ""
            if sub not in ("term", "domain") or not value:
                errors.append(PackLineError(lineno, _("格式应为: allow term <短语> 或 allow domain <域名>")))
                continue
            if sub == "term":
                folded = normalise(value).text
                if folded:
                    pack.allow_terms.append(folded)
            else:
                value = value.lower().removeprefix("https://").removeprefix("http://").strip("/")
                if not _DOMAIN.match(value):
                    errors.append(PackLineError(lineno, _("域名格式不正确: %(d)s") % {"d": value}))
                    continue
                pack.allow_domains.append(value)
        elif head == "signal":
            if len(parts) < 3 or parts[1] not in SIGNALS:
                errors.append(PackLineError(lineno, _("未知的信号, 可用: %(s)s") % {"s": ", ".join(SIGNALS)}))
                continue
            weight = _weight(parts[2].split()[0], lineno, errors)
            if weight is not None:
                pack.signals[parts[1]] = weight
        elif head == "threshold":
            if len(parts) < 3 or parts[1] not in ("ad", "review"):
                errors.append(PackLineError(lineno, _("格式应为: threshold ad|review <0 到 1 之间的数>")))
                continue
            try:
                value_f = float(parts[2].split()[0])
            except ValueError:
                value_f = -1.0
            if not 0.0 < value_f < 1.0:
                errors.append(PackLineError(lineno, _("阈值必须在 0 到 1 之间 (不含)")))
                continue
            pack.thresholds[parts[1]] = value_f
        else:
            errors.append(PackLineError(lineno, _("无法识别的行: “%(l)s”") % {"l": line[:40]}))
    if len(pack.rules) > MAX_RULES:
        errors.append(PackLineError(0, _("规则过多 (上限 %(n)d)") % {"n": MAX_RULES}))
    th = {**DEFAULT_THRESHOLDS, **pack.thresholds}
    if th["review"] > th["ad"]:
        errors.append(PackLineError(0, _("review 阈值不能高于 ad 阈值")))
    if errors:
        raise RulePackError(errors, source)
    return pack


class Hit(NamedTuple):
    rule_id: str
    category: str
    weight: float
    span: tuple[int, int] | None  # in the normalised text; None for domain hits
    matched: str


class CompiledPack:
    """The matcher for one pack. Immutable and shared between threads."""

    def __init__(self, pack: Pack) -> None:
        self.pack = pack
        self.categories = dict(pack.categories)
        self.signals = dict.fromkeys(SIGNALS, 0.0) | pack.signals
        self.thresholds = {**DEFAULT_THRESHOLDS, **pack.thresholds}
        self._terms = [r for r in pack.rules if r.kind == "term"]
        patterns = [r.pattern for r in self._terms]
        # overlapping matches: "帮我砍一刀" hits both 帮我砍 and 砍一刀
        self._ac = (
            ahocorasick_rs.AhoCorasick(patterns, matchkind=ahocorasick_rs.MatchKind.Standard)
            if patterns else None
        )
        # overlapping matcher for allow phrases, which may start inside a rule term
        self._allow_ac = (
            ahocorasick_rs.AhoCorasick(pack.allow_terms, matchkind=ahocorasick_rs.MatchKind.Standard)
            if pack.allow_terms else None
        )
        # per term: id, category, weight, and whether an ASCII word boundary is needed left / right
        self._term_info = [
            (r.id, r.category, r.weight, r.pattern[0].isascii() and r.pattern[0].isalnum(),
             r.pattern[-1].isascii() and r.pattern[-1].isalnum())
            for r in self._terms
        ]
        self._regexes = [r for r in pack.rules if r.kind == "regex"]
        self._each = [re.compile(r.pattern) for r in self._regexes]
        self._deny = {r.pattern: r for r in pack.rules if r.kind == "domain"}
        self._allow_domains = frozenset(pack.allow_domains)

    def allowed_host(self, host: str) -> bool:
        return _domain_match(host, self._allow_domains) is not None

    def denied_host(self, host: str) -> Rule | None:
        hit = _domain_match(host, self._deny.keys())
        return self._deny[hit] if hit else None

    def match(self, norm: Normalised) -> list[Hit]:
        """Every rule hit in a normalised message: terms (minus those inside an allowed phrase),
        regexes and denied link domains. One rule counts once."""
        text = norm.text
        hits: list[Hit] = []
        seen: set[str] = set()
        if self._ac is not None and text:
            found = self._ac.find_matches_as_indexes(text, overlapping=True)
            if found:
                allow_spans = (
                    [(s, e) for _i, s, e in self._allow_ac.find_matches_as_indexes(text, overlapping=True)]
                    if self._allow_ac is not None else []
                )
                n = len(text)
                info = self._term_info
                for idx, start, end in found:
                    rule_id, category, weight, before, after = info[idx]
                    if rule_id in seen:
                        continue
                    if (before and start and text[start - 1] in _ASCII_ALNUM) or (
                        after and end < n and text[end] in _ASCII_ALNUM
                    ):
                        continue
                    if allow_spans and any(s <= start and end <= e for s, e in allow_spans):
                        continue
                    seen.add(rule_id)
                    hits.append(Hit(rule_id, category, weight, (start, end), text[start:end]))
        if self._regexes and text:
            # one search per regex: faster than a combined alternation (whose named groups defeat
            # sre's first-character scan) and it cannot hide overlapping matches
            for rule, rx in zip(self._regexes, self._each, strict=True):
                if rule.id in seen:
                    continue
                m = rx.search(text)
                if m is not None:
                    seen.add(rule.id)
                    hits.append(Hit(rule.id, rule.category, rule.weight, m.span(), m.group(0)[:80]))
        for host in norm.hosts:
            if self.allowed_host(host):
                continue
            rule_d = self.denied_host(host)
            if rule_d is not None and rule_d.id not in seen:
                seen.add(rule_d.id)
                hits.append(Hit(rule_d.id, rule_d.category, rule_d.weight, None, host))
        return hits


def _domain_match(host: str, domains: object) -> str | None:
    """The listed domain ``host`` equals or is a sub-domain of, if any."""
    if not host:
        return None
    labels = host.split(".")
    for i in range(len(labels) - 1):
        candidate = ".".join(labels[i:])
        if candidate in domains:  # type: ignore[operator]
            return candidate
    return None


def default_pack_text() -> str:
    from importlib.resources import files

    return (files("shequn.moderation") / "data" / "default_rules.txt").read_text(encoding="utf-8")


def compile_pack(extra: str = "", *, base: str | None = None) -> CompiledPack:
    """The default pack (or ``base``) extended by ``extra`` (a community's own lines). Raises
    :class:`RulePackError` naming the source (``default`` / ``community``) and line."""
    pack = parse_pack(default_pack_text() if base is None else base, source="default")
    if extra.strip():
        parse_pack(extra, source="community", into=pack)
    return CompiledPack(pack)


@lru_cache(maxsize=64)
def cached_pack(extra: str = "") -> CompiledPack:
    return compile_pack(extra)
