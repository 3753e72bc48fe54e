"""The English translation keeps up with the code.

shequn's msgids are Chinese (the source language). Every string the code marks for translation
(``gettext``/``_()``/``gettext_lazy``/``gettext_noop``/``pgettext``/``ngettext`` in Python,
``{% translate %}``/``{% blocktranslate %}`` in templates) must have English in a catalog Django
loads, the committed ``.mo`` files must be compiled from the committed ``.po`` files, and every
translation must keep its msgid's placeholders. Then the console and the API, asked for English,
answer in English.

When the first test fails after new strings were added: run ``scripts/i18n.sh``, translate the
entries it lists, run it again, commit the ``.po`` and ``.mo`` files."""

from __future__ import annotations

import ast
import gettext as gnu_gettext
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib import admin
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import trans_real

from shequn.api.testing import ApiClient
from shequn.commerce import services
from shequn.commerce.models import Order, OrderStatus
from shequn.console.tests import factories as f
from shequn.core import admin_base
from shequn.core.management.commands.makemessages import EXTRA_KEYWORDS
from shequn.core.models import StaffRole, Tenant
from shequn.core.permissions import Principal
from shequn.members.models import Member

PACKAGE = Path(__file__).resolve().parents[2]  # src/shequn
#: the catalog that holds English for shequn's Chinese msgids (makemessages puts them all there)
EN_CATALOGS = [PACKAGE / "locale/en/LC_MESSAGES/django.po"]
#: every catalog shequn ships (the console's zh_Hans one translates unfold's English strings)
ALL_CATALOGS = [*EN_CATALOGS, PACKAGE / "console/locale/zh_Hans/LC_MESSAGES/django.po"]
FIX = "Run scripts/i18n.sh, translate what it lists, run it again and commit the .po and .mo files."

CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]+")
PRINTF = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(?:\d+|\*)?(?:\.\d+)?[diouxXeEfFgGcrsa%]")
BRACES = re.compile(r"\{[A-Za-z_0-9]*\}")


# --- a small PO reader (stdlib only) ---------------------------------------------------------------

@dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str | None = None
    msgctxt: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)  # 0 for a singular entry's msgstr
    flags: set[str] = field(default_factory=set)
    line: int = 0

    @property
    def key(self) -> str:
        return f"{self.msgctxt}\x04{self.msgid}" if self.msgctxt is not None else self.msgid

    def label(self) -> str:
        return f"line {self.line}: {self.msgid!r}"


def read_po(path: Path) -> list[Entry]:
    """Entries of a PO file, without the header and obsolete (``#~``) entries."""
    entries: list[Entry] = []
    cur: Entry | None = None
    target: tuple[str, int] | None = None

    def flush() -> None:
        nonlocal cur, target
        if cur is not None and cur.msgid:
            entries.append(cur)
        cur, target = None, None

    def append(where: tuple[str, int], text: str) -> None:
        assert cur is not None
        name, index = where
        if name == "msgstr":
            cur.msgstr[index] = cur.msgstr.get(index, "") + text
        else:
            setattr(cur, name, (getattr(cur, name) or "") + text)

    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#~"):
            if not line:
                flush()
            continue
        if line.startswith("#"):
            if cur is not None and target is not None and target[0] == "msgstr":
                flush()  # a comment after a complete entry starts the next one
            cur = cur or Entry(line=number)
            if line.startswith("#,"):
                cur.flags.update(flag.strip() for flag in line[2:].split(","))
            continue
        if line.startswith('"'):
            assert target is not None, f"{path}:{number}: continuation without a keyword"
            append(target, ast.literal_eval(line))
            continue
        keyword, _sep, rest = line.partition(" ")
        if keyword in ("msgctxt", "msgid") and target is not None and target[0] == "msgstr":
            flush()
        cur = cur or Entry(line=number)
        if keyword == "msgid":
            cur.line = number
        match = re.fullmatch(r"msgstr\[(\d+)\]", keyword)
        if match:
            target = ("msgstr", int(match.group(1)))
        elif keyword == "msgstr":
            target = ("msgstr", 0)
        elif keyword in ("msgid", "msgid_plural", "msgctxt"):
            target = (keyword, 0)
            setattr(cur, keyword, "")
        else:
            raise AssertionError(f"{path}:{number}: unexpected line {raw!r}")
        append(target, ast.literal_eval(rest))
    flush()
    return entries


