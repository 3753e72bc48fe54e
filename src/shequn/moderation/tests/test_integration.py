"""Moderation's wiring into the other engines: staff exemption by community role (when the platform
says nothing), and member standing refusing lottery entries and red-packet claims (registered with
engagement in ``ModerationConfig.ready``)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from shequn.communities.models import ChatGroup, Community, CommunityRole, Membership, RoleAssignment
from shequn.core.errors import Forbidden
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.engagement.models import ContentItem
from shequn.engagement.services import (
    do_claim_red_packet,
    do_create_lottery,
    do_create_red_packet,
    do_enter_lottery,
)
from shequn.engagement.services.standing import _STANDING_CHECKS
from shequn.members.models import Identity, Member
from shequn.moderation.models import Strike, Violation
from shequn.moderation.pipeline import MessageContext
from shequn.moderation.selectors import campaign_texts, moderator_for, standing_problem
from shequn.moderation.services import do_save_policy

from .test_engine import AD, send


def _member(tenant: Tenant, group: ChatGroup, external_id: str) -> Member:
    m = Member.objects.create(tenant=tenant, display_name=external_id, first_seen_at=timezone.now())
    Identity.objects.create(tenant=tenant, member=m, platform="matrix", external_id=external_id, verified=True)
    Membership.objects.create(tenant=tenant, member=m, community=group.community, group=group,
                              joined_at=timezone.now() - dt.timedelta(days=30))
    return m


# ------------------------------------------------------------------------------------ staff by role

@pytest.mark.parametrize(("role", "exempt"), [(CommunityRole.OWNER, True), (CommunityRole.CUSTOMER_SERVICE, True),
                                              (CommunityRole.ADVOCATE, False)])
def test_staff_roles_are_exempt_without_a_platform_flag(tenant, system, group, role, exempt):
    # role holders in general are not exempt here: only the staff roles, through exempt_staff
    do_save_policy(system, group.community_id, exempt_role_holders=False)
    m = _member(tenant, group, "@cs:hs.test")
    RoleAssignment.objects.create(tenant=tenant, community=group.community, member=m, role=role,
                                  since=timezone.now() - dt.timedelta(days=1))
    send(tenant, AD, sender="@cs:hs.test")  # no sender_is_admin in the payload
    v = Violation.objects.get(tenant=tenant)
    assert (v.status == Violation.Status.EXEMPT) is exempt
    assert bool(v.actions) is not exempt


def test_an_ended_staff_role_no_longer_exempts(tenant, system, group):
    do_save_policy(system, group.community_id, exempt_role_holders=False)
    m = _member(tenant, group, "@old:hs.test")
    RoleAssignment.objects.create(tenant=tenant, community=group.community, member=m, role=CommunityRole.OWNER,
                                  since=timezone.now() - dt.timedelta(days=10),
                                  until=timezone.now() - dt.timedelta(days=1))
    send(tenant, AD, sender="@old:hs.test")
    assert Violation.objects.get(tenant=tenant).status == Violation.Status.ACTIONED


def test_staff_exemption_can_be_switched_off(tenant, system, group):
    do_save_policy(system, group.community_id, exempt_role_holders=False, exempt_staff=False)
    m = _member(tenant, group, "@boss:hs.test")
    RoleAssignment.objects.create(tenant=tenant, community=group.community, member=m, role=CommunityRole.OWNER,
                                  since=timezone.now() - dt.timedelta(days=1))
    send(tenant, AD, sender="@boss:hs.test", sender_is_admin=True)
    assert Violation.objects.get(tenant=tenant).status == Violation.Status.ACTIONED


# ------------------------------------------------------------------------------------------ standing

def test_the_wiring_registers_moderations_standing_check():
    assert standing_problem in _STANDING_CHECKS


def _strike(tenant, group, member, kind, *, until=None, ago=dt.timedelta(hours=1)):
    v = Violation.objects.create(tenant=tenant, community=group.community, group=group, member=member,
                                 platform="matrix", verdict="ad", score=0.99, occurred_at=timezone.now() - ago)
    return Strike.objects.create(tenant=tenant, community=group.community, member=member, violation=v, kind=kind,
                                 created_at=timezone.now() - ago, until=until)


def _lottery(tenant, group):
    now = timezone.now()
    return do_create_lottery(Principal.system(tenant.pk), title="抽奖", closes_at=now + dt.timedelta(days=1),
                             draw_at=now + dt.timedelta(days=1), prizes=[("保养", 1)],
                             community_id=group.community_id)


def test_a_banned_member_cannot_enter_a_lottery_or_claim_a_red_packet(tenant, system, group):
    bad, good = _member(tenant, group, "@bad:hs.test"), _member(tenant, group, "@good:hs.test")
    _strike(tenant, group, bad, Strike.Kind.BAN, ago=dt.timedelta(days=60))  # a ban never expires
    lot = _lottery(tenant, group)
    with pytest.raises(Forbidden) as e:
        do_enter_lottery(tenant.pk, lot.pk, bad.pk)
    assert e.value.code == "bad_standing" and "封禁" in e.value.message and "抽奖" in e.value.message
    packet = do_create_red_packet(system, total=100, count=2, currency="cash", group_id=group.pk)
    with pytest.raises(Forbidden) as e:
        do_claim_red_packet(tenant.pk, packet.pk, bad.pk)
    assert "封禁" in e.value.message and "红包" in e.value.message
    # a clean member is not affected
    do_enter_lottery(tenant.pk, lot.pk, good.pk)
    assert do_claim_red_packet(tenant.pk, packet.pk, good.pk).amount >= 1


def test_mute_and_recent_strikes_refuse_until_they_lapse_or_are_revoked(tenant, group):
    m = _member(tenant, group, "@m:hs.test")
    mute = _strike(tenant, group, m, Strike.Kind.MUTE, until=timezone.now() + dt.timedelta(hours=5))
    assert "禁言" in standing_problem(tenant.pk, m.pk)
    lot = _lottery(tenant, group)
    with pytest.raises(Forbidden) as e:
        do_enter_lottery(tenant.pk, lot.pk, m.pk)
    assert "禁言" in e.value.message
    Strike.objects.filter(pk=mute.pk).update(revoked_at=timezone.now())  # the violation was reversed
    assert standing_problem(tenant.pk, m.pk) is None
    warn = _strike(tenant, group, m, Strike.Kind.WARN, ago=dt.timedelta(days=2))
    assert "警告" in standing_problem(tenant.pk, m.pk)
    Strike.objects.filter(pk=warn.pk).update(created_at=timezone.now() - dt.timedelta(days=8))
    assert standing_problem(tenant.pk, m.pk) is None
    do_enter_lottery(tenant.pk, lot.pk, m.pk)


@pytest.mark.django_db
def test_operators_content_library_is_the_campaign_whitelist(tenant: Tenant, community: Community) -> None:
    """Issue 16: engagement's content items (wired in ModerationConfig.ready) are the tenant's own
    campaign texts; a member who is not new relaying one word for word is not advertising."""
    text = "拉五个好友进群，截图给我，送精美礼品一份，名额有限"
    regular = MessageContext(member_joined_days=40, message_index=30)
    assert moderator_for(tenant.pk, community.pk).classify(text, regular).verdict == "ad"
    ContentItem.objects.create(tenant=tenant, title="拉新活动", body=text)
    ContentItem.objects.create(tenant=tenant, title="海报", kind=ContentItem.Kind.IMAGE, body="图片说明")
    assert campaign_texts(tenant.pk) == (text,)
    moderator = moderator_for(tenant.pk, community.pk)
    assert moderator.classify(text, regular).verdict == "ok"
    assert moderator.classify(text, MessageContext(member_joined_days=0.1, message_index=0)).verdict == "ad"
