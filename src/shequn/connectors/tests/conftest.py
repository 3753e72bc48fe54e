"""Fixtures of the connectors tests (the ``synapse`` homeserver fixture lives in the root conftest,
shared with the moderation end-to-end test)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shequn.connectors import adapters

from .fake_server import FakeServer
from .telegram_fake import BOT


@pytest.fixture
def tg_api() -> Iterator[FakeServer]:
    """A Bot API that knows every token (``getMe`` answers the bot): for tests that only need a
    Telegram connection to exist; :class:`.telegram_fake.FakeTelegram` is the stateful one."""
    def answer(name: str, fields: dict[str, str]) -> tuple[int, Any]:
        return 200, {"ok": True, "result": BOT if name == "getMe" else True}

    with FakeServer(answer) as server:
        yield server


@pytest.fixture
def fake_adapter() -> Iterator[Any]:
    """Swap a scripted adapter in for one platform; restores the real one afterwards."""
    adapters._load_builtin()
    saved = dict(adapters._ADAPTERS)
    yield adapters.register_adapter
    adapters._ADAPTERS.clear()
    adapters._ADAPTERS.update(saved)
