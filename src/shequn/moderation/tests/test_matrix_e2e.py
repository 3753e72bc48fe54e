"""End to end against a real Synapse homeserver (issue #4: "message → verdict → platform action
through the Matrix connector"): bob posts ads with evasions → ``do_matrix_sync`` → the activity
dispatch → the moderation verdict → the outbox → ``do_deliver_due`` → the message is redacted in
Synapse, and repeated ads climb the ladder (warn → mute via power levels → kick). A room admin
(the creator, above every power level; or a member promoted to 50) is exempt through the
connector's ``sender_is_admin`` mark; a normal message is left alone."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
from django.utils import timezone

from shequn.activity.models import ActivityEvent
from shequn.connectors.models import OutboxAction
from shequn.connectors.services import do_deliver_due, do_matrix_sync
from shequn.connectors.tests.matrix_client import User
from shequn.moderation.models import Strike, Violation
from shequn.moderation.services import do_save_policy

pytestmark = [pytest.mark.synapse, pytest.mark.django_db(transaction=False)]

AD_PLAIN = "加微信 vx123 领红包"
AD_FULLWIDTH = "加微信 ｖｘ１２３４５６ 领红包，私聊送福利"
AD_ZERO_WIDTH = "加\u200b微\u200b信 vx123456 领\u200b红包"


@pytest.fixture
def world(matrix_world: dict[str, Any], system: Any) -> dict[str, Any]:
    # warn, then warn + mute, then kick: the whole ladder in three ads
    do_save_policy(system, matrix_world["community"].pk, warn_limit=2)
    return matrix_world


def _deliver_all() -> None:
    for _ in range(10):
        do_deliver_due()
        # what is due now (a mute's unmute waits for the mute's end)
        if not OutboxAction.objects.filter(status=OutboxAction.Status.PENDING,
                                           next_attempt_at__lte=timezone.now()).exists():
            return
    raise AssertionError(list(OutboxAction.objects.values("kind", "status", "last_error")))


def _round(world: dict[str, Any]) -> None:
    do_matrix_sync(world["conn"].pk)
    _deliver_all()


def _violation(event_id: str) -> Violation:
    return Violation.objects.get(event__platform_event_id=event_id)


def _set_power(admin: User, room: str, user_id: str, level: int) -> None:
    path = f"/rooms/{urllib.parse.quote(room)}/state/m.room.power_levels/"
    levels = admin.call("GET", path)
    levels.setdefault("users", {})[user_id] = level
    admin.call("PUT", path, levels)


def test_normal_message_is_left_alone(world: dict[str, Any]) -> None:
    bob, alice, room = world["bob"], world["alice"], world["room"]
    hello = bob.send(room, "今天天气不错，周末一起去爬山吗")
    _round(world)
    event = ActivityEvent.objects.get(platform_event_id=hello)
    assert event.payload["sender_is_admin"] is False  # the connector knows bob's power level (0)
    assert not Violation.objects.filter(event=event).exists()
    assert not OutboxAction.objects.exists()
    assert alice.event(room, hello)["content"]["body"] == "今天天气不错，周末一起去爬山吗"


def test_ads_are_redacted_and_the_ladder_escalates(world: dict[str, Any]) -> None:
    bob, alice, room, tenant = world["bob"], world["alice"], world["room"], world["tenant"]

    first = bob.send(room, AD_PLAIN)
    _round(world)
    v1 = _violation(first)
    assert v1.verdict == "ad" and v1.status == Violation.Status.ACTIONED and v1.ladder_step == "warn"
    assert alice.event(room, first)["content"] == {}  # redacted in Synapse
    warn = OutboxAction.objects.get(idempotency_key=f"mod:{v1.pk}:warn")
    assert warn.status == OutboxAction.Status.DONE
    assert "警告 1/2" in alice.event(room, warn.result["event_id"])["content"]["body"]
    assert alice.state(room, "m.room.power_levels")["users"].get(bob.user_id, 0) == 0  # not muted yet

    second = bob.send(room, AD_FULLWIDTH)  # full-width letters and digits
    _round(world)
    v2 = _violation(second)
    assert v2.ladder_step == "mute" and alice.event(room, second)["content"] == {}
    assert alice.state(room, "m.room.power_levels")["users"][bob.user_id] < 0  # muted via power levels

    # an operator lifts the mute by hand; bob re-offends with zero-width characters → kicked
    _set_power(alice, room, bob.user_id, 0)
    third = bob.send(room, AD_ZERO_WIDTH)
    _round(world)
    v3 = _violation(third)
    assert v3.ladder_step == "kick" and alice.event(room, third)["content"] == {}
    assert alice.state(room, "m.room.member", bob.user_id)["membership"] == "leave"
    assert sorted(Strike.objects.filter(tenant=tenant, member_id=v3.member_id).values_list("kind", flat=True)) == \
        ["kick", "mute", "warn", "warn"]

    # replaying the sync adds nothing: no second violation, no second action
    actions = OutboxAction.objects.count()
    _round(world)
    assert Violation.objects.filter(tenant=tenant).count() == 3 and OutboxAction.objects.count() == actions


def test_room_admin_is_not_acted_on(world: dict[str, Any]) -> None:
    alice, room = world["alice"], world["room"]
    ad = alice.send(room, AD_PLAIN)
    _round(world)
    event = ActivityEvent.objects.get(platform_event_id=ad)
    assert event.payload["sender_is_admin"] is True  # the creator (room v12+) from the cached state
    v = _violation(ad)
    assert v.verdict == "ad" and v.status == Violation.Status.EXEMPT and not v.actions
    assert not OutboxAction.objects.exists()
    assert alice.event(room, ad)["content"]["body"] == AD_PLAIN


def test_promoted_member_is_exempt_after_the_power_change_is_synced(world: dict[str, Any]) -> None:
    """The connector's power-level cache follows ``m.room.power_levels`` changes in the timeline."""
    alice, bob, room = world["alice"], world["bob"], world["room"]
    _set_power(alice, room, bob.user_id, 50)
    ad = bob.send(room, AD_PLAIN)
    _round(world)
    assert _violation(ad).status == Violation.Status.EXEMPT
    assert alice.event(room, ad)["content"]["body"] == AD_PLAIN
