"""Text normalisation: the first stage of the moderation pipeline.

Advertisers dodge keyword lists with full-width letters, circled digits, zero-width joiners,
traditional characters, homophones (薇信, 威信, V信, ➕V) and spaced-out letters (``v x 1 3 8…``).
:func:`normalise` folds all of these into one canonical lower-case simplified form so that the
rules and the classifier see what a human reader sees. It never raises: any ``str`` (lone
surrogates, control characters, 100 KB pastes) and ``bytes`` come back as a :class:`Normalised`.

Order: sanitise (surrogates, length cap) → NFKC → casefold → strip format/control/combining
characters (U+200B/U+200D/U+FEFF survive NFKC) → fold digit variants (❶ ➀ ⓵) → OpenCC t2s →
extract URLs, e-mails and @mentions → join spaced-out letters, digits and CJK (and an id spelled out after a
contact app, round 6) → evasion variants.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import lru_cache

import ahocorasick_rs
import opencc

#: the analysed prefix; longer messages are cut (a 100 KB paste is judged on its first 4,000 chars)
MAX_CHARS = 4000

URL_MARK = "\ue000"  # private-use placeholders left where a URL / e-mail / mention stood
MAIL_MARK = "\ue001"
MENTION_MARK = "\ue002"
_URL_SUB = f" {URL_MARK} "

_FW_PUNCT = tuple((c, unicodedata.normalize("NFKC", c)) for c in "，！？：；（）")
_STRIP_EXTRA = (
    "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # C0/C1 controls except \t \n \r
    "\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2800\u3164\uffa0"  # invisible fillers
    "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe00-\ufe0f\ufe20-\ufe2f"  # combining marks
    "\U000e0100-\U000e01ef"  # variation selectors supplement
)


def _ranges(codepoints: Iterable[int]) -> str:
    """The inside of a regex character class for these code points, consecutive ones as ranges."""
    cps = sorted(set(codepoints))
    parts: list[str] = []
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(re.escape(chr(cps[i])) if i == j else f"{re.escape(chr(cps[i]))}-{re.escape(chr(cps[j]))}")
        i = j + 1
    return "".join(parts)


@lru_cache(maxsize=1)
def _strip_re() -> re.Pattern[str]:
    """Every format character (category Cf: U+200B, U+200D, U+FEFF, bidi controls, tags, …), found
    once from the Unicode database, plus controls, invisible fillers and combining marks."""
    cf = [c for r in ((0, 0x20000), (0xE0000, 0xE1000)) for c in range(*r) if unicodedata.category(chr(c)) == "Cf"]
    return re.compile("[" + _STRIP_EXTRA + _ranges(cf) + "]+")


_DIGITS = {}
for _base, _start in ((0x2776, 1), (0x2780, 1), (0x278A, 1), (0x24F5, 1)):
    for _i in range(10):
        _DIGITS[_base + _i] = str((_start + _i) % 10) if _i < 9 else "10"
for _i, _cp in enumerate(range(0x24EB, 0x24F5)):  # ⓫..⓴
    _DIGITS[_cp] = str(11 + _i)
_DIGITS[0x24FF] = "0"  # ⓿
_DIGITS.update({ord(c): "+" for c in "➕✚✙✛✜➕﹢"})
_DIGITS.update({ord(c): " " for c in "\t\r\u3000"})
_DIGIT_TABLE = str.maketrans(_DIGITS)
_DIGIT_GATE = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_DIGITS)) + "]")

#: Chinese numerals folded to digits only inside runs that look like a phone/QQ number
_CN_DIGITS = str.maketrans({
    "零": "0", "〇": "0", "一": "1", "幺": "1", "二": "2", "两": "2", "三": "3", "四": "4",
    "五": "5", "六": "6", "七": "7", "八": "8", "九": "9", "壹": "1", "贰": "2", "叁": "3", "肆": "4",
    "伍": "5", "陆": "6", "柒": "7", "捌": "8", "玖": "9",
})
# a phone number spelled out in English words ("five five five, one two three, four five six seven", "plus
# four four seven seven oh…"): seven or more number words in a row become digits (flag "spelled_number":
# nobody spells out a number in a chat except to get it past a filter)
_EN_NUMBER_WORDS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                    "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_EN_WORD = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)"
_EN_NUMBER_RUN = re.compile(rf"\b{_EN_WORD}(?:[\s,.-]{{1,3}}{_EN_WORD}){{6,}}\b")
# (a gate: two number words in a row. It does not start with \b, so that the regex engine scans for the words'
# first letters instead of trying every position — round 6; it matches wherever _EN_NUMBER_RUN does)
_EN_NUMBER_GATE = re.compile(rf"{_EN_WORD}[\s,.-]{{1,3}}{_EN_WORD}\b")


def _spelled_digits(m: re.Match[str]) -> str:
    return "".join(_EN_NUMBER_WORDS[w] for w in re.findall(_EN_WORD, m.group(0)))


_CN_DIGIT_RUN = re.compile(r"[0-9零〇一幺二两三四五六七八九壹贰叁肆伍陆柒捌玖]{7,}")

_URL = re.compile(
    r"(?:https?://|www\.)[^\s\u3000-\u303f\uff00-\uffef<>\"'，。！？、]+"
    r"|(?<![\w@.])(?:[a-z0-9-]{1,63}\.)+(?:com|cn|net|org|io|cc|me|ly|gd|im|co|tk|top|xyz|vip|club|app|info|"
    r"biz|site|shop|link|ink|tv|gg|in|to|so|us|hk|tw|ru|la|ws|online|live|icu|buzz|work|ltd|store|click|bond|cfd|"
    r"sbs|xin|wang|cyou|help|bet|loan|money|cash|life|world|today|space|website|tech|ai|gy|pw|mobi|asia|news|"
    r"fyi|one|fun|pro|win|ml|ga|cf|gq)(?![a-z0-9-])(?:/[^\s\u3000-\u303f\uff00-\uffef]*)?"
)
_MAIL = re.compile(r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+")
# an e-mail address spelled out to get past a filter (issue 16 round 5): "kitty22 at gmail dot com",
# "kitty22 (at) gmail (dot) com", "kitty22[at]proton[dot]me" — a well-known mail host, "at" and "dot"
# as words or bracketed; written back as an address, so the e-mail signal sees it
_SPELLED_MAIL = re.compile(
    r"(?<![a-z0-9._%+-])([a-z0-9][a-z0-9._%+-]{1,40})\s*(?:[(\[{<]\s*at\s*[)\]}>]|\sat\s)\s*"
    r"(gmail|googlemail|yahoo|hotmail|outlook|live|proton|protonmail|icloud|aol|gmx|yandex|mail|qq|163|126|zoho)"
    r"\s*(?:[(\[{<]\s*dot\s*[)\]}>]|\sdot\s|\.)\s*(com|net|org|me|cn|co|de|ru|uk)(?![a-z0-9])")
_SPELLED_MAIL_GATE = re.compile(r"\bat\b|[(\[{<]\s*at\s*[)\]}>]")
# "@" for an "a" inside a few words spammers write so: "sn@p", "c@sino", "wh@tsapp", "c@sh" — only
# these words: a mention glued to the word before it ("thanks@tom", "link@alice") stays a mention
_AT_WORDS = frozenset({"snap", "snapchat", "whatsapp", "watsapp", "casino", "cash", "telegram", "signal",
                       "wechat", "chat", "kakao", "viber", "line", "bonus", "loan", "loans", "dating"})
_AT_IN_WORD = re.compile(r"(?<![a-z0-9@._%+-])[a-z]{1,6}@[a-z@]{1,7}(?![a-z0-9@.\-])")


def _at_word(m: re.Match[str]) -> str:
    word = m.group(0).replace("@", "a")
    return word if word in _AT_WORDS else m.group(0)
_MENTION = re.compile(r"@[^\s@,，:：]{1,32}")
_HOST = re.compile(r"^(?:https?://)?([^/:?#\s]+)")

# what spammers put between the letters of a handle: blanks, punctuation, and (issue 16) emoji and
# dingbats ("v 🌸 x", "w❤x"), with their variation selector and joiner
_SEP = r"\s._\-*|/\\·~,=•\u2600-\u27bf\U0001f300-\U0001faff\ufe0f\u200d"
# single ASCII letters/digits separated by spaces or symbols: "v x", "1 3 8", "w.e.i"
_SPACED_ALNUM = re.compile(rf"(?<![a-z0-9])[a-z0-9](?:[{_SEP}]+[a-z0-9](?![a-z0-9])){{1,}}")
# digit groups separated by spaces or dashes: "138 0013 8000", "138-0013-8000"
_DIGIT_GROUPS = re.compile(r"(?<![0-9])[0-9]{2,4}(?:[ \-.·]{1,2}[0-9]{2,5}){1,4}(?![0-9])")
_JOIN = re.compile(f"{_SPACED_ALNUM.pattern}|{_DIGIT_GROUPS.pattern}")
# cheap gates in front of _JOIN: digits split by a separator, or two one-character tokens in a row
# (plain English passes neither, so its words are not scanned by the look-behind pattern)
_DIGIT_SEP = re.compile(r"[0-9][ \-.·]{1,2}[0-9]")
# (written to start with a character class, so that sre skips to the next ASCII letter or digit in C
# instead of trying every position: the look-behind checks that the letter starts a token)
_SINGLES = re.compile(rf"[a-z0-9](?<![a-z0-9]{{2}})[{_SEP}]+[a-z0-9](?![a-z0-9])")
_DOT_TLD = re.compile(r"[a-z0-9]\.[a-z]{2}")
_SEPARATORS = re.compile(r"[^a-z0-9]+")
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# symbols, spaces and emoji between two CJK characters ("加 微 信", "刷*单", "兼❤职")
_CJK_GAP = re.compile(rf"(?<=[{_CJK}])[^\w{_CJK}\n+\ue000-\ue002]{{1,3}}(?=[{_CJK}])")
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t]{2,}")

#: evasion spellings → canonical form (applied after t2s, casefolding and joining)
VARIANTS: dict[str, str] = {
    # 微信 and its homophones / abbreviations
    "薇信": "微信", "威信": "微信", "徽信": "微信", "微芯": "微信", "威芯": "微信", "薇芯": "微信",
    "维信": "微信", "卫信": "微信", "魏信": "微信", "微心": "微信", "v信": "微信", "v芯": "微信", "wei信": "微信",
    "微xin": "微信", "weixin": "微信", "wechat": "微信", "vx": "微信", "wx": "微信", "v❤": "微信", "v♥": "微信",
    "微❤": "微信", "威❤": "微信", "+v": "加微信", "+微信": "加微信", "+wx": "加微信", "+vx": "加微信",
    "加v": "加微信", "加vx": "加微信", "加wx": "加微信", "jia微信": "加微信", "加薇": "加微信",
    "卫星号": "微信号", "绿泡泡": "微信",
    # round 2 (v7 blind round): the homophone written next to 加/我 or before a colon, leetspeak
    "加卫星": "加微信", "我卫星": "我微信", "卫星:": "微信:", "加我薇": "加我微信", "我薇:": "我微信:",
    "薇:": "微信:", "加我v": "加我微信", "加个v": "加个微信", "wei x": "微信", "w x": "微信",
    "w3chat": "微信", "wech4t": "微信", "we chat": "微信", "wēixìn": "微信", "weixin号": "微信号",
    # pinyin and near-homophones (issue 16): "jia wo wei xin", "佳我威心"
    "wei xin": "微信", "wei xin hao": "微信号", "weixinhao": "微信号", "威心": "微信", "薇心": "微信",
    "维心": "微信", "危信": "微信", "v号": "微信号", "vx号": "微信号", "jia wo": "加我", "jiawo": "加我",
    "佳我": "加我", "嘉我": "加我", "jia v": "加微信", "jia vx": "加微信", "si liao": "私聊", "siliao": "私聊",
    # QQ
    "扣扣": "qq", "抠抠": "qq", "企鹅号": "qq号", "q号": "qq号", "扣群": "qq群", "q群": "qq群", "+q": "加qq",
    "加q": "加qq",
    # Telegram / WhatsApp
    "telegram": "tg", "纸飞机": "tg", "飞机号": "tg号", "电报": "tg", "whatsapp": "wa",
    "tele gram": "tg", "whats app": "wa", "what's app": "wa", "whatsap": "wa",
    "wh4tsapp": "wa", "whatsaap": "wa", "watsapp": "wa", "watsap": "wa", "t3legram": "tg", "te1egram": "tg",
    "telegr4m": "tg", "t dot me slash": "tg:", "t dot me": "tg", "t . me": "tg",
    "sn4p": "snap", "1nsta": "insta", "lnsta": "insta",
    # money words
    "兼只": "兼职", "兼織": "兼职", "刷dan": "刷单", "s单": "刷单", "菠菜": "博彩", "波菜": "博彩",
    "u币": "usdt", "泰达币": "usdt",
}
# "加薇信" / "+v信": the longest variant at 加 is "加薇" → 加微信, which left the 信 behind ("加微信信");
# spell the joined forms out so that they win
VARIANTS.update({p + k: "加微信" for k, v in list(VARIANTS.items()) if v == "微信" and k.endswith("信")
                 for p in ("加", "+")})
# round 2: "加我薇" / "加我v" are variants too, so their joined forms ("加我薇信", "加我vx", "加个v信") must be
# spelled out as well, or the shorter key wins and leaves "信" / "x" behind
VARIANTS.update({p + k: p + v for k, v in list(VARIANTS.items()) if v in ("微信", "微信号")
                 and k.startswith(("v", "薇")) for p in ("加我", "加个")})
_VARIANT_KEYS = sorted(k for k, v in VARIANTS.items() if k != v)
_VARIANT_AC = ahocorasick_rs.AhoCorasick(_VARIANT_KEYS, matchkind=ahocorasick_rs.MatchKind.LeftmostLongest)
_VARIANT_BEFORE = [k[0].isascii() and k[0].isalnum() for k in _VARIANT_KEYS]  # check the left boundary
_VARIANT_AFTER = [k[-1].isascii() and k[-1].isalnum() for k in _VARIANT_KEYS]
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def replace_variants(text: str) -> str:
    """Rewrite evasion spellings to their canonical form. ASCII variants only as whole tokens
    ("vx" yes, "vxlan" no); CJK neighbours are fine ("加vx" → 加微信)."""
    hits = _VARIANT_AC.find_matches_as_indexes(text)
    if not hits:
        return text
    parts: list[str] = []
    pos = 0
    for idx, start, end in hits:
        if (_VARIANT_BEFORE[idx] and start > 0 and text[start - 1] in _ALNUM) or (
            _VARIANT_AFTER[idx] and end < len(text) and text[end] in _ALNUM
        ):
            continue
        parts.append(text[pos:start])
        parts.append(VARIANTS[_VARIANT_KEYS[idx]])
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


@dataclass
class Normalised:
    """The normalised message plus what was lifted out of it on the way."""

    text: str
    urls: Sequence[str] = ()
    hosts: Sequence[str] = ()
    emails: Sequence[str] = ()
    mentions: int = 0
    digit_runs: Sequence[str] = ()
    #: "truncated", "binary", "surrogates", "bytes", "empty"; read-only (most messages share one empty set)
    flags: AbstractSet[str] = field(default_factory=frozenset)
    original_length: int = 0


def sanitise(raw: object) -> tuple[str, set[str]]:
    """Any input → a valid ``str`` (no lone surrogates) and flags describing what was repaired."""
    flags: set[str] = set()
    if raw is None:
        return "", {"empty"}
    if isinstance(raw, bytes | bytearray | memoryview):
        raw = bytes(raw).decode("utf-8", "replace")
        flags.add("bytes")
    if not isinstance(raw, str):
        raw = str(raw)
    if raw.isascii() or raw.isprintable():  # a lone surrogate (category Cs) is never printable
        return raw, flags
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raw = raw.encode("utf-8", "replace").decode("utf-8")
        flags.add("surrogates")
    return raw, flags


@lru_cache(maxsize=1)
def _traditional_chars() -> frozenset[str]:
    """Every CJK character OpenCC's t2s would change (computed once, ~0.1 s), so that simplified text,
    the common case, skips the converter."""
    chars = [chr(c) for r in ((0x3400, 0x4DC0), (0x4E00, 0xA000), (0xF900, 0xFB00)) for c in range(*r)]
    converted = _t2s().convert("\n".join(chars)).split("\n")
    if len(converted) != len(chars):  # pragma: no cover - defensive: fall back to always converting
        return frozenset(chars)
    return frozenset(a for a, b in zip(chars, converted, strict=True) if a != b)


def _char_class(codepoints: Iterable[int]) -> str:
    """A regex character class for a set of code points, consecutive ones as ranges."""
    return "[" + _ranges(codepoints) + "]"


@lru_cache(maxsize=1)
def _fold_gates() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(any character the digit table, the look-alike fold or t2s would change, any character t2s
    would change): one C scan tells most text that none of these steps applies
    (``frozenset.isdisjoint(text)`` builds a string object per character)."""
    trad = {ord(c) for c in _traditional_chars()}
    return re.compile(_char_class(trad | set(_DIGITS) | set(_LOOKALIKES))), re.compile(_char_class(trad))


