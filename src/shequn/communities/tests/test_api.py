"""Communities REST API: communities, groups, membership history, roles (the dashboard: analytics)."""

import datetime as dt

from django.utils import timezone

from shequn.communities.models import Community, Membership, RoleAssignment
from shequn.members.models import Member

URL = "/api/v1/communities"


def test_create_list_get_update(world, make_client):
    c = make_client(world.tenant)
    resp = c.post(URL, {"name": "护肤群", "theme": "成分党", "audience": "25-35 岁女性", "needs": "靠谱的成分解读",
                        "purpose": "sales", "category": "product", "entry_threshold": "approval"})
    assert resp.status_code == 201, resp.content
    created = resp.json()
    assert created["purpose"] == "sales" and created["member_count"] == 0
    assert c.post(URL, {"name": "护肤群"}).status_code == 409
    listing = c.get(URL).json()
    assert [x["name"] for x in listing["items"]] == ["甲社群", "护肤群"]
    assert listing["items"][0]["member_count"] == 1
    got = c.get(f"{URL}/{created['id']}").json()
    assert got["audience"] == "25-35 岁女性"
    patched = c.patch(f"{URL}/{created['id']}", {"stage": "growing", "announcement": "禁止广告"})
    assert patched.status_code == 200 and patched.json()["stage"] == "growing"
    assert Community.objects.get(pk=created["id"]).theme == "成分党"
    assert c.patch(f"{URL}/{created['id']}", {"name": "甲社群"}).status_code == 409
    assert c.patch(f"{URL}/{created['id']}", {"stage": "dead"}).status_code == 422
    assert c.patch(f"{URL}/{created['id']}", {"name": None}).status_code == 422


def test_groups(world, make_client):
    c = make_client(world.tenant)
    url = f"{URL}/{world.community.pk}/groups"
    resp = c.post(url, {"platform": "wecom", "external_id": "wr-1", "name": "企微一群", "capacity": 200})
    assert resp.status_code == 201, resp.content
    assert c.post(url, {"platform": "wecom", "external_id": "wr-1"}).status_code == 409
    assert c.post(url, {"platform": "icq", "external_id": "x"}).status_code == 422
    assert c.post(url, {"platform": "wecom", "external_id": "x", "capacity": 0}).status_code == 422
    groups = c.get(url).json()
    assert {(g["platform"], g["member_count"]) for g in groups} == {("telegram", 1), ("wecom", 0)}


def test_join_leave_history(world, make_client):
    c = make_client(world.tenant)
    url = f"{URL}/{world.community.pk}/memberships"
    m = world.other_member
    joined = c.post(url, {"member_id": m.pk, "join_source": "qr", "inviter_id": world.member.pk})
    assert joined.status_code == 201, joined.content
    j = joined.json()
    assert j["inviter_id"] == world.member.pk and j["left_at"] is None and j["join_source"] == "qr"
    # joining again while a membership is open returns the open one
    assert c.post(url, {"member_id": m.pk}).json()["id"] == j["id"]
    left = c.post(f"{URL}/memberships/{j['id']}/leave", {"reason": "太吵"})
    assert left.status_code == 200 and left.json()["exit_reason"] == "太吵" and left.json()["left_at"]
    assert c.post(f"{URL}/memberships/{j['id']}/leave", {}).status_code == 409
    rejoin = c.post(url, {"member_id": m.pk, "joined_at": (timezone.now() + dt.timedelta(seconds=1)).isoformat()})
    assert rejoin.status_code == 201 and rejoin.json()["id"] != j["id"]
    history = c.get(url, {"member_id": m.pk}).json()["items"]
    assert len(history) == 2
    assert [h["id"] for h in c.get(url, {"member_id": m.pk, "current": True}).json()["items"]] == [rejoin.json()["id"]]
    assert [h["id"] for h in c.get(url, {"member_id": m.pk, "current": False}).json()["items"]] == [j["id"]]
    everywhere = c.get(f"{URL}/memberships", {"member_id": m.pk}).json()["items"]
    assert len(everywhere) == 2
    assert Membership.objects.filter(member=m).count() == 2


def test_join_validation(world, make_client):
    c = make_client(world.tenant)
    other = c.post(URL, {"name": "另一个社群"}).json()
    url = f"{URL}/{other['id']}/memberships"
    wrong_group = c.post(url, {"member_id": world.other_member.pk, "group_id": world.group.pk})
    assert wrong_group.status_code == 422 and wrong_group.json()["details"]["field"] == "group_id"
    self_invite = c.post(url, {"member_id": world.other_member.pk, "inviter_id": world.other_member.pk})
    assert self_invite.status_code == 422
    assert c.post(url, {"member_id": world.other_member.pk, "join_source": "telepathy"}).status_code == 422
    Member.objects.filter(pk=world.other_member.pk).update(merged_into=world.member)
    merged = c.post(url, {"member_id": world.other_member.pk})
    assert merged.status_code == 409 and merged.json()["details"]["merged_into_id"] == world.member.pk
    assert not Membership.objects.filter(community_id=other["id"]).exists()


def test_roles(world, make_client):
    c = make_client(world.tenant)
    url = f"{URL}/{world.community.pk}/roles"
    resp = c.post(url, {"member_id": world.other_member.pk, "role": "content", "reward_note": "每月红包"})
    assert resp.status_code == 201, resp.content
    role = resp.json()
    assert role["assigned_by"] == "test" and role["until"] is None
    assert c.post(url, {"member_id": world.other_member.pk, "role": "content"}).status_code == 409
    assert c.post(url, {"member_id": world.other_member.pk, "role": "king"}).status_code == 422
    assert {r["role"] for r in c.get(url).json()} == {"advocate", "content"}
    ended = c.post(f"{URL}/roles/{role['id']}/end", {"reason": "换人"})
    assert ended.status_code == 200 and ended.json()["until"]
    assert c.post(f"{URL}/roles/{role['id']}/end", {}).status_code == 409
    assert {r["role"] for r in c.get(url).json()} == {"advocate"}
    assert {r["role"] for r in c.get(url, {"current": False}).json()} == {"advocate", "content"}
    assert RoleAssignment.objects.filter(community=world.community).count() == 2

