"""The import rules of docs/architecture.md: an import-linter ``layers`` contract in pyproject.toml
(``lint-imports`` runs it in scripts/test). Data flows one way — core → members → communities →
activity → connectors/ledger → engines → analytics → interfaces → the wiring at the top — and a layer
never imports one above it. These tests run the same contract and check that it can fail."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
SRC = ROOT / "src" / "shequn"


def _contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = config["tool"]["importlinter"]["contracts"]
    return contract


def _run_lint_module() -> str:
    return "import importlinter.cli, sys; sys.exit(importlinter.cli.lint_imports(no_cache=True))"


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _run_lint_module()], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False, env={**os.environ, "PYTHONPATH": str(cwd / "src")})


def test_every_app_is_a_layer_of_the_contract() -> None:
    layered = {name.strip() for layer in _contract()["layers"] for name in layer.split("|")}
    apps = {p.parent.name for p in SRC.glob("*/apps.py")}
    assert apps <= layered, f"apps without a layer: {apps - layered}"
    assert _contract()["ignore_imports"] == ["shequn.**.tests.** -> shequn.**"], "no exceptions but the tests"


@pytest.mark.slow
def test_the_import_contract_holds() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-4000:]


@pytest.mark.slow
def test_the_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """The same contract over a copy of the source where the ledger imports the console: broken."""
    copy = tmp_path / "repo"
    (copy / "src").mkdir(parents=True)
    subprocess.run(["cp", "-r", str(SRC), str(copy / "src" / "shequn")], check=True)
    subprocess.run(["cp", str(ROOT / "pyproject.toml"), str(copy / "pyproject.toml")], check=True)
    (copy / "src" / "shequn" / "ledger" / "oops.py").write_text("from shequn.console import views\n")
    result = _lint(copy)
    assert result.returncode != 0
    assert "shequn.ledger.oops -> shequn.console" in result.stdout
