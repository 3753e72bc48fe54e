"""scripts/audit_deps.py: vulnerable → fails; offline → "not checked", never a failure."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[4] / "scripts" / "audit_deps.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("shequn_audit_deps", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake(monkeypatch: pytest.MonkeyPatch, mod: Any, *, stdout: str = "", stderr: str = "",
          exc: Exception | None = None) -> None:
    def run(*_a: Any, **_k: Any) -> subprocess.CompletedProcess[str]:
        if exc is not None:
            raise exc
        return subprocess.CompletedProcess([], 1, stdout, stderr)

    monkeypatch.setattr(mod.subprocess, "run", run)
    monkeypatch.setattr(mod, "drift", list)


def test_a_known_vulnerability_fails(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    mod = _load()
    report = {"dependencies": [
        {"name": "django", "version": "6.1.3", "vulns": [{"id": "PYSEC-0000-1", "fix_versions": ["6.1.4"]}]},
        {"name": "redis", "version": "8.1.0", "vulns": []}]}
    _fake(monkeypatch, mod, stdout=json.dumps(report))
    assert mod.main() == 1
    out = capsys.readouterr().out
    assert "django 6.1.3: PYSEC-0000-1 (fixed in 6.1.4)" in out


def test_clean_passes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    mod = _load()
    _fake(monkeypatch, mod, stdout=json.dumps({"dependencies": [{"name": "redis", "version": "8.1.0", "vulns": []}]}))
    assert mod.main() == 0
    assert "1 packages checked, no known vulnerabilities" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["error", "all_skipped", "timeout"])
def test_unreachable_source_is_not_checked_not_failed(kind: str, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    mod = _load()
    if kind == "error":
        _fake(monkeypatch, mod, stderr="requests.exceptions.ConnectionError: Max retries exceeded")
    elif kind == "all_skipped":
        _fake(monkeypatch, mod, stdout=json.dumps({"dependencies": [
            {"name": "redis", "skip_reason": "Dependency not found on PyPI and could not be audited"}]}))
    else:
        _fake(monkeypatch, mod, exc=subprocess.TimeoutExpired("pip-audit", 1))
    assert mod.main() == 0
    assert "dependency audit: not checked" in capsys.readouterr().out


def test_pins_are_read_from_pyproject() -> None:
    pins = _load().pins()
    assert pins["django"] and pins["django-otp"] == "1.7.5"
