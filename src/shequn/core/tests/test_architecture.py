"""The import rules of docs/architecture.md, checked on the source so a violation fails CI.

Data flows one way — connectors → activity stream → engines → analytics — and no engine imports the
console, the API or the portal. Each app's own ``api.py``/``admin.py`` are its interface modules and
are held to the app's rules too; tests and migrations are not checked."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2]  # src/shequn

FOUNDATION = {"core", "members", "communities", "activity"}
ENGINES = {"moderation", "engagement", "commerce", "referrals"}
INTERFACES = {"console", "api", "portal"}

#: app → the shequn apps it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    **dict.fromkeys(FOUNDATION, FOUNDATION),
    "connectors": FOUNDATION,
    "ledger": {"core"},
    # engines act on platforms only through the connectors' outbox, move money only through the
    # ledger; referrals listens to commerce's order events (the one engine-to-engine edge)
    "moderation": FOUNDATION | {"connectors"},
    "engagement": FOUNDATION | {"connectors", "ledger"},
    "commerce": FOUNDATION | {"connectors", "ledger"},
    "referrals": FOUNDATION | {"connectors", "ledger", "commerce"},
    "analytics": FOUNDATION | ENGINES | {"connectors", "ledger"},
}
#: an app's ``apps.py`` is its wiring: ``AppConfig.ready()`` registers the app's callables in another
#: engine's registry (moderation → engagement's standing check, ledger → engagement's cash wallet,
#: engagement/commerce → referrals' reward hooks). It may import any engine or the ledger, never an
#: interface; the engines' code itself keeps to ALLOWED.
WIRING_MAY_IMPORT = ENGINES | {"ledger", "connectors"} | FOUNDATION

#: modules allowed to know every app: `shequn demo` seeds every engine (``shequn/demo.py`` is not
#: an app and is not checked either)
MODULE_EXCEPTIONS = {"core/management/commands/demo.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "shequn" and len(parts) > 1:
                found.add(parts[1])
    return found


def _sources(app: str) -> list[Path]:
    return [p for p in (SRC / app).rglob("*.py") if "tests" not in p.parts and "migrations" not in p.parts]


def test_every_app_has_a_rule() -> None:
    apps = {p.parent.name for p in SRC.glob("*/apps.py")}
    assert apps - INTERFACES <= set(ALLOWED), f"apps without an import rule: {apps - INTERFACES - set(ALLOWED)}"


@pytest.mark.parametrize("app", sorted(ALLOWED))
def test_imports_follow_the_data_flow(app: str) -> None:
    allowed = ALLOWED[app] | {app}
    bad = []
    for path in _sources(app):
        rel = path.relative_to(SRC).as_posix()
        if rel in MODULE_EXCEPTIONS:
            continue
        wiring = path.name == "apps.py"
        for dep in _imports(path) & (set(ALLOWED) | INTERFACES):
            if dep not in allowed and not (wiring and dep in WIRING_MAY_IMPORT):
                bad.append(f"{rel} imports shequn.{dep}")
    assert not bad, "imports against the data flow (docs/architecture.md):\n" + "\n".join(sorted(bad))


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The rule above is only as good as the parser: make sure it catches both import forms."""
    f = tmp_path / "x.py"
    f.write_text("import shequn.console.views\nfrom shequn.api.main import api\nfrom . import models\n")
    assert _imports(f) == {"console", "api"}