# Cyrillic and Greek letters that look like Latin ones (after casefold), and the small capitals of
# "ᴏɴʟɪɴᴇ ᴄᴀsɪɴᴏ": spammers mix them into English words to dodge keyword lists. Folded only inside
# a run of letters that also has an ASCII letter or a small capital, so Russian or Greek words stay.
_LOOKALIKES = {
    ord(k): v for k, v in {
        "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
        "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "һ": "h", "ӏ": "l", "ԛ": "q", "ԝ": "w",
        "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "μ": "m", "ο": "o", "ρ": "p", "τ": "t", "χ": "x",
        "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ꜰ": "f", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j",
        "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u",
        "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z",
    }.items()
}
_LOOKALIKE_GATE = re.compile(_char_class(set(_LOOKALIKES)))
_LOOKALIKE_RUN = re.compile(f"[a-z{_char_class(set(_LOOKALIKES))[1:-1]}]+")
_SMALL_CAPS = re.compile("[ᴀ-ᴢʙɢʜɪʟɴʀʏꜰꜱ]")


def _unmask_run(m: re.Match[str]) -> str:
    run = m.group(0)
    if run.isascii() or not (_ASCII_LETTER.search(run) or _SMALL_CAPS.search(run)):
        return run
    return run.translate(_LOOKALIKES)