def placeholders(text: str) -> list[str]:
    return sorted(PRINTF.findall(text) + BRACES.findall(text))


# --- the catalog covers the code ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def source_msgids(tmp_path_factory: pytest.TempPathFactory) -> list[Entry]:
    """What ``makemessages`` extracts from the code today (tests and migrations excluded), run on a
    copy of the package so the committed catalogs are not touched."""
    if not all(shutil.which(tool) for tool in ("xgettext", "msguniq", "msgmerge", "msgattrib")):
        pytest.skip("GNU gettext (xgettext, msguniq, msgmerge, msgattrib) is not installed: "
                    "apt-get install gettext")
    copy = tmp_path_factory.mktemp("i18n") / "shequn"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns(
        "tests", "migrations", "locale", "static", "__pycache__", "*.pyc"))
    (copy / "locale").mkdir()
    with pytest.MonkeyPatch.context() as mp, override_settings(LOCALE_PATHS=[]):
        mp.chdir(copy)
        call_command("makemessages", locale=["en"], ignore_patterns=["*/tests/*", "*/migrations/*"], verbosity=0)
    entries = read_po(copy / "locale/en/LC_MESSAGES/django.po")
    assert len(entries) > 1000, "extraction found suspiciously few strings"
    return entries


def test_every_string_in_the_code_has_english(source_msgids: list[Entry]) -> None:
    catalog = trans_real.translation("en")._catalog  # what Django serves for "en", all catalogs merged
    missing = []
    for e in source_msgids:
        keys = [e.key] if e.msgid_plural is None else [(e.key, 0), (e.key, 1)]
        found = [catalog.get(k) for k in keys]
        if not all(found) or (CJK.search(e.msgid) and any(t == e.msgid for t in found)):
            missing.append(e.msgid)
    assert not missing, (f"{len(missing)} string(s) in the code have no English translation. {FIX}\n  "
                         + "\n  ".join(missing))


#: names xgettext extracts for Python as makemessages runs it (its defaults plus Django's)
XGETTEXT_KEYWORDS = {"_", "gettext", "ngettext", "pgettext", "npgettext", "gettext_noop", "gettext_lazy",
                     "ngettext_lazy", "pgettext_lazy", "npgettext_lazy"}


