"""The join-request queue through the API (list / approve / decline, the platform hears the answer
through the outbox), the entry threshold on a request an integration reports through the activity
API, and the partner's own group (tier privilege): opened through the API and the portal, owned by
the partner, reached through the partner's invite link, shown to the partner as its owner."""

from __future__ import annotations

from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from shequn.activity.services import do_ingest
from shequn.commerce.services import do_create_order, do_seed_tiers
from shequn.commerce.tests.conftest import pay
from shequn.communities.models import ChatGroup, Community, JoinRequest, Membership
from shequn.communities.services import do_request_join
from shequn.connectors.models import OutboxAction
from shequn.core.models import StaffRole
from shequn.core.permissions import Principal
from shequn.portal.services import magic_link_url
from shequn.referrals.models import LinkEvent
from shequn.referrals.services import do_get_or_create_link
from shequn.testing.factories import StaffFactory

URL = "/api/v1/communities"


def _ask(world, user: str, n: int) -> None:
    res = do_ingest(world.tenant.pk, [{
        "platform": "telegram", "event_id": f"jr-{user}-{n}", "kind": "join_request", "sender": user,
        "group": world.group.external_id, "occurred_at": timezone.now().isoformat(),
        "payload": {"message": "你好, 想进群"}}])
    assert res.stored == 1, res


def test_api_queue_lists_approves_and_declines_and_the_platform_hears_it(world, make_client):
    Community.objects.filter(pk=world.community.pk).update(entry_threshold="approval")
    _ask(world, "tg-a", 1)
    _ask(world, "tg-b", 2)
    c = make_client(world.tenant)
    page = c.get(f"{URL}/join-requests", {"status": "pending"}).json()
    assert [(r["via"], r["group_id"], r["message"]) for r in page["items"]] == [
        ("telegram", world.group.pk, "你好, 想进群")] * 2
    first, second = (r["id"] for r in page["items"])
    ok = c.post(f"{URL}/join-requests/{first}/approve", {"note": "欢迎"})
    assert ok.status_code == 200 and ok.json()["status"] == "approved", ok.content
    assert c.post(f"{URL}/join-requests/{first}/decline", {}).status_code == 409  # decided once
    assert c.post(f"{URL}/join-requests/{second}/decline", {"note": "x" * 201}).status_code == 422
    assert c.post(f"{URL}/join-requests/{second}/decline", {"note": "资料不全"}).json()["status"] == "rejected"
    assert c.post(f"{URL}/join-requests/999999/approve", {}).status_code == 404
    assert c.get(f"{URL}/join-requests", {"status": "nope"}).status_code == 422
    actions = OutboxAction.objects.filter(tenant=world.tenant).order_by("pk")
    assert [(a.kind, a.group_id, a.idempotency_key) for a in actions] == [
        ("approve_join", world.group.pk, f"join-request:{first}"),
        ("decline_join", world.group.pk, f"join-request:{second}")]


def test_portal_request_approval_opens_the_membership_without_a_platform_action(world, make_client):
    Community.objects.filter(pk=world.community.pk).update(entry_threshold="approval")
    world.community.refresh_from_db()
    req = do_request_join(world.other_member, world.community, message="想加入")
    assert req.via == "portal" and req.status == "pending"
    assert do_request_join(world.other_member, world.community).pk == req.pk  # one pending request
    c = make_client(world.tenant)
    assert c.post(f"{URL}/join-requests/{req.pk}/approve", {}).status_code == 200
    assert Membership.objects.filter(member=world.other_member, community=world.community,
                                     left_at__isnull=True).exists()
    assert not OutboxAction.objects.filter(tenant=world.tenant).exists()


def _partner(world) -> Principal:
    system = Principal.system(world.tenant.pk)
    _entry, partner = do_seed_tiers(system, world.community.pk)
    order = do_create_order(system, member_id=world.other_member.pk,
                            lines=[{"sku_id": partner.skus.get().pk, "quantity": 1}])
    pay(system, order.pk)
    return system


