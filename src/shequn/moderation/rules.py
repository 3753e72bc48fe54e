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
from importlib.resources import files
from re import _constants as _c  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any, NamedTuple

import ahocorasick_rs
from django.utils.translation import gettext as _

from .normalize import Normalised, normalise

SIGNALS = (
    "phone", "email", "link", "qq_number", "new_member_link", "new_member_mentions",
    "first_message", "trusted_member", "flood", "duplicate_across_groups", "mention_storm", "contact_handle",
    "campaign_text", "no_invite",
)
DEFAULT_THRESHOLDS = {"ad": 0.85, "review": 0.55}
_INLINE_COMMENT = re.compile(r"\s+#(?:\s.*)?$")
_CATEGORY_ID = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_TLD = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
_PLACEHOLDER = re.compile("[\ue000-\ue002]")  # what normalise leaves where a link, e-mail or mention stood
_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
MAX_WEIGHT = 10.0
_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
MAX_RULES = 5000
HOST_CACHE = 4096


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
    #: ``combine`` lines: (rule id, weight, category, partner categories). The weight is added once when
    #: the category and at least one partner each have positive weight in a message
    combos: list[Combo] = field(default_factory=list)


class Combo(NamedTuple):
    id: str
    weight: float
    category: str
    partners: tuple[str, ...]


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