def test_translation_functions_are_imported_under_names_makemessages_extracts() -> None:
    """``from django.utils.translation import gettext_lazy as _x`` hides every ``_x("…")`` string
    from xgettext (and from the test above): use ``_`` or add the alias to EXTRA_KEYWORDS."""
    functions = XGETTEXT_KEYWORDS - {"_"}
    hidden = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if {"tests", "migrations"} & set(path.relative_to(PACKAGE).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "django.utils.translation":
                for alias in node.names:
                    name = alias.asname or alias.name
                    ok = (name == alias.name or EXTRA_KEYWORDS.get(name) == alias.name
                          or (name == "_" and alias.name in ("gettext", "gettext_lazy", "gettext_noop")))
                    if alias.name in functions and not ok:
                        hidden.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {alias.name} as {name}")
    assert not hidden, "translation functions imported under a name makemessages does not extract:\n  " + \
        "\n  ".join(hidden)


# --- the committed catalogs --------------------------------------------------------------------------

@pytest.mark.parametrize("po", EN_CATALOGS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_english_catalog_has_no_fuzzy_or_empty_entries(po: Path) -> None:
    entries = read_po(po)
    fuzzy = [e.label() for e in entries if "fuzzy" in e.flags]
    empty = [e.label() for e in entries if not e.msgstr or not all(e.msgstr.values())]
    assert not fuzzy, f"fuzzy entries are not compiled (check the guess, delete '#, fuzzy'): {fuzzy}"
    assert not empty, f"entries without English: {empty}. {FIX}"


@pytest.mark.parametrize("po", ALL_CATALOGS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_compiled_catalog_matches_its_po(po: Path) -> None:
    with po.with_suffix(".mo").open("rb") as fh:
        compiled = dict(gnu_gettext.GNUTranslations(fh)._catalog)  # type: ignore[attr-defined]
    compiled.pop("", None)  # the header
    expected: dict[object, str] = {}
    for e in read_po(po):
        if "fuzzy" in e.flags or not all(e.msgstr.values()):
            continue  # msgfmt leaves these out
        if e.msgid_plural is None:
            expected[e.key] = e.msgstr[0]
        else:
            expected.update({(e.key, i): s for i, s in e.msgstr.items()})
    assert compiled == expected, f"{po.with_suffix('.mo')} is stale. {FIX}"


@pytest.mark.parametrize("po", ALL_CATALOGS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_translations_keep_the_placeholders(po: Path) -> None:
    wrong = []
    for e in read_po(po):
        for index, text in e.msgstr.items():
            if not text:
                continue
            source = e.msgid if e.msgid_plural is None or index == 0 else e.msgid_plural
            if e.msgid_plural is not None:
                ok = set(placeholders(text)) <= set(placeholders(source))  # "One item" may drop %(n)s
            else:
                ok = placeholders(text) == placeholders(source)
            if not ok:
                wrong.append(f"{e.label()} -> {text!r}")
    assert not wrong, "translations whose placeholders differ from the msgid's:\n  " + "\n  ".join(wrong)


def test_placeholder_check_can_fail() -> None:
    assert placeholders("会员 #%(id)s 已合并到 #%(to)s") == placeholders("Member #%(id)s merged into #%(to)s")
    assert placeholders("违规率 %(r).1f%% 超过阈值") != placeholders("Rate %(r)s% too high")
    assert placeholders("可用 {category} {count}") != placeholders("{category} is available")


def test_po_reader_reads_context_plurals_and_continuations(tmp_path: Path) -> None:
    po = tmp_path / "x.po"
    po.write_text('msgid ""\nmsgstr ""\n"Language: en\\n"\n\n#: a.py:1\n#, python-format\nmsgctxt "ctx"\n'
                  'msgid ""\n"第 %(n)d 行"\n"错误"\nmsgid_plural "第 %(n)d 行错误"\nmsgstr[0] "Line %(n)d error"\n'
                  'msgstr[1] ""\n"Line %(n)d "\n"errors"\n\n#~ msgid "旧"\n#~ msgstr "Old"\n', encoding="utf-8")
    [e] = read_po(po)
    assert e.key == "ctx\x04第 %(n)d 行错误" and e.msgid_plural == "第 %(n)d 行错误" and "python-format" in e.flags
    assert e.msgstr == {0: "Line %(n)d error", 1: "Line %(n)d errors"}


# --- the console and the API in English --------------------------------------------------------------

def cjk_runs(html: str, allowed: set[str]) -> set[str]:
    return set(CJK.findall(html)) - allowed


def _console(tenant: Tenant, language: str | None) -> Client:
    c = Client()
    c.force_login(f.staff(tenant, StaffRole.OWNER).user)
    if language:
        c.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    return c


@pytest.mark.django_db
def test_console_login_page_is_english_with_the_language_cookie() -> None:
    c = Client()
    zh = c.get(reverse("admin:login")).content.decode()
    assert "社群运营台" in zh
    c.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    en = c.get(reverse("admin:login")).content.decode()
    assert "Community console" in en
    # "社群" is in the brand name ("shequn 社群") and "简体中文" names the other language in the switch
    assert not cjk_runs(en, {"社群", "简体中文"})


@pytest.fixture
def order(tenant: Tenant) -> None:
    system = Principal.system(tenant.pk)
    member = Member.objects.create(tenant=tenant, display_name="Alice", first_seen_at=timezone.now())
    product = services.do_create_product(system, name="Car diffuser",
                                         skus=[{"code": "CD-1", "name": "Wood", "price_fen": 9900, "stock": 5}])
    services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": product.skus.get().pk, "quantity": 1}])


@pytest.mark.django_db
def test_console_changelist_is_english_after_the_language_switch(tenant: Tenant, order: None) -> None:
    c = _console(tenant, None)
    url = reverse("admin:commerce_order_changelist")
    assert "应付" in c.get(url).content.decode()
    resp = c.post(reverse("set_language"), {"language": "en", "next": url})
    assert resp.status_code == 302
    html = c.get(url).content.decode()
    assert "Payable" in html and "Awaiting payment" in html  # a column header and a status filter choice
    assert not cjk_runs(html, {"社群", "简体中文", "车友会"}), "untranslated text on the English orders page"


@pytest.mark.django_db
def test_every_console_changelist_is_english(tenant: Tenant) -> None:
    """Empty lists, so any Chinese left on the page is an untranslated (or never marked) string."""
    c = _console(tenant, "en")
    urls = [reverse("admin:index")] + [
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist") for model in admin.site._registry
    ]
    chinese, seen = {}, 0
    for url in urls:
        resp = c.get(url)
        if resp.status_code == 403:  # e.g. Django's auth pages: superusers only
            continue
        assert resp.status_code == 200, url
        seen += 1
        runs = cjk_runs(resp.content.decode(), {"社群", "简体中文", "车友会"})
        if runs:
            chinese[url] = sorted(runs)
    assert seen > 30, f"only {seen} console lists rendered"
    assert not chinese, f"Chinese on English console pages (mark the strings for translation): {chinese}"


def test_api_not_found_is_english(world, make_client) -> None:
    en = make_client(world.tenant, language="en")
    resp = en.get("/api/v1/members/999999")
    assert resp.status_code == 404 and resp.json()["message"] == "Member not found"
    resp = en.get("/api/v1/commerce/orders/999999")
    assert resp.status_code == 404 and resp.json()["message"] == "Order not found"
    assert make_client(world.tenant).get("/api/v1/commerce/orders/999999").json()["message"] == "订单不存在"


def test_api_validation_errors_are_english(world, make_client) -> None:
    en = make_client(world.tenant, language="en")
    resp = en.post("/api/v1/members", {"display_name": "王小明", "phone": "123"})
    assert resp.status_code == 422
    body = resp.json()
    assert body["message"] == "Invalid phone number: 123" and body["details"]["field"] == "phone"
    resp = en.post("/api/v1/commerce/orders", {"member_id": world.member.pk, "lines": []})
    assert resp.status_code == 422 and resp.json()["details"][0]["field"] == "body.body.lines"
    assert resp.json()["details"][0]["message"] == "List should have at least 1 item after validation, not 0"
    resp = en.post("/api/v1/members", {"display_name": ""})
    assert resp.status_code == 422 and resp.json()["message"] == "The request data is invalid"
    assert ApiClient(language="en").get("/api/v1/me").json()["message"] == "Log in or send a valid API key"


def test_lazy_strings_follow_the_active_language() -> None:
    with translation.override("en"):
        assert str(Order._meta.verbose_name) == "Order"
        assert str(OrderStatus.CREATED.label) == "Awaiting payment"
    with translation.override("zh-hans"):
        assert str(Order._meta.verbose_name) == "订单"


def test_cached_yuan_columns_follow_each_requests_language() -> None:
    """The 元 list columns are built once per model and cached: their header must still be worked out
    per request, or the first visitor's language sticks for everyone."""
    admin_base._YUAN_COLUMNS.clear()
    with translation.override("zh-hans"):
        column = admin_base._yuan_column(Order, "total_fen")
        assert str(column.short_description) == "应付"
    with translation.override("en"):
        header = str(admin_base._yuan_column(Order, "total_fen").short_description)
    assert header and not cjk_runs(header, set()), header
