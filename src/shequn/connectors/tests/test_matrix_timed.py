"""Issue #19 against the real Synapse: a Matrix mute ends by itself (the outbox schedules the unmute
at the mute's end; Matrix power levels have no expiry)."""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import pytest

from shequn.activity.models import ActivityEvent
from shequn.communities.models import ChatGroup, Community
from shequn.connectors import selectors
from shequn.connectors.models import Connection, OutboxAction, Room
from shequn.connectors.services import (
    do_create_connection,
    do_delete_connection,
    do_deliver_due,
    do_map_room,
    do_matrix_sync,
    do_request_action,
)
from shequn.connectors.services.delivery import unmute_key
from shequn.core.errors import Invalid
from shequn.moderation.models import Strike, Violation
from shequn.moderation.services import do_lift_mute, do_save_policy

pytestmark = [pytest.mark.synapse, pytest.mark.django_db(transaction=False)]


def test_a_matrix_mute_expires_by_itself(matrix_world: dict[str, Any]) -> None:
    alice, bob, room, tenant = (matrix_world[k] for k in ("alice", "bob", "room", "tenant"))
    group = ChatGroup.objects.get(tenant=tenant, external_id=room)
    mute = do_request_action(tenant.pk, kind="mute", group_id=group.pk, idempotency_key="m1",
                             target_external_id=bob.user_id, payload={"seconds": 2}, source="test")
    assert do_deliver_due().done == 1
    assert alice.state(room, "m.room.power_levels")["users"][bob.user_id] < 0
    unmute = OutboxAction.objects.get(idempotency_key=unmute_key(mute.pk))
    assert unmute.kind == "unmute" and unmute.status == "pending"
    assert do_deliver_due().claimed == 0  # not due yet
    time.sleep(2.1)
    assert do_deliver_due().done == 1
    assert bob.user_id not in alice.state(room, "m.room.power_levels").get("users", {})
    assert do_deliver_due().claimed == 0  # nothing more (an unmute schedules nothing)


def test_a_mute_is_lifted_early_in_one_click(matrix_world: dict[str, Any], system: Any) -> None:
    alice, bob, room = matrix_world["alice"], matrix_world["bob"], matrix_world["room"]
    do_save_policy(system, matrix_world["community"].pk, warn_limit=1)  # the first ad: warn + 24 h mute
    ad = bob.send(room, "加微信 vx123 领红包")
    do_matrix_sync(matrix_world["conn"].pk)
    for _ in range(3):
        do_deliver_due()
    v = Violation.objects.get(event__platform_event_id=ad)
    assert v.ladder_step == "mute"
    assert alice.state(room, "m.room.power_levels")["users"][bob.user_id] < 0
    mute = OutboxAction.objects.get(idempotency_key=f"mod:{v.pk}:mute")
    scheduled = OutboxAction.objects.get(idempotency_key=unmute_key(mute.pk))
    assert scheduled.next_attempt_at is not None
    assert 23.9 * 3600 < (scheduled.next_attempt_at - mute.done_at).total_seconds() <= 24 * 3600 + 1
    strike = Strike.objects.get(violation=v, kind="mute")
    do_lift_mute(system, strike.pk)
    assert do_deliver_due().done == 1
    assert bob.user_id not in alice.state(room, "m.room.power_levels").get("users", {})
    scheduled.refresh_from_db()
    assert scheduled.status == "cancelled"


def test_connecting_verifies_the_token_and_shows_missing_power(matrix_world: dict[str, Any], synapse: Any,
                                                                 system: Any, client: Any) -> None:

    # a bogus token and an unreachable homeserver are refused, nothing stored
    with pytest.raises(Invalid) as bogus:
        do_create_connection(system, platform="matrix", name="bogus",
                             config={"homeserver": synapse.base_url, "user_id": "@x:localhost"},
                             secret_values={"access_token": "syt_bogus"})
    assert "M_UNKNOWN_TOKEN" in bogus.value.message and bogus.value.details["field"] == "secrets.access_token"
    with pytest.raises(Invalid) as gone:
        do_create_connection(system, platform="matrix", name="gone",
                             config={"homeserver": "http://127.0.0.1:9", "user_id": "@x:localhost"},
                             secret_values={"access_token": "x"})
    assert gone.value.details["field"] == "config.homeserver"
    assert not Connection.objects.filter(name__in=["bogus", "gone"]).exists()

    # the bot at power 50: redact, kick and ban work, muting (power levels need 100) does not
    conn, alice, room = matrix_world["conn"], matrix_world["alice"], matrix_world["room"]
    assert selectors.power_problems(conn) == []

    path = f"/rooms/{urllib.parse.quote(room)}/state/m.room.power_levels/"
    levels = alice.call("GET", path)
    levels["users"][matrix_world["bot"]["user_id"]] = 50
    alice.call("PUT", path, levels)
    do_matrix_sync(conn.pk)
    problems = selectors.power_problems(conn)
    assert [(p["room"], p["missing"], p["need"]) for p in problems] == [(room, ["mute"], 100)]
    assert "100" in problems[0]["fix"] and "车友群" in problems[0]["fix"]

    do_delete_connection(system, conn.pk)
    assert not Connection.objects.filter(pk=conn.pk).exists()


def test_encrypted_rooms_are_refused_and_early_messages_kept(matrix_world: dict[str, Any], synapse: Any,
                                                            system: Any) -> None:
    conn, alice, bob, bot = (matrix_world[k] for k in ("conn", "alice", "bob", "bot"))
    Connection.objects.filter(pk=conn.pk).update(default_community=None)  # rooms wait to be mapped by hand
    plain = alice.create_room("新群", invite=[bot["user_id"], bob.user_id], power={bot["user_id"]: 100})
    secret = alice.create_room("私密群", invite=[bot["user_id"]], power={bot["user_id"]: 100})
    alice.call("PUT", f"/rooms/{secret}/state/m.room.encryption/", {"algorithm": "m.megolm.v1.aes-sha2"})
    bob.join(plain)
    do_matrix_sync(conn.pk)  # joins both
    early = bob.send(plain, "映射之前的消息")
    do_matrix_sync(conn.pk)
    assert not ActivityEvent.objects.filter(platform_event_id=early).exists()  # not mapped: held, not ingested

    community = Community.objects.get(pk=matrix_world["community"].pk)
    enc = Room.objects.get(connection=conn, external_id=secret)
    assert enc.encrypted
    with pytest.raises(Invalid) as refused:
        do_map_room(system, enc.pk, community.pk)
    assert "端到端加密" in refused.value.message and refused.value.code == "room_encrypted"

    room = Room.objects.get(connection=conn, external_id=plain)
    assert not room.encrypted and room.held_events
    do_map_room(system, room.pk, community.pk)
    assert ActivityEvent.objects.get(platform_event_id=early).payload["text"] == "映射之前的消息"
