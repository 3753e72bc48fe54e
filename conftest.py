"""The suite's plugin is :mod:`shequn.testing.plugin` (markers, ``tenant``, ``system``, ``make_client``,
``world``, ``browser`` …). This file adds what needs the repository checkout: a real Synapse
homeserver (installed by ``scripts/synapse.py``) and the Matrix world on it."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shequn.connectors.services import do_create_connection, do_matrix_sync
from shequn.connectors.tests.matrix_client import User
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.testing.factories import CommunityFactory

pytest_plugins = ["shequn.testing.plugin"]


ROOT = Path(__file__).resolve().parent


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
    """A real Synapse homeserver (session-scoped, one per xdist worker on its own free port; the
    shared install in .synapse/venv is guarded by a file lock). Used by the connectors' and the
    moderation's end-to-end tests (marker ``synapse``)."""
    mod = _synapse_module()
    server = mod.Synapse(home=ROOT / ".synapse").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def matrix_world(synapse: Any, tenant: Tenant, system: Principal) -> dict[str, Any]:
    """A bot connection in tenant ``tenant`` and a room on the test Synapse: alice created it (power
    100 for the bot), bob joined, and the bot has synced twice (accepted the invite, then seen the
    room, its history and its power levels). Shared by the connectors' and moderation's e2e tests."""
    tag = uuid.uuid4().hex[:8]
    bot = synapse.register(f"bot{tag}", admin=True)
    alice = User(synapse.base_url, synapse.register(f"alice{tag}"))
    bob = User(synapse.base_url, synapse.register(f"bob{tag}"))
    community = CommunityFactory(tenant=tenant, name="车友会")
    conn = do_create_connection(
        system, platform="matrix", name="bot", default_community_id=community.pk,
        config={"homeserver": synapse.base_url, "user_id": bot["user_id"], "device_id": bot["device_id"]},
        secret_values={"access_token": bot["access_token"]},
    )
    room_id = alice.create_room("车友群", invite=[bot["user_id"], bob.user_id], power={bot["user_id"]: 100})
    bob.join(room_id)
    do_matrix_sync(conn.pk)  # sees the invite, joins
    do_matrix_sync(conn.pk)  # sees the room, its history and its power levels
    return {"conn": conn, "room": room_id, "alice": alice, "bob": bob, "bot": bot, "community": community,
            "tenant": tenant}
