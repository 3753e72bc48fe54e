"""The connectors' module layout: no import circle inside the app (counting imports inside functions
too), and the platforms' inbound modules import nothing of the database side."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[1]  # src/shequn/connectors
PKG = "shequn.connectors"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(APP).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PKG, *parts])


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in APP.rglob("*.py")
            if "tests" not in p.parts and "migrations" not in p.parts}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The app's modules that ``name`` imports anywhere in its body (``from x import sub`` counts as
    importing ``x.sub`` when that is a module)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def test_no_import_circle_in_connectors() -> None:
    mods = _modules()
    known = set(mods)
    graph = {name: _imports(name, path, known) for name, path in mods.items()}
    # a package's __init__ re-exporting its submodules is not a circle: a submodule importing a
    # sibling passes through the (already initialising) package, which Python handles
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        if node in stack:
            cycles.append([*stack[stack.index(node):], node])
            return
        if node in done:
            return
        for dep in sorted(graph[node]):
            if not (node.startswith(dep + ".") and mods[dep].name == "__init__.py"):
                visit(dep, [*stack, node], done)
        done.add(node)

    done: set[str] = set()
    for name in sorted(graph):
        visit(name, [], done)
    assert not cycles, "import circles in connectors:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_inbound_parsers_import_no_database_side() -> None:
    mods = _modules()
    for platform in ("matrix", "telegram", "wecom"):
        name = f"{PKG}.platforms.{platform}.inbound"
        deps = _imports(name, mods[name], set(mods))
        assert not deps, f"{name} imports {sorted(deps)}"
        text = mods[name].read_text(encoding="utf-8")
        assert "django.db" not in text and "django.core.cache" not in text and ".models" not in text