_ASCII_LETTER = re.compile("[a-z]")


def fold(text: str) -> str:
    """The character-level folding alone (NFKC, casefold, strip, digit variants, t2s). Used for rule
    terms too, so a term written as 薇信 or in traditional characters matches the same way."""
    if not unicodedata.is_normalized("NFKC", text):
        # the full-width punctuation of ordinary Chinese text is folded with cheap replaces, so that
        # most messages then pass the quick NFKC check and skip the (slower) full normalisation (text
        # that is already NFKC has no full-width punctuation: skip both)
        for fw, hw in _FW_PUNCT:
            if fw in text:
                text = text.replace(fw, hw)
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)
    text = text.casefold()
    if not text.isprintable():
        text = _strip_re().sub("", text)
    if not text.isascii():
        either, traditional = _fold_gates()
        if either.search(text) is not None:
            if _DIGIT_GATE.search(text):
                text = text.translate(_DIGIT_TABLE)
            if _LOOKALIKE_GATE.search(text):
                text = _LOOKALIKE_RUN.sub(_unmask_run, text)
            if traditional.search(text) is not None:
                text = _t2s().convert(text)
    return text


def _join_spaced(m: re.Match[str]) -> str:
    joined = _SEPARATORS.sub("", m.group(0))
    if joined[-1].isdigit() and (app := _APP_DIGITS.match(joined)) is not None:
        # "w h a t s a p p 9 1 2 3 . 4 5 6 7": the app and the number spelled out in one run stay two
        # words ("whatsapp 91234567"), so the variant table and the handle detector see the app
        return f"{app.group(1)} {app.group(2)}"
    return joined