def test_partner_opens_own_group_and_their_link_leads_there(world, make_client):
    c = make_client(world.tenant)
    url = f"{URL}/{world.community.pk}/partner-groups"
    body = {"member_id": world.other_member.pk, "platform": "telegram", "external_id": "-100777", "name": "老王的群"}
    refused = c.post(url, body)
    assert refused.status_code == 403, refused.content  # no partner tier yet
    _entry_only = do_seed_tiers(Principal.system(world.tenant.pk), world.community.pk)[0]
    order = do_create_order(Principal.system(world.tenant.pk), member_id=world.member.pk,
                            lines=[{"sku_id": _entry_only.skus.get().pk, "quantity": 1}])
    pay(Principal.system(world.tenant.pk), order.pk)
    assert c.post(url, {**body, "member_id": world.member.pk}).status_code == 403  # the entry tier has no such right

    _partner(world)
    opened = c.post(url, body)
    assert opened.status_code == 201, opened.content
    group = ChatGroup.objects.get(pk=opened.json()["id"])
    assert group.owner_id == world.other_member.pk and opened.json()["owner_id"] == world.other_member.pk
    assert c.post(url, {**body, "external_id": "-100888"}).json()["id"] == group.pk  # one own group
    assert c.post(url, {**body, "platform": "icq"}).status_code == 422

    # whoever comes through the partner's link is shown the partner's group only
    link = do_get_or_create_link(Principal.system(world.tenant.pk), member_id=world.other_member.pk,
                                 community_id=world.community.pk)
    html = Client().get(f"/r/{link.code}").content.decode()
    assert "老王的群" in html and world.group.name not in html
    assert LinkEvent.objects.get(link=link, kind="click").group_id == group.pk


def test_partner_opens_the_group_in_the_portal_and_sees_it_as_owner(world, client):
    _partner(world)
    magic = magic_link_url(world.other_member, world.tenant).split("/portal/", 1)[1]
    assert client.post(f"/portal/{magic}").status_code == 302  # the partner signs in
    page = client.get(f"/portal/{world.tenant.slug}/c/{world.community.pk}/").content.decode()
    assert "开我自己的群" in page
    r = client.post(f"/portal/{world.tenant.slug}/c/{world.community.pk}/own-group/",
                    {"platform": "matrix", "external_id": "!own:example.org", "name": "合伙人一群"})
    assert r.status_code == 302
    group = ChatGroup.objects.get(owner=world.other_member)
    assert group.platform == "matrix" and group.community_id == world.community.pk
    home = client.get(f"/portal/{world.tenant.slug}/").content.decode()
    assert "合伙人一群" in home and "owned-groups" in home


def test_console_queue_has_approve_and_decline_buttons_in_chinese(world):
    Community.objects.filter(pk=world.community.pk).update(entry_threshold="approval")
    _ask(world, "tg-c", 3)
    _ask(world, "tg-d", 4)
    first, second = JoinRequest.objects.filter(tenant=world.tenant).order_by("pk")
    c = Client()
    c.force_login(StaffFactory(tenant=world.tenant, role=StaffRole.OWNER).user)
    c.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    page = c.get(reverse("admin:communities_joinrequest_changelist")).content.decode()
    assert "入群申请" in page and "待审核" in page
    assert reverse("admin:communities_joinrequest_approve_row", args=[first.pk]) in page
    assert reverse("admin:communities_joinrequest_reject_row", args=[second.pk]) in page
    # the row buttons are links: a GET only asks for confirmation and changes nothing
    listing = reverse("admin:communities_joinrequest_changelist")
    ask = c.get(reverse("admin:communities_joinrequest_approve_row", args=[first.pk]), HTTP_REFERER=listing)
    assert ask.status_code == 200 and "确认通过" in ask.content.decode() and 'method="post"' in ask.content.decode()
    assert JoinRequest.objects.get(pk=first.pk).status == "pending"
    assert not OutboxAction.objects.filter(tenant=world.tenant).exists()
    done = c.post(reverse("admin:communities_joinrequest_approve_row", args=[first.pk]), {"next": listing})
    assert done.status_code == 302 and done["Location"] == listing
    c.post(reverse("admin:communities_joinrequest_reject_row", args=[second.pk]), {"next": "https://evil.example/"})
    assert JoinRequest.objects.get(pk=first.pk).status == "approved"
    assert JoinRequest.objects.get(pk=second.pk).status == "rejected"
    assert sorted(OutboxAction.objects.filter(tenant=world.tenant).values_list("kind", flat=True)) == [
        "approve_join", "decline_join"]
