"""The set-based membership writers used by activity ingest, member import and member merge."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from shequn.communities.models import Community, Membership
from shequn.communities.services import MembershipChange, do_move_memberships, do_record_membership_changes
from shequn.core.models import Tenant
from shequn.members.models import Member


def _member(tenant: Tenant, name: str) -> Member:
    return Member.objects.create(tenant=tenant, display_name=name, first_seen_at=timezone.now())


def test_joins_and_leaves_apply_in_order_idempotently_and_drop_a_foreign_inviter(tenant: Tenant) -> None:
    c = Community.objects.create(tenant=tenant, name="车友会")
    a, b = _member(tenant, "a"), _member(tenant, "b")
    other = Tenant.objects.create(slug="other", name="other")
    stranger = _member(other, "x")
    t0 = timezone.now() - dt.timedelta(hours=3)
    changes = [
        MembershipChange.join(a.pk, c.pk, None, t0, source="invite_link", inviter_id=stranger.pk),
        MembershipChange.join(a.pk, c.pk, None, t0 + dt.timedelta(minutes=1)),  # already open: no second row
        MembershipChange.leave(a.pk, c.pk, None, t0 + dt.timedelta(hours=1), reason="bye"),
        MembershipChange.join(a.pk, c.pk, None, t0 + dt.timedelta(hours=2), source="nonsense", inviter_id=b.pk),
        MembershipChange.join(b.pk, c.pk, None, t0, inviter_id="7"),
    ]
    assert do_record_membership_changes(tenant.pk, changes) == 4
    rows = list(Membership.objects.filter(member=a).order_by("joined_at"))
    assert [(r.join_source, r.inviter_id, r.exit_reason, r.left_at is None) for r in rows] == [
        ("invite_link", None, "bye", False), ("platform", b.pk, "", True)]
    assert Membership.objects.get(member=b).inviter_id is None


def test_move_memberships_closes_the_twin_and_keeps_the_earlier_join(tenant: Tenant) -> None:
    c = Community.objects.create(tenant=tenant, name="车友会")
    keep, merge, friend = _member(tenant, "keep"), _member(tenant, "merge"), _member(tenant, "friend")
    early = timezone.now() - dt.timedelta(days=10)
    Membership.objects.create(tenant=tenant, member=keep, community=c, joined_at=timezone.now())
    Membership.objects.create(tenant=tenant, member=merge, community=c, joined_at=early)
    Membership.objects.create(tenant=tenant, member=friend, community=c, joined_at=early, inviter=merge)
    assert do_move_memberships(tenant.pk, merge.pk, keep.pk) == 1
    open_rows = Membership.objects.filter(member=keep, left_at__isnull=True)
    assert open_rows.count() == 1 and open_rows.get().joined_at == early
    assert Membership.objects.get(member=keep, left_at__isnull=False).exit_reason == "merged"
    assert Membership.objects.get(member=friend).inviter_id == keep.pk
