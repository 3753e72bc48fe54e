"""The per-message pipeline: normalise → behaviour → rules → classifier → (optional) external veto.

Pure Python, no database: the engine (services), the CLI and the benchmarks all call
:meth:`Moderator.classify`. The score is a logistic combination of log-odds evidence::

    z = BIAS + Σ rule weights (capped per category) + Σ behaviour signal weights + CLF_WEIGHT × classifier log-odds
    score = 1 / (1 + e^-z)

``score ≥ threshold.ad`` → ``"ad"``, ``≥ threshold.review`` → ``"review"``, else ``"ok"``. Every
piece of evidence is listed in ``reasons`` with its rule id (``contact.term.加微信``), the matched
span in the normalised text and its weight, so a moderator sees why.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import repeat
from typing import Any

from .classifier import NaiveBayes, default_model
from .normalize import Normalised, normalise
from .rules import CompiledPack, Hit, cached_pack

log = logging.getLogger(__name__)

BIAS = -2.0
CONTENT_CACHE = 4096  # memoised texts per moderator (0 turns the cache off; the benchmark does)
CACHE_MAX_LEN = 200
CLF_WEIGHT = 2.0  # × the calibrated (Platt) log-odds; chosen on the grouped CV (issue 16)
CATEGORY_CAP = 10.0
CLF_NEG_CAP = -4.0  # the most the classifier can take off the log-odds
# ... and when the same text with something to spread (a link, a phone number, a rule hit) was posted in
# other groups: wording that reads like chat does not explain away a wave (round 4 — the regression reads
# "看看这个好东西 <link> 限时" as chat, −2 log-odds, and would have cleared three new members posting it)
CLF_NEG_CAP_WAVE = -2.0
STRONG_CLASSIFIER = 3.0  # log-odds (≈ 0.95) that count as an independent signal for auto-ban
STRONG_RULES = 3.0
NEW_MEMBER_MESSAGES = 5
NEW_MEMBER_DAYS = 3.0
TRUSTED_MESSAGES = 50
TRUSTED_DAYS = 30.0
FLOOD_PER_MINUTE = 8
NEW_MEMBER_MAX_LINKS = 0
NEW_MEMBER_MAX_MENTIONS = 2
MENTION_STORM = 5
CAMPAIGN_MIN_LEN = 6  # a campaign text shorter than this ("收到") is not a whitelist entry
_QQ_NUMBER = re.compile(r"qq(?:号|群)?[:：]?\s?[1-9][0-9]{4,10}(?![0-9])")
_MOBILE = ("13", "14", "15", "16", "17", "18", "19")
# a contact handle (issue 16): a contact app or 加/号 followed by an id that mixes letters and digits
# ("微信:xiaoyu2024", "加 vxyz888", "snap: mary992") or a run of digits written in Chinese numerals
# ("qq:三二五六七八九一零"); plain numbers are the phone / QQ signals' business
_HANDLE = re.compile(
    r"(?:(?:微信|qq|tg|wa|snap(?:chat)?|ig|kik|line|加我?|号|discord|disc|dc|tele|telegram|insta|whatsapp"
    r"|(?<![a-z0-9])[vq](?=\s?[:：]))"
    r"(?:[\s:：=()（）—–-]|\bat\b|\bis\b|\bme\b|\bon\b|@ ?){0,4}@?"
    r"(?:(?=[a-z0-9_.-]{5,20}(?![a-z0-9_]))(?=[a-z_.-]*[0-9])(?=[0-9_.-]*[a-z])[a-z0-9_.-]+"
    r"|[零〇一二三四五六七八九幺两]{5,}|[a-z][a-z0-9_.]{2,30}#[0-9]{4}\b)"
    # wa.me links spelled out ("wa dot me slash 4477…")
    r"|\bwa ?(?:dot|\.) ?me ?(?:slash|/) ?[0-9]{6,}"
    # an id split in words after an app and a colon ("v：xiao li 668", "微信: abc 999"): letters, then digits
    r"|(?:微信|qq|wx|tg|snap|ig|line|discord|telegram|whatsapp|wa|(?<![a-z0-9])v)\s?[:：]\s?"
    r"[a-z]{2,12}(?: [a-z]{1,12}){0,2} ?[0-9]{2,8}(?![0-9]))"
)
# round 6: after a messaging app (English names; 微信/qq numbers are the phone and QQ signals' business), a phone
# number in any country's format ("wa 0812 345 678", "viber: +44 7700 900123"), an @mention ("telegram @jlee_fx",
# lifted as a mention), or an id of letters joined by dots or underscores after a colon or "is" ("tg: kyc_store",
# "ig: lina.wins.daily"); "line" and "signal" are ordinary words too, so for them only after a colon. Searched
# only when one of the apps' names is followed by what every branch needs next — a blank, a colon, @, +, a
# digit or a lifted mention (_APP_GATE: an alternation of literals, which the regex engine scans fast; one
# labelled message in twenty-five passes it)
_APP_HANDLE = re.compile(
    r"(?:(?<![a-z0-9])(?:wa|viber|tg|imo)(?:\s?[:：]|\s(?:me|on|at|us|no|number))*|(?:line|signal)\s?[:：])"
    r"\s?\+?(?:[0-9][ -]?){7,15}(?![0-9])"
    r"|(?:(?<![a-z0-9])(?:tg|wa|ig|insta|instagram|snap|snapchat|kik|discord|tiktok|twitter)"
    r"(?:\s?[:：]|\s(?:me|on|at|is))*|(?:line|signal)\s?[:：])\s?\ue002"
    r"|(?:(?<![a-z0-9])(?:tg|ig|insta|instagram|snap|snapchat|kik|discord)(?:\s?(?:[:：@]|is\b)){1,2}"
    r"|(?<![a-z0-9])(?:wa|disc|line|signal|viber)\s?[:：@])"
    r"\s?(?=[a-z0-9._]{5,})[a-z][a-z0-9]*(?:[._]+[a-z0-9]+)+"
)
_APP_GATE = re.compile(
    "(?:wa|tg|ig|insta|instagram|snap|snapchat|kik|discord|disc|line|signal|viber|imo|tiktok|twitter)[\\s:：@+0-9\ue002]")


# every branch of _HANDLE needs an ASCII digit or five Chinese numerals in a row; a character class is scanned fast,
# _HANDLE's alternation (with a look-behind in it) is not — so most messages skip it (round 6)
_DIGIT = re.compile("[0-9]")
_CN_NUMERALS = re.compile("[零〇一二三四五六七八九幺两]{5}")


def _handle(text: str) -> re.Match[str] | None:
    """The first contact handle in the normalised text (``_HANDLE``, then ``_APP_HANDLE``), or None."""
    m = (_HANDLE.search(text) if _DIGIT.search(text) is not None or _CN_NUMERALS.search(text) is not None
         else None)
    if m is None and _APP_GATE.search(text) is not None:
        m = _APP_HANDLE.search(text)
    return m


@dataclass(slots=True)
class MessageContext:
    """What the pipeline knows about the sender and the recent past (all optional)."""

    member_joined_days: float | None = None
    message_index: int | None = None  # messages the member sent before this one in the community
    group: str | None = None
    messages_last_minute: int = 0
    same_text_other_groups: int = 0  # other groups where the same text was posted recently
    mentions: int = 0  # mentions the platform reported (Matrix pills have no "@" in the body)
    exempt: bool = False
    #: the member's open membership records no inviter and a public way in (QR code, live stream,
    #: platform event) rather than an invite link, a paid entry or an operator's import (issue 16)
    joined_without_invite: bool = False


@dataclass(slots=True)
class Verdict:
    verdict: str  # "ad" | "review" | "ok"
    score: float
    category: str | None
    reasons: list[dict[str, Any]] = field(default_factory=list)
    #: independent signal families with strong evidence: content (rules or classifier — they read the
    #: same text, so they count once) and behaviour (flood, duplicate across groups, mention storm)
    signals: int = 0
    normalised: str = ""
    flags: list[str] = field(default_factory=list)
    vetoed: bool = False

    @property
    def text_hash(self) -> str:
        return text_hash(self.normalised)

    def as_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "score": round(self.score, 4), "category": self.category,
                "reasons": self.reasons}


_NO_CONTEXT = MessageContext()

#: optional external checker: (original text, verdict) → True to confirm, False to veto. Off by default.
ExternalChecker = Callable[[str, Verdict], bool]


def text_hash(norm_text: str) -> str:
    """Stable hash of a normalised message for duplicate detection across groups."""
    return hashlib.blake2b(norm_text.encode("utf-8"), digest_size=10).hexdigest()


def trust_tier(ctx: MessageContext) -> str:
    days = ctx.member_joined_days
    idx = ctx.message_index
    if (idx is not None and idx < NEW_MEMBER_MESSAGES) or (days is not None and days < NEW_MEMBER_DAYS):
        return "new"
    if idx is not None and idx >= TRUSTED_MESSAGES and (days is None or days >= TRUSTED_DAYS):
        return "trusted"
    return "regular"


class Moderator:
    """One compiled rule pack + one classifier. Immutable, cheap to share."""

    def __init__(self, pack: CompiledPack | None = None, model: NaiveBayes | None = None, *,
                 use_classifier: bool = True, use_rules: bool = True,
                 external: ExternalChecker | None = None, cache_size: int = CONTENT_CACHE,
                 campaign_texts: Iterable[str] = ()) -> None:
        self.pack = pack if pack is not None else cached_pack("")
        self.model = model if model is not None else (default_model() if use_classifier else None)
        if not use_classifier:
            self.model = None
        self.use_rules = use_rules
        self.external = external
        self.ad_threshold = self.pack.thresholds["ad"]
        self.review_threshold = self.pack.thresholds["review"]
        self._combos = self.pack.combos
        # the operator's own campaign texts (the tenant's content-SOP items, issue 16): a member relaying
        # "邀请好友进群送礼品" word for word is not advertising; a new member posting it is judged as usual
        self._campaign = frozenset(t for t in (normalise(c).text for c in campaign_texts) if len(t) >= CAMPAIGN_MIN_LEN)
        # the content part (normalisation, rule hits, classifier) depends on the text alone: group
        # chat repeats itself ("收到", "+1", spam waves), so short texts are memoised per moderator
        self._content: Callable[[str], tuple[Normalised, tuple[Hit, ...], float | None]] = (
            lru_cache(maxsize=cache_size)(self._content_uncached) if cache_size else self._content_uncached
        )

    def _content_uncached(self, text: object) -> tuple[Normalised, tuple[Hit, ...], float | None]:
        norm = normalise(text)
        hits = self.pack.hits(norm) if self.use_rules else ()
        clf = self.model.logit(norm.text) if self.model is not None and norm.text else None
        return norm, hits, clf

    def _behaviour(self, norm: Normalised, ctx: MessageContext, reasons: list[dict[str, Any]],
                   hits: tuple[Hit, ...] = (), clf: float | None = None) -> tuple[float, bool]:
        """Behaviour signals (trust tier, links/mentions for new members, flood, duplicates across
        groups, contact details). Returns (log-odds, strong) where strong marks an independent signal.
        Signals are summed and listed in a fixed order; one with weight 0 in the pack is not listed.

        The same text in other groups counts only when the text carries something to spread (see
        :func:`_has_substance`): members post 签到, 已下单, 谢谢老师 in every group they are in."""
        sig = self.pack.signals
        z = 0.0
        strong = False
        idx = ctx.message_index
        days = ctx.member_joined_days
        hosts = norm.hosts
        links = [h for h in hosts if not self.pack.allowed_host(h)] if hosts else None
        mentions = norm.mentions if norm.mentions >= ctx.mentions else ctx.mentions
        if (idx is not None and idx < NEW_MEMBER_MESSAGES) or (days is not None and days < NEW_MEMBER_DAYS):
            if idx == 0 and (w := sig["first_message"]):
                z += w
                reasons.append({"rule": "signal.first_message", "category": None, "weight": w, "detail": None})
            # weak and only for new members: most people who scan a poster's QR code are customers; it
            # adds to content evidence, it never makes an ad of a message with none (weight < ad cut)
            if ctx.joined_without_invite and (w := sig["no_invite"]):
                z += w
                reasons.append({"rule": "signal.no_invite", "category": None, "weight": w, "detail": None})
            if links and len(links) > NEW_MEMBER_MAX_LINKS and (w := sig["new_member_link"]):
                z += w
                reasons.append({"rule": "signal.new_member_link", "category": None, "weight": w,
                                "detail": links[:3]})
            if mentions > NEW_MEMBER_MAX_MENTIONS and (w := sig["new_member_mentions"]):
                z += w
                reasons.append({"rule": "signal.new_member_mentions", "category": None, "weight": w,
                                "detail": mentions})
        elif (idx is not None and idx >= TRUSTED_MESSAGES and (days is None or days >= TRUSTED_DAYS)
              and (w := sig["trusted_member"])):
            z += w
            reasons.append({"rule": "signal.trusted_member", "category": None, "weight": w, "detail": None})
        if links and (w := sig["link"]):
            z += w
            reasons.append({"rule": "signal.link", "category": None, "weight": w, "detail": links[:3]})
        if mentions >= MENTION_STORM:
            strong = True
            if w := sig["mention_storm"]:
                z += w
                reasons.append({"rule": "signal.mention_storm", "category": None, "weight": w, "detail": mentions})
        if ctx.messages_last_minute >= FLOOD_PER_MINUTE:
            strong = True
            if w := sig["flood"]:
                z += w
                reasons.append({"rule": "signal.flood", "category": None, "weight": w,
                                "detail": ctx.messages_last_minute})
        if ctx.same_text_other_groups >= 1 and _has_substance(norm, links, hits, clf):
            strong = True
            if w := sig["duplicate_across_groups"]:
                z += w
                reasons.append({"rule": "signal.duplicate_across_groups", "category": None, "weight": w,
                                "detail": ctx.same_text_other_groups})
        if norm.emails and (w := sig["email"]):
            z += w
            reasons.append({"rule": "signal.email", "category": None, "weight": w, "detail": len(norm.emails)})
        for run in norm.digit_runs:
            if len(run) == 11 and run[:2] in _MOBILE:
                if w := sig["phone"]:
                    z += w
                    reasons.append({"rule": "signal.phone", "category": None, "weight": w,
                                    "detail": run[:3] + "****" + run[-4:]})
                break
        if (w := sig["contact_handle"]) and ("spelled_number" in norm.flags or "spelled_handle" in norm.flags):
            # a phone number spelled out in words to get past a filter (round 3), an id spelled out letter by
            # letter or word by word after a contact app (round 6)
            z += w
            reasons.append({"rule": "signal.contact_handle", "category": None, "weight": w, "detail": "spelled"})
        elif (w := sig["contact_handle"]) and (m := _handle(norm.text)):
            z += w
            reasons.append({"rule": "signal.contact_handle", "category": None, "weight": w,
                            "detail": m.group(0)[:3] + "…"})
        if "qq" in norm.text and _QQ_NUMBER.search(norm.text) and (w := sig["qq_number"]):
            z += w
            reasons.append({"rule": "signal.qq_number", "category": None, "weight": w, "detail": None})
        return z, strong

    def classify(self, text: object, ctx: MessageContext | None = None) -> Verdict:
        """Judge one message. Never raises for any input (see ``normalise``)."""
        if isinstance(text, str) and len(text) <= CACHE_MAX_LEN:
            norm, hits, clf = self._content(text)
        else:
            norm, hits, clf = self._content_uncached(text)
        reasons: list[dict[str, Any]] = []
        campaign = bool(self._campaign) and norm.text in self._campaign and trust_tier(ctx or _NO_CONTEXT) != "new"
        if campaign:
            # the operator's own words relayed by a member who is not new: its wording is no evidence (the
            # rules and the classifier would read an ad in "邀请好友进群送礼品"); behaviour still counts
            hits, clf = (), None
        z, strong_behaviour = self._behaviour(norm, ctx or _NO_CONTEXT, reasons, hits, clf)
        z += BIAS
        if campaign:
            w = self.pack.signals["campaign_text"]
            z += w
            reasons.append({"rule": "signal.campaign_text", "category": None, "weight": w, "detail": None})
        strong_content = False
        per_cat: dict[str, float] | None = None
        if hits:
            per_cat = {}
            for rule_id, cat, weight, span, matched in hits:
                per_cat[cat] = per_cat.get(cat, 0.0) + weight
                reasons.append({"rule": rule_id, "category": cat, "weight": weight,
                                "span": list(span) if span else None, "matched": matched})
            rule_z = sum(map(min, per_cat.values(), repeat(CATEGORY_CAP)))
            if self._combos and len(per_cat) > 1 and min(per_cat.values()) >= 0.0:
                # category-level combinations: contact intent next to an offer of money or a benefit. Not
                # when there is counter-evidence: a member warning about an ad quotes both halves of it
                for combo_id, weight, cat, partners in self._combos:
                    if per_cat.get(cat, 0.0) > 0.0:
                        for other in partners:
                            if per_cat.get(other, 0.0) > 0.0:
                                rule_z += weight
                                reasons.append({"rule": combo_id, "category": cat, "weight": weight,
                                                "span": None, "matched": f"{cat}+{other}"})
                                break
            z += rule_z
            strong_content = rule_z >= STRONG_RULES
        if clf is not None:
            # the classifier can lower a score, but not veto an explicit rule (a community's own term of
            # weight 8 stays an ad however ordinary the rest of the wording looks to the model)
            wave = strong_behaviour and any(r["rule"] == "signal.duplicate_across_groups" for r in reasons)
            clf_z = max(CLF_WEIGHT * clf, CLF_NEG_CAP_WAVE if wave else CLF_NEG_CAP)
            z += clf_z
            if clf >= STRONG_CLASSIFIER:
                strong_content = True
            reasons.append({"rule": "classifier", "category": None, "weight": int(clf_z * 1000) / 1000})
        score = 1.0 / (1.0 + math.exp(-(30.0 if z > 30.0 else -30.0 if z < -30.0 else z)))
        category = None
        if score >= self.review_threshold:
            verdict = "ad" if score >= self.ad_threshold else "review"
            category = _category(per_cat)
        else:
            verdict = "ok"
            if "binary" in norm.flags and norm.text:
                verdict = "review"  # binary-looking content is never silently passed
                category = "binary"
        out = Verdict(verdict, score, category, reasons, strong_content + strong_behaviour, norm.text,
                      sorted(norm.flags) if norm.flags else [])
        if self.external is not None and verdict == "ad":
            try:
                if not self.external(norm.text, out):
                    out.verdict = "review"
                    out.vetoed = True
                    out.reasons.append({"rule": "external.veto", "category": None, "weight": 0.0})
            except Exception:  # the hook is advisory: a failing checker never blocks moderation
                log.warning("external moderation checker failed", exc_info=True)
        return out


DUPLICATE_CLF_MIN = 2.0  # classifier log-odds (≈ 0.88) that make a bland text worth spreading


def _has_substance(norm: Normalised, links: list[str] | None, hits: tuple[Hit, ...], clf: float | None) -> bool:
    """Whether a message duplicated across groups looks like a spam wave rather than a member's
    check-in: a link the pack does not allow, an e-mail, a phone-like digit run, any rule adding
    weight, or a classifier fairly sure of an ad."""
    if links or norm.emails or any(len(run) >= 7 for run in norm.digit_runs):
        return True
    if any(h[2] > 0 for h in hits):
        return True
    return clf is not None and clf >= DUPLICATE_CLF_MIN


def _category(per_cat: dict[str, float] | None) -> str:
    """The category a flagged message is filed under: the rule category with the most positive weight.
    Counter-evidence (negative weight: a member warning about scams) is never the reason a message is
    flagged, so when no category adds weight — only counter-terms hit and the classifier or behaviour
    carried the score — it is ``suspected_ad``, as when only the classifier spoke (it used to be
    ``counter``)."""
    best, best_w = "suspected_ad", 0.0
    if per_cat:
        for cat, w in per_cat.items():
            if w > best_w:
                best, best_w = cat, w
    return best


_EXTERNAL: list[ExternalChecker] = []


def set_external_checker(checker: ExternalChecker | None) -> None:
    """Install (or remove with ``None``) the optional external checker, e.g. an LLM call. It is used
    only for communities whose policy turns ``external_check`` on, only for messages judged "ad",
    and only to veto (the message then goes to review instead of being actioned)."""
    _EXTERNAL[:] = [checker] if checker is not None else []


def external_checker() -> ExternalChecker | None:
    return _EXTERNAL[0] if _EXTERNAL else None
