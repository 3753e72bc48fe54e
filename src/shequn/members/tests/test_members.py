import pytest
from django.utils import timezone

from shequn.activity.models import ActivityEvent
from shequn.communities.models import Community, Membership, RoleAssignment
from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.models import AuditLog
from shequn.core.permissions import Principal
from shequn.members import selectors
from shequn.members.models import Identity, Member, MemberTag
from shequn.members.services import (
    check_phone,
    do_add_identity,
    do_create_member,
    do_merge_members,
    do_tag_member,
    do_update_member,
)


@pytest.mark.parametrize(("raw", "clean"), [
    ("13812348888", "13812348888"), ("+86 138-1234-8888", "13812348888"), ("008613812348888", "13812348888"),
    ("13812348888.0", "13812348888"), ("", ""), ("+14155550100", "+14155550100"),
])
def test_check_phone_normalises(raw, clean):
    assert check_phone(raw) == clean


@pytest.mark.parametrize("raw", ["1381234888", "23812348888", "abc", "138123488889"])
def test_check_phone_rejects(raw):
    with pytest.raises(Invalid) as exc:
        check_phone(raw)
    assert exc.value.details == {"field": "phone"}


def test_create_member_audits_without_pii(system):
    m = do_create_member(system, display_name="小王", phone="13812348888",
                         identities=[{"platform": "wecom", "external_id": "wm1"}], tags=["车主"])
    assert m.identities.count() == 1 and selectors.tag_names(system.tenant_id, m.pk) == ["车主"]
    log = AuditLog.objects.get(action="member.create")
    assert "13812348888" not in str(log.data)
    do_update_member(system, m, phone="13900001111")
    assert "13900001111" not in str(AuditLog.objects.get(action="member.update").data)


def test_identity_belongs_to_one_member(system):
    a = do_create_member(system, display_name="a")
    b = do_create_member(system, display_name="b")
    do_add_identity(system, a, platform="telegram", external_id="42")
    assert do_add_identity(system, a, platform="telegram", external_id="42").member_id == a.pk
    with pytest.raises(Conflict):
        do_add_identity(system, b, platform="telegram", external_id="42")


def test_update_rejects_unknown_fields(system):
    m = do_create_member(system, display_name="a")
    with pytest.raises(Invalid):
        do_update_member(system, m, tenant_id=999)
    with pytest.raises(Invalid):
        do_update_member(system, m, display_name="  ")


def test_selectors_never_cross_tenants(system, other_tenant):
    other = do_create_member(Principal.system(other_tenant.pk), display_name="别人")
    with pytest.raises(NotFound):
        selectors.get_member(system.tenant_id, other.pk)
    assert not selectors.members(system.tenant_id).filter(pk=other.pk).exists()


def test_merge_moves_everything_and_keeps_tombstone(system, tenant):
    community = Community.objects.create(tenant=tenant, name="c")
    keep = do_create_member(system, display_name="王先生", identities=[{"platform": "wecom", "external_id": "wm1"}],
                            tags=["VIP"])
    dup = do_create_member(system, display_name="老王", phone="13812348888",
                           identities=[{"platform": "telegram", "external_id": "77"}], tags=["VIP", "车主"])
    Membership.objects.create(tenant=tenant, member=keep, community=community, joined_at=timezone.now())
    early = timezone.now() - timezone.timedelta(days=30)
    Membership.objects.create(tenant=tenant, member=dup, community=community, joined_at=early)
    RoleAssignment.objects.create(tenant=tenant, member=dup, community=community, role="advocate",
                                  since=timezone.now())
    ActivityEvent.objects.create(tenant=tenant, member=dup, platform="telegram", platform_event_id="1",
                                 kind="message", occurred_at=timezone.now(), received_at=timezone.now())

    do_merge_members(system, keep=keep, merge=dup, reason="同一个人")

    keep.refresh_from_db()
    dup.refresh_from_db()
    assert dup.merged_into_id == keep.pk
    assert keep.phone == "13812348888"
    assert set(Identity.objects.filter(member=keep).values_list("platform", flat=True)) == {"wecom", "telegram"}
    assert sorted(MemberTag.objects.filter(member=keep).values_list("tag__name", flat=True)) == ["VIP", "车主"]
    assert Membership.objects.filter(member=keep, left_at__isnull=True).get().joined_at == early
    assert RoleAssignment.objects.get().member_id == keep.pk
    assert ActivityEvent.objects.get().member_id == keep.pk
    assert not selectors.members(tenant.pk).filter(pk=dup.pk).exists()
    assert selectors.member_by_identity(tenant.pk, "telegram", "77") == keep
    audit = AuditLog.objects.get(action="member.merge")
    assert audit.reason == "同一个人" and audit.data["merged"] == dup.pk
    with pytest.raises(Conflict):
        do_merge_members(system, keep=keep, merge=dup)
    with pytest.raises(Invalid):
        do_merge_members(system, keep=keep, merge=keep)


def test_merge_refuses_other_tenant(system, other_tenant):
    mine = do_create_member(system, display_name="a")
    theirs = do_create_member(Principal.system(other_tenant.pk), display_name="b")
    with pytest.raises(Invalid):
        do_merge_members(system, keep=mine, merge=theirs)
    assert Member.objects.get(pk=theirs.pk).merged_into_id is None


def test_merge_suggestions_only_exact_matches(system):
    a = do_create_member(system, display_name="小王", phone="13812348888")
    b = do_create_member(system, display_name="王", phone="13812348888")
    do_create_member(system, display_name="小王")  # same nickname: never suggested
    assert selectors.merge_suggestions(system.tenant_id) == [{"reason": "phone", "member_ids": [a.pk, b.pk]}]


def test_tags_are_tenant_scoped(system, other_tenant):
    m = do_create_member(system, display_name="a")
    other_m = do_create_member(Principal.system(other_tenant.pk), display_name="b", tags=["VIP"])
    other_tag = other_m.member_tags.get().tag
    with pytest.raises(Invalid):
        do_tag_member(system, m, [other_tag])