def _domain_value(raw: str) -> str | None:
    """A domain line's value: ``example.com`` (and its sub-domains), or ``*.xyz`` for every host under
    a top-level domain (stored as ``xyz``); None when malformed."""
    value = raw.lower().removeprefix("https://").removeprefix("http://").strip("/")
    if value.startswith("*."):
        value = value[2:]
        return value if _DOMAIN.match(value) or _TLD.match(value) else None
    return value if _DOMAIN.match(value) else None


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
                if _PLACEHOLDER.search(folded):
                    # "term 2.0 t.me" would become the link placeholder and match every link
                    errors.append(PackLineError(
                        lineno, _("关键词不能包含链接、邮箱或 @提及; 链接请用 domain 规则")))
                    continue
                pattern = folded
            elif head == "regex":
                try:
                    re.compile(pattern)
                except re.error as exc:
                    errors.append(PackLineError(lineno, _("正则表达式错误: %(e)s") % {"e": exc}))
                    continue
            else:
                domain = _domain_value(pattern)
                if domain is None:
                    errors.append(PackLineError(lineno, _("域名格式不正确: %(d)s") % {"d": pattern}))
                    continue
                pattern = domain
            rule_id = f"{category}.{head}.{name or pattern}"[:120]
            if rule_id in seen:
                # a community pack may re-weight a default rule: the later line wins
                pack.rules = [r for r in pack.rules if r.id != rule_id]
            seen.add(rule_id)
            pack.rules.append(Rule(rule_id, category, head, pattern, weight, lineno, source))
        elif head == "combine":
            # "combine 1.0 contact job,loan,benefit": contact intent next to an offer of money or a benefit
            cats = parts[2].split() if len(parts) > 2 else []
            name = cats.pop(0)[1:] if cats and cats[0].startswith("@") else ""
            partners = tuple(cats[1].split(",")) if len(cats) == 2 else ()
            if len(parts) < 3 or len(cats) != 2 or not all(
                    _CATEGORY_ID.match(c) for c in (cats[0], *partners)) or cats[0] in partners or (
                    name and not _CATEGORY_ID.match(name)):
                errors.append(PackLineError(lineno, _(
                    "格式应为: combine <权重> [@名称] <分类> <分类>[,<分类>…], 例如 combine 1.0 contact job,loan")))
                continue
            weight = _weight(parts[1], lineno, errors)
            if weight is None:
                continue
            combo_id = f"{cats[0]}.combine.{name or '+'.join(partners)}"[:120]
            pack.combos = [c for c in pack.combos if c.id != combo_id]  # a later line re-weights it
            pack.combos.append(Combo(combo_id, weight, cats[0], partners))
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
                domain = _domain_value(value)
                if domain is None:
                    errors.append(PackLineError(lineno, _("域名格式不正确: %(d)s") % {"d": value}))
                    continue
                pack.allow_domains.append(domain)
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
        self.combos = tuple(pack.combos)
        self._terms = [r for r in pack.rules if r.kind == "term"]
        self._regexes = [r for r in pack.rules if r.kind == "regex"]
        self._each = [re.compile(r.pattern) for r in self._regexes]
        # a regex runs only when the text contains one of the literals every match of it must contain
        # ("微信", "qq", … for the contact id rule); those literals are found by the terms' automaton,
        # so most messages pay one automaton pass and no regex search. A regex without such literals
        # (or with IGNORECASE) always runs.
        gates: dict[str, list[int]] = {}
        self._always: list[int] = []
        for k, rx in enumerate(self._each):
            literals = required_literals(rx)
            if literals is None:
                self._always.append(k)
            else:
                for lit in literals:
                    gates.setdefault(lit, []).append(k)
        self._n_terms = len(self._terms)
        self._gate_regexes = list(gates.values())
        patterns = [r.pattern for r in self._terms] + list(gates)
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
        self._deny = {r.pattern: r for r in pack.rules if r.kind == "domain"}
        self._allow_domains = frozenset(pack.allow_domains)
        # host → (allowed, denying rule): links repeat, and the label walk is pure; bounded
        self._hosts: dict[str, tuple[bool, Rule | None]] = {}

    def _host(self, host: str) -> tuple[bool, Rule | None]:
        known = self._hosts.get(host)
        if known is None:
            hit = _domain_match(host, self._deny.keys())
            known = (_domain_match(host, self._allow_domains) is not None, self._deny[hit] if hit else None)
            if len(self._hosts) >= HOST_CACHE:
                self._hosts.clear()
            self._hosts[host] = known
        return known

    def allowed_host(self, host: str) -> bool:
        return self._host(host)[0]

    def denied_host(self, host: str) -> Rule | None:
        return self._host(host)[1]

    def match(self, norm: Normalised) -> list[Hit]:
        """Every rule hit in a normalised message: terms (minus those inside an allowed phrase),
        regexes and denied link domains. One rule counts once."""
        return list(self.hits(norm))

    def hits(self, norm: Normalised) -> tuple[Hit, ...]:
        """:meth:`match` as a tuple (the shared empty tuple for most messages: the pipeline's hot path
        allocates nothing for a message without hits)."""
        text = norm.text
        hits: list[Hit] | None = None
        seen: set[str] | None = None
        gated: set[int] | None = None
        if self._ac is not None and text:
            found = self._ac.find_matches_as_indexes(text, overlapping=True)
            if found:
                n_terms = self._n_terms
                allow_spans: list[tuple[int, int]] | None = None
                n = len(text)
                info = self._term_info
                for idx, start, end in found:
                    if idx >= n_terms:  # a regex's required literal
                        if gated is None:
                            gated = set()
                        gated.update(self._gate_regexes[idx - n_terms])
                        continue
                    rule_id, category, weight, before, after = info[idx]
                    if seen is not None and rule_id in seen:
                        continue
                    if (before and start and text[start - 1] in _ASCII_ALNUM) or (
                        after and end < n and text[end] in _ASCII_ALNUM
                    ):
                        continue
                    if self._allow_ac is not None:
                        if allow_spans is None:
                            allow_spans = [
                                (s, e) for _i, s, e in self._allow_ac.find_matches_as_indexes(text, overlapping=True)
                            ]
                        masked = False
                        for s, e in allow_spans:
                            if s <= start and end <= e:
                                masked = True
                                break
                        if masked:
                            continue
                    if seen is None:
                        seen = set()
                    if hits is None:
                        hits = []
                    seen.add(rule_id)
                    hits.append(_new_hit(Hit, (rule_id, category, weight, (start, end), text[start:end])))
        if text and (gated is not None or self._always):
            # one search per regex (in pack order): faster than a combined alternation (whose named
            # groups defeat sre's first-character scan) and it cannot hide overlapping matches. Rule
            # ids are unique per kind, so a regex cannot repeat a term's or another regex's hit.
            todo = self._always if gated is None else sorted(gated.union(self._always))
            regexes, each = self._regexes, self._each
            for k in todo:
                m = each[k].search(text)
                if m is not None:
                    rule = regexes[k]
                    if hits is None:
                        hits = []
                    hits.append(_new_hit(Hit, (rule.id, rule.category, rule.weight, m.span(), m.group(0)[:80])))
        for host in norm.hosts:
            allowed, rule_d = self._host(host)
            if allowed or rule_d is None:
                continue
            if seen is None:
                seen = set()
            if rule_d.id not in seen:
                seen.add(rule_d.id)
                if hits is None:
                    hits = []
                hits.append(_new_hit(Hit, (rule_d.id, rule_d.category, rule_d.weight, None, host)))
        return tuple(hits) if hits else ()


