"""Fixtures of the connectors tests (the ``synapse`` homeserver fixture lives in the root conftest,
shared with the moderation end-to-end test)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shequn.connectors import adapters


@pytest.fixture
def fake_adapter() -> Iterator[Any]:
    """Swap a scripted adapter in for one platform; restores the real one afterwards."""
    adapters._load_builtin()
    saved = dict(adapters._ADAPTERS)
    yield adapters.register_adapter
    adapters._ADAPTERS.clear()
    adapters._ADAPTERS.update(saved)