# round 6 of issue 16: a contact app written before an id spelled out to get past a filter
_APP = r"(?:tg|telegram|wa|whatsapp|ig|insta|instagram|snap|snapchat|line|kik|discord|disc|signal|viber|wechat|微信)"
_APP_DIGITS = re.compile(r"(whatsapp|telegram|wechat|viber|signal|line|snap|kik|wa|tg)([0-9]{6,})$")
# ... letter by letter ("my telegram is g o l d _ a l e x", "line: v i p . b k k", "tg @ m a r k _ f x"): four or
# more single letters or digits right after the app; the join glues them, this notices it (flag spelled_handle)
_SPELLED_AFTER_APP = re.compile(
    rf"(?<![a-z0-9]){_APP}(?:\s?(?:[:：@]|is\b|me\b|on\b)){{0,2}}\s?[a-z0-9](?:[{_SEP}]+[a-z0-9](?![a-z0-9])){{3,}}")
# ... or word by word with blanks around its dots or underscores after a colon ("telegram: aviator . signals .
# pro", "insta: catherine_ trades_ fx", "t.g : mentor _ kelvin"): written back as one id (flag spelled_handle).
# Not after "is" ("the line is long . see you"); blanked dots only between three or more parts ("line: ok . thanks"
# is chat); a full stop that ends a sentence has no blank before it
_SPACED_ID = re.compile(
    rf"(?<![a-z0-9]){_APP}\s?[:：@]\s?([a-z0-9]+(?:(?:\s+_+\s*|_+\s+)[a-z0-9]+)+|[a-z0-9]+(?:\s+\.+\s+[a-z0-9]+){{2,}})")
