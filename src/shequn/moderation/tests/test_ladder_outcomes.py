"""Issue #19: the ladder counts only actions that were applied. Against the real Synapse: a bot at
power level 50 can redact but not change power levels, so its mute fails with ``M_FORBIDDEN`` — the
mute becomes a human task, the violation does not read "muted", the strike does not count, and the
next ad is met with warn + mute again instead of a kick. Completing the task restores the step."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest

from shequn.connectors.models import HumanTask, OutboxAction
from shequn.connectors.services import do_complete_human_task, do_deliver_due, do_matrix_sync
from shequn.connectors.tests.matrix_client import User
from shequn.moderation.models import Strike, Violation
from shequn.moderation.services import do_save_policy

pytestmark = [pytest.mark.synapse, pytest.mark.django_db(transaction=False)]

AD = "加微信 vx123 领红包"


def _set_power(admin: User, room: str, user_id: str, level: int) -> None:
    path = f"/rooms/{urllib.parse.quote(room)}/state/m.room.power_levels/"
    levels = admin.call("GET", path)
    levels.setdefault("users", {})[user_id] = level
    admin.call("PUT", path, levels)


def _round(world: dict[str, Any]) -> None:
    do_matrix_sync(world["conn"].pk)
    for _ in range(5):
        do_deliver_due()


def test_a_mute_the_bot_may_not_do_is_a_human_task_and_not_counted(matrix_world: dict[str, Any],
                                                                   system: Any) -> None:
    world = matrix_world
    alice, bob, room = world["alice"], world["bob"], world["room"]
    do_save_policy(system, world["community"].pk, warn_limit=1)  # the first ad: warn + mute
    _set_power(alice, room, world["bot"]["user_id"], 50)  # may redact and kick, not set power levels

    first = bob.send(room, AD)
    _round(world)
    v1 = Violation.objects.get(event__platform_event_id=first)
    assert alice.event(room, first)["content"] == {}  # the redaction worked (power 50 is enough)
    mute = OutboxAction.objects.get(idempotency_key=f"mod:{v1.pk}:mute")
    assert mute.status == OutboxAction.Status.DELEGATED and "M_FORBIDDEN" in mute.last_error
    task = HumanTask.objects.get(action=mute)
    assert "M_FORBIDDEN" in task.instructions
    assert v1.ladder_step == "mute_failed"  # not "mute"
    assert next(a for a in v1.actions if a["kind"] == "mute")["applied"] is False
    assert not Strike.objects.filter(violation=v1, kind="mute", revoked_at__isnull=True).exists()
    assert bob.user_id not in alice.state(room, "m.room.power_levels").get("users", {})

    # the next ad: not a kick (the mute never happened) but warn + mute again
    second = bob.send(room, AD + " 私聊")
    _round(world)
    v2 = Violation.objects.get(event__platform_event_id=second)
    assert {a["kind"] for a in v2.actions} == {"delete", "warn", "mute"}
    assert not OutboxAction.objects.filter(kind="kick").exists()

    # a person mutes by hand and completes the task: the first mute now counts
    do_complete_human_task(system, task.pk, note="已手动禁言")
    v1.refresh_from_db()
    assert v1.ladder_step == "mute"
    assert Strike.objects.filter(violation=v1, kind="mute", revoked_at__isnull=True).exists()
