"""Fixtures of the connectors tests: a real Synapse homeserver (session-scoped, one per xdist
worker on its own free port; the shared install in .synapse/venv is guarded by a file lock)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[4]


def _synapse_module() -> Any:
    path = ROOT / "scripts" / "synapse.py"
    spec = importlib.util.spec_from_file_location("shequn_test_synapse", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def synapse() -> Iterator[Any]:
    mod = _synapse_module()
    server = mod.Synapse(home=ROOT / ".synapse").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_adapter() -> Iterator[Any]:
    """Swap a scripted adapter in for one platform; restores the real one afterwards."""
    from shequn.connectors import adapters

    adapters._load_builtin()
    saved = dict(adapters._ADAPTERS)
    yield adapters.register_adapter
    adapters._ADAPTERS.clear()
    adapters._ADAPTERS.update(saved)