#: builds a Hit without the Python-level ``__new__`` of a NamedTuple (several times cheaper)
_new_hit = tuple.__new__


#: alternatives a regex gate may have (more and the regex simply always runs)
GATE_MAX = 64


def _exact(items: Any) -> set[str] | None:
    """Every string a parsed regex sequence can match, when that is a small finite set."""
    out = {""}
    for op, av in items:
        alts = _exact_item(op, av)
        if alts is None:
            return None
        out = {a + b for a in out for b in alts}
        if len(out) > GATE_MAX:
            return None
    return out


def _exact_item(op: Any, av: Any) -> set[str] | None:
    if op is _c.LITERAL:
        return {chr(av)}
    if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):  # zero-width: nothing consumed
        return {""}
    if op is _c.IN:
        chars: set[str] = set()
        for o, a in av:
            if o is _c.LITERAL:
                chars.add(chr(a))
            elif o is _c.RANGE and a[1] - a[0] < 8:
                chars.update(map(chr, range(a[0], a[1] + 1)))
            else:  # NEGATE, CATEGORY (\d, \s, …), wide ranges
                return None
        return chars
    if op is _c.SUBPATTERN:
        _group, add_flags, _del_flags, body = av
        return None if add_flags & (re.IGNORECASE | re.LOCALE) else _exact(body)
    if op is _c.BRANCH:
        out: set[str] = set()
        for alt in av[1]:
            alts = _exact(alt)
            if alts is None:
                return None
            out |= alts
        return out if len(out) <= GATE_MAX else None
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
        lo, hi, body = av
        if hi > 2:
            return None
        once = _exact(body)
        if once is None:
            return None
        out, power = set(), {""}
        for count in range(hi + 1):
            if count >= lo:
                out |= power
            power = {a + b for a in power for b in once}
        return out if len(out) <= GATE_MAX else None
    return None  # ANY, GROUPREF, CATEGORY, atomic groups, …


def _required(items: Any) -> set[str] | None:
    """Strings at least one of which every match of the sequence contains (None: none found)."""
    candidates: list[set[str]] = []
    run = {""}
    for op, av in items:
        alts = _exact_item(op, av)
        if alts is not None:
            longer = {a + b for a in run for b in alts}
            if len(longer) <= GATE_MAX:
                run = longer
                continue
            candidates.append(run)
            run = alts
            continue
        candidates.append(run)
        run = {""}
        inner: set[str] | None = None
        if op is _c.SUBPATTERN and not av[1] & (re.IGNORECASE | re.LOCALE):
            inner = _required(av[3])
        elif op is _c.BRANCH:
            parts = [_required(alt) for alt in av[1]]
            if all(p is not None for p in parts):
                inner = set().union(*parts)  # type: ignore[arg-type]
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT) and av[0] >= 1:
            inner = _required(av[2])
        if inner is not None:
            candidates.append(inner)
    candidates.append(run)
    best: set[str] | None = None
    for cand in candidates:
        if not cand or "" in cand or len(cand) > GATE_MAX:
            continue
        # a string containing another of the set adds nothing: the shorter one is found anyway
        minimal = {s for s in cand if not any(o != s and o in s for o in cand)}
        if best is None or (min(map(len, minimal)), -len(minimal)) > (min(map(len, best)), -len(best)):
            best = minimal
    return best


def required_literals(rx: re.Pattern[str]) -> set[str] | None:
    """Literals of which every match of ``rx`` contains at least one, or None when there is no such
    small set (or the pattern ignores case): used to skip searching a message that has none of them."""
    if rx.flags & (re.IGNORECASE | re.LOCALE):
        return None
    try:
        parsed = _parser.parse(rx.pattern, rx.flags)
    except Exception:  # pragma: no cover - the pattern compiled; be safe with a private module
        return None
    if parsed.state.flags & (re.IGNORECASE | re.LOCALE):
        return None
    return _required(list(parsed))


def _domain_match(host: str, domains: object) -> str | None:
    """The listed domain ``host`` equals or is a sub-domain of, if any."""
    if not host:
        return None
    labels = host.split(".")
    for i in range(len(labels)):  # the last candidate is the top-level domain ("domain 1.5 *.xyz")
        candidate = ".".join(labels[i:])
        if candidate in domains:  # type: ignore[operator]
            return candidate
    return None


def default_pack_text() -> str:
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
