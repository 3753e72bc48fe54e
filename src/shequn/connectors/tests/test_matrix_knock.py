"""Entry thresholds on Matrix, against a real Synapse: a knock on a room whose join rule is
``knock`` becomes a join request; staff approve one (the bot invites the knocker, who then joins and
the membership opens) and decline another (the bot kicks the knock away); in a free community a
knock is let in at once; gating a community turns its public room into a knock room."""

from __future__ import annotations

import urllib.parse
import uuid
from typing import Any

import pytest

from shequn.communities.models import ChatGroup, Community, JoinRequest, Membership
from shequn.communities.services import do_decide_join, do_update_community
from shequn.connectors.models import OutboxAction
from shequn.connectors.services import do_deliver_due, do_matrix_sync
from shequn.core.permissions import Principal

from .matrix_client import User

pytestmark = [pytest.mark.synapse, pytest.mark.django_db(transaction=False)]


def _knock_room(world: dict[str, Any], threshold: str) -> tuple[str, ChatGroup]:
    room = world["room"]
    Community.objects.filter(pk=world["community"].pk).update(entry_threshold=threshold)
    world["alice"].call("PUT", f"/rooms/{urllib.parse.quote(room)}/state/m.room.join_rules/",
                        {"join_rule": "knock"})
    return room, ChatGroup.objects.get(tenant=world["tenant"], external_id=room)


def _knocker(synapse: Any, room: str, name: str) -> User:
    user = User(synapse.base_url, synapse.register(f"{name}{uuid.uuid4().hex[:6]}"))
    user.call("POST", f"/knock/{urllib.parse.quote(room)}", {"reason": "想加入车友群"})
    return user


def test_knocks_wait_for_staff_and_the_answer_reaches_synapse(matrix_world: dict[str, Any], synapse: Any) -> None:
    w = matrix_world
    room, group = _knock_room(w, Community.EntryThreshold.APPROVAL)
    carol, dave = _knocker(synapse, room, "carol"), _knocker(synapse, room, "dave")
    do_matrix_sync(w["conn"].pk)
    by_user = {r.member.identities.get(platform="matrix").external_id: r
               for r in JoinRequest.objects.filter(tenant=w["tenant"]).select_related("member")}
    reqs = [by_user[carol.user_id], by_user[dave.user_id]]
    assert [(r.status, r.via, r.group_id, r.message) for r in reqs] == [
        ("pending", "matrix", group.pk, "想加入车友群")] * 2
    assert not OutboxAction.objects.filter(tenant=w["tenant"]).exists()

    system = Principal.system(w["tenant"].pk)
    do_decide_join(system, reqs[0].pk, approve=True)
    do_decide_join(system, reqs[1].pk, approve=False, note="不符合条件")
    stats = do_deliver_due()
    assert stats.done == 2, list(OutboxAction.objects.values("kind", "status", "last_error"))
    alice = w["alice"]
    assert alice.state(room, "m.room.member", carol.user_id)["membership"] == "invite"
    assert alice.state(room, "m.room.member", dave.user_id)["membership"] == "leave"

    carol.join(room)  # she accepts the invitation: the join opens her membership of the group
    do_matrix_sync(w["conn"].pk)
    assert Membership.objects.filter(member=reqs[0].member, group=group, left_at__isnull=True).exists()
    assert not Membership.objects.filter(member=reqs[1].member, left_at__isnull=True).exists()


def test_a_knock_on_a_free_community_is_let_in_at_once(matrix_world: dict[str, Any], synapse: Any) -> None:
    w = matrix_world
    room, _group = _knock_room(w, Community.EntryThreshold.FREE)
    erin = _knocker(synapse, room, "erin")
    do_matrix_sync(w["conn"].pk)
    assert JoinRequest.objects.get(tenant=w["tenant"]).status == "approved"
    assert do_deliver_due().done == 1
    assert w["alice"].state(room, "m.room.member", erin.user_id)["membership"] == "invite"


def test_gating_a_community_makes_its_public_room_knock(matrix_world: dict[str, Any], synapse: Any) -> None:
    """A room anyone could join is not gated by a threshold the room never hears of: when the
    community's threshold leaves "free", the bot sets the public room's join rule to ``knock`` (and
    leaves an invite-only room alone), so a stranger has to knock and the threshold answers."""
    w = matrix_world
    room, alice = w["room"], w["alice"]
    alice.call("PUT", f"/rooms/{urllib.parse.quote(room)}/state/m.room.join_rules/", {"join_rule": "public"})
    private = alice.create_room("内部群", invite=[w["bot"]["user_id"]], power={w["bot"]["user_id"]: 100})
    do_matrix_sync(w["conn"].pk)
    do_matrix_sync(w["conn"].pk)
    system = Principal.system(w["tenant"].pk)
    community = Community.objects.get(pk=w["community"].pk)
    second = ChatGroup.objects.get(tenant=w["tenant"], external_id=private)
    assert second.community_id == community.pk

    do_update_community(system, community, entry_threshold=Community.EntryThreshold.APPROVAL)
    queued = OutboxAction.objects.filter(tenant=w["tenant"], kind="join_rule")
    assert sorted(queued.values_list("group__external_id", flat=True)) == sorted([room, private])
    do_update_community(system, community, theme="改个主题")  # no second round while one is queued
    assert queued.count() == 2
    assert do_deliver_due().done == 2, list(OutboxAction.objects.values("kind", "status", "last_error"))
    assert alice.state(room, "m.room.join_rules")["join_rule"] == "knock"
    assert alice.state(private, "m.room.join_rules")["join_rule"] == "invite"  # not opened up
    results = {a.group.external_id: a.result for a in queued.select_related("group")}
    assert results[room]["changed"] is True and results[private]["changed"] is False

    stranger = User(synapse.base_url, synapse.register(f"frank{uuid.uuid4().hex[:6]}"))
    with pytest.raises(AssertionError, match="403"):
        stranger.join(room)  # no longer public
    stranger.call("POST", f"/knock/{urllib.parse.quote(room)}", {"reason": "我也是车主"})
    do_matrix_sync(w["conn"].pk)
    req = JoinRequest.objects.get(tenant=w["tenant"], member__identities__external_id=stranger.user_id)
    assert (req.status, req.via) == ("pending", "matrix")
