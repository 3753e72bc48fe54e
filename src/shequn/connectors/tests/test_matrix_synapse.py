"""End to end against a real Synapse homeserver: a user posts → the activity appears; an engine
action → the bot redacts, kicks, announces; a restart resumes from the sync token without
duplicates; timeline gaps are filled by pagination."""

from __future__ import annotations

from typing import Any

import pytest

from shequn.activity.models import ActivityEvent
from shequn.communities.models import ChatGroup, Membership
from shequn.connectors import services
from shequn.connectors.models import OutboxAction, Room
from shequn.connectors.platforms.matrix import outbound as matrix_outbound
from shequn.connectors.services import do_matrix_sync, do_request_action
from shequn.connectors.services import matrix as matrix_services

pytestmark = [pytest.mark.synapse, pytest.mark.django_db(transaction=False)]


@pytest.fixture
def world(matrix_world: dict[str, Any]) -> dict[str, Any]:
    return matrix_world


def _events(tenant: Any, **kw: Any) -> list[ActivityEvent]:
    return list(ActivityEvent.objects.filter(tenant=tenant, platform="matrix", **kw).order_by("occurred_at", "pk"))


def test_room_is_discovered_and_mapped_and_joins_ingested(world: dict[str, Any]) -> None:
    room = Room.objects.get(connection=world["conn"], external_id=world["room"])
    assert room.name == "车友群"
    group = ChatGroup.objects.get(pk=room.group_id)
    assert group.community_id == world["community"].pk and group.platform == "matrix"
    joins = _events(world["tenant"], kind="join", group=group)
    senders = {e.payload.get("actor") for e in joins}
    assert world["bob"].user_id in senders  # bob joined himself
    assert Membership.objects.filter(group=group, left_at__isnull=True).count() == 2  # alice + bob, not the bot


def test_post_appears_with_reply_and_mentions(world: dict[str, Any]) -> None:
    alice, bob, room = world["alice"], world["bob"], world["room"]
    first = alice.send(room, "大家好")
    reply = bob.send(room, "欢迎", **{"m.relates_to": {"m.in_reply_to": {"event_id": first}},
                                    "m.mentions": {"user_ids": [alice.user_id]}})
    out = do_matrix_sync(world["conn"].pk)
    assert out["stored"] == 2
    msg = ActivityEvent.objects.get(platform_event_id=first)
    assert msg.kind == "message" and msg.payload["text"] == "大家好" and msg.community_id == world["community"].pk
    rep = ActivityEvent.objects.get(platform_event_id=reply)
    assert rep.kind == "reply" and rep.payload["reply_to"] == first and rep.payload["mentions"] == [alice.user_id]


def test_bot_redacts_kicks_announces(world: dict[str, Any]) -> None:
    alice, bob, room, tenant = world["alice"], world["bob"], world["room"], world["tenant"]
    # a harmless text: this test drives the outbox by hand (moderation has its own end-to-end test)
    spam = bob.send(room, "今天天气不错")
    do_matrix_sync(world["conn"].pk)
    group = ChatGroup.objects.get(tenant=tenant, external_id=room)
    bob_member = ActivityEvent.objects.get(platform_event_id=spam).member_id
    do_request_action(tenant.pk, kind="mute", group_id=group.pk, idempotency_key="mod:1:mute",
                      target_member_id=bob_member, reason="刷屏")
    do_request_action(tenant.pk, kind="delete", group_id=group.pk, idempotency_key="mod:1:del",
                      message_external_id=spam, reason="广告")
    do_request_action(tenant.pk, kind="kick", group_id=group.pk, idempotency_key="mod:1:kick",
                      target_member_id=bob_member, reason="广告")
    do_request_action(tenant.pk, kind="announce", group_id=group.pk, idempotency_key="ann:1",
                      payload={"text": "群规: 禁止广告"})
    stats = services.do_deliver_due()
    assert stats.done == 4, (stats, list(OutboxAction.objects.values("kind", "status", "last_error")))
    assert alice.event(room, spam)["content"] == {}  # redacted
    assert alice.state(room, "m.room.power_levels")["users"][bob.user_id] < 0  # muted
    assert alice.state(room, "m.room.member", bob.user_id)["membership"] == "leave"
    ann = OutboxAction.objects.get(idempotency_key="ann:1")
    assert alice.event(room, ann.result["event_id"])["content"]["body"] == "群规: 禁止广告"
    assert ann.result["event_id"] in alice.state(room, "m.room.pinned_events")["pinned"]
    # the kick comes back through sync as bob leaving; the bot's own announcement is not ingested
    do_matrix_sync(world["conn"].pk)
    leave = _events(tenant, kind="leave", member_id=bob_member)
    assert len(leave) == 1 and leave[0].payload["reason"] == "kick"
    assert not ActivityEvent.objects.filter(platform_event_id=ann.result["event_id"]).exists()
    assert not Membership.objects.filter(member_id=bob_member, group=group, left_at__isnull=True).exists()


def test_restart_resumes_from_token_without_duplicates(world: dict[str, Any], monkeypatch: Any) -> None:
    alice, room, tenant = world["alice"], world["room"], world["tenant"]
    ids = [alice.send(room, f"消息 {i}") for i in range(3)]
    assert do_matrix_sync(world["conn"].pk)["stored"] == 3
    token = type(world["conn"]).objects.get(pk=world["conn"].pk).state["next_batch"]
    more = [alice.send(room, f"后续 {i}") for i in range(2)]

    # the process dies after fetching, before its transaction commits: nothing (not even the token) is kept
    def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("crash")

    monkeypatch.setattr(matrix_services, "do_ingest_platform_events", boom)
    with pytest.raises(RuntimeError):
        do_matrix_sync(world["conn"].pk)
    monkeypatch.undo()
    assert type(world["conn"]).objects.get(pk=world["conn"].pk).state["next_batch"] == token

    # "restart": a fresh sync from the stored token delivers exactly the two new messages
    out = do_matrix_sync(world["conn"].pk)
    assert out["stored"] == 2 and out["duplicates"] == 0
    assert [e.platform_event_id for e in _events(tenant, kind="message")][-5:] == [*ids, *more]
    assert do_matrix_sync(world["conn"].pk)["stored"] == 0


def test_limited_timeline_is_paginated(world: dict[str, Any], monkeypatch: Any) -> None:
    monkeypatch.setattr(matrix_outbound, "SYNC_FILTER", {"room": {"timeline": {"limit": 5}}})
    monkeypatch.setattr(matrix_outbound, "TIMELINE_LIMIT", 7)
    alice, room, tenant = world["alice"], world["room"], world["tenant"]
    sent = [alice.send(room, f"刷屏 {i}") for i in range(23)]
    out = do_matrix_sync(world["conn"].pk)
    assert out["gap_pages"] >= 2
    stored = [e.platform_event_id for e in _events(tenant, kind="message")]
    assert stored[-23:] == sent