_BLANKS = re.compile(r"\s+")


def _join_id(m: re.Match[str]) -> str:
    cut = m.start(1) - m.start(0)
    return m.group(0)[:cut] + _BLANKS.sub("", m.group(1))


def normalise(raw: object) -> Normalised:
    """Normalise one message. Never raises; see the module docstring for the steps."""
    # (allocation-light: on the common path no set, list or match object is created per message)
    flags: set[str] | None = None
    if type(raw) is str and (raw.isascii() or raw.isprintable()):  # the common case of sanitise()
        text: str = raw
    else:
        text, flags = sanitise(raw)
    original_length = len(text)
    if original_length > MAX_CHARS:
        text = text[:MAX_CHARS]
        flags = flags or set()
        flags.add("truncated")
    if text and not text.isprintable():
        head = text[:512]
        if len(_CONTROLS.findall(head)) > 8 or head.count("\ufffd") > 8:
            flags = flags or set()
            flags.add("binary")
    text = fold(text)
    urls: Sequence[str] = ()
    hosts: Sequence[str] = ()
    emails: Sequence[str] = ()
    mentions = 0
    digit_runs: Sequence[str] = ()

    # an e-mail spelled out in words becomes an address (and is lifted with the others below)
    if (" dot " in text or "dot)" in text or "dot]" in text) and _SPELLED_MAIL_GATE.search(text):
        mailed = _SPELLED_MAIL.sub(r"\1@\2.\3", text)
        if mailed != text:
            text = mailed
            flags = flags or set()
            flags.add("spelled_email")
    # lift out e-mails, URLs and mentions (before joining, which would glue them to their neighbours)
    if "@" in text:
        if _AT_IN_WORD.search(text) is not None:
            text = _AT_IN_WORD.sub(_at_word, text)
        found = _MAIL.findall(text)
        if found:
            emails = found
            text = _MAIL.sub(f" {MAIL_MARK} ", text)
        found = _MENTION.findall(text)
        if found:
            mentions = len(found)
            text = _MENTION.sub(f" {MENTION_MARK} ", text)
    if "://" in text or "www." in text or _DOT_TLD.search(text):
        lifted: list[str] = []

        def _lift(m: re.Match[str]) -> str:
            lifted.append(m.group(0))
            return _URL_SUB

        replaced = _URL.sub(_lift, text)
        if lifted:
            text = replaced
            urls = lifted
            found_hosts = []
            for u in lifted:
                hm = _HOST.match(u)
                if hm:
                    host = hm.group(1).rstrip(".")
                    found_hosts.append(host[4:] if host.startswith("www.") else host)
            hosts = found_hosts

    if _EN_NUMBER_GATE.search(text) is not None:
        spelled = _EN_NUMBER_RUN.sub(_spelled_digits, text)
        if spelled != text:
            text = spelled
            flags = flags or set()
            flags.add("spelled_number")
    # join what was spaced out
    if _DIGIT_SEP.search(text) or _SINGLES.search(text):
        if _SPELLED_AFTER_APP.search(text) is not None:
            flags = flags or set()
            flags.add("spelled_handle")
        text = _JOIN.sub(_join_spaced, text)
    if ("_ " in text or " _" in text or " ." in text) and _SPACED_ID.search(text) is not None:
        text = _SPACED_ID.sub(_join_id, text)
        flags = flags or set()
        flags.add("spelled_handle")
    if not text.isascii():
        text = _CJK_GAP.sub("", text)
    text = replace_variants(text)
    if "  " in text or "\t" in text:
        text = _SPACES.sub(" ", text)
    text = text.strip()
    if _CN_DIGIT_RUN.search(text) is not None:
        digit_runs = [r.translate(_CN_DIGITS) for r in _CN_DIGIT_RUN.findall(text)]
    if not text:
        flags = flags or set()
        flags.add("empty")
    return Normalised(text, urls, hosts, emails, mentions, digit_runs, flags or _NO_FLAGS, original_length)


_NO_FLAGS: frozenset[str] = frozenset()
