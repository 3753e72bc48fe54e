"""The community board's member series: the distinct members whose stays (one membership row per
group, re-joins are new rows) cover the end of each day. The fast path (members who do not change in
the window counted once in the database, the rest swept) must equal the obvious definition on any
history — several groups per member, overlapping and touching stays, leaves exactly at a cut,
stays from before the window and still open."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shequn.analytics.models import CommunityPresenceDay, PresenceStay
from shequn.analytics.presence import do_rebuild_presence, members_present
from shequn.analytics.selectors import _dates, members_per_day
from shequn.communities.models import ChatGroup, Community, Membership
from shequn.communities.services import (
    MembershipChange,
    do_join,
    do_leave,
    do_move_memberships,
    do_record_membership_changes,
)
from shequn.core.permissions import Principal
from shequn.members.models import Member

ZONE = ZoneInfo("Asia/Shanghai")
END = dt.date(2026, 11, 30)
DAYS = 10
ORIGIN = dt.datetime.combine(END - dt.timedelta(days=DAYS + 3), dt.time.min, tzinfo=ZONE)


def _obvious(rows: list[tuple[int, dt.datetime, dt.datetime | None]], dates: list[dt.date]) -> list[int]:
    out = []
    for d in dates:
        cut = dt.datetime.combine(d + dt.timedelta(days=1), dt.time.min, tzinfo=ZONE)
        out.append(len({m for m, j, left in rows if j < cut and (left is None or left >= cut)}))
    return out


# a stay: (member 0–5, group 0–2, start in hours from ORIGIN, length in hours or open); starts on
# whole days too, so joins and leaves land exactly on the cuts
STAY = st.tuples(st.integers(0, 5), st.integers(0, 2), st.one_of(st.integers(0, 16 * 24), st.integers(0, 16).map(
    lambda d: d * 24)), st.one_of(st.none(), st.integers(0, 6 * 24), st.integers(0, 6).map(lambda d: d * 24)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stays=st.lists(STAY, max_size=14))
def test_members_per_day_equals_the_definition(tenant, stays) -> None:
    Membership.objects.filter(tenant=tenant).delete()
    community, _ = Community.objects.get_or_create(tenant=tenant, name="板")
    groups = [ChatGroup.objects.get_or_create(tenant=tenant, community=community, platform="telegram",
                                              external_id=f"g{i}", defaults={"name": f"群{i}"})[0] for i in range(3)]
    members = [Member.objects.get_or_create(tenant=tenant, display_name=f"m{i}",
                                            defaults={"first_seen_at": ORIGIN})[0] for i in range(6)]
    open_slots: set[tuple[int, int]] = set()
    rows = []
    for m, g, start_h, length_h in stays:
        if length_h is None:
            if (m, g) in open_slots:  # one open stay per member and group (a database rule)
                continue
            open_slots.add((m, g))
        joined = ORIGIN + dt.timedelta(hours=start_h)
        left = None if length_h is None else joined + dt.timedelta(hours=length_h)
        Membership.objects.create(tenant=tenant, member=members[m], community=community, group=groups[g],
                                  joined_at=joined, left_at=left)
        rows.append((m, joined, left))
    dates = _dates(END, DAYS)
    ms = Membership.objects.filter(tenant=tenant, community=community)
    assert members_per_day(ms, dates, ZONE) == _obvious(rows, dates)


# an operation on the membership table through the communities writers: (kind, member 0–4, group 0–2,
# hours from ORIGIN — whole days too, so changes land on the cuts)
OP = st.tuples(st.sampled_from(["join", "leave", "join_api", "leave_api", "merge"]), st.integers(0, 4),
               st.integers(0, 2), st.one_of(st.integers(0, 16 * 24), st.integers(0, 16).map(lambda d: d * 24)))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OP, max_size=16))
def test_stored_members_present_equals_the_definition_after_random_joins_and_leaves(tenant, ops) -> None:
    """The stored count (kept by the membership listener on every write: bulk changes, single joins
    and leaves, a member merge; joins and leaves back-dated in any order) = the definition over the
    membership table, and = a rebuild of the stored rows."""
    Membership.objects.filter(tenant=tenant).delete()
    PresenceStay.objects.filter(tenant=tenant).delete()
    CommunityPresenceDay.objects.filter(tenant=tenant).delete()
    tenant.time_zone = "Asia/Shanghai"
    tenant.save(update_fields=["time_zone"])
    community, _ = Community.objects.get_or_create(tenant=tenant, name="板")
    groups = [ChatGroup.objects.get_or_create(tenant=tenant, community=community, platform="telegram",
                                              external_id=f"g{i}", defaults={"name": f"群{i}"})[0] for i in range(3)]
    members = [Member.objects.get_or_create(tenant=tenant, display_name=f"m{i}",
                                            defaults={"first_seen_at": ORIGIN})[0] for i in range(5)]
    system = Principal.system(tenant.pk)
    for kind, m, g, hours in ops:
        at = ORIGIN + dt.timedelta(hours=hours)
        member, group = members[m], groups[g]
        if kind == "join":
            do_record_membership_changes(tenant.pk, [MembershipChange.join(member.pk, community.pk, group.pk, at)])
        elif kind == "leave":
            do_record_membership_changes(tenant.pk, [MembershipChange.leave(member.pk, community.pk, group.pk, at)])
        elif kind == "join_api":
            do_join(system, member, community, group=group, joined_at=at)
        elif kind == "leave_api":
            row = Membership.objects.filter(tenant=tenant, member=member, group=group, left_at__isnull=True).first()
            if row is not None:
                do_leave(system, row, left_at=at)
        else:  # merge member m into the next one
            do_move_memberships(tenant.pk, member.pk, members[(m + 1) % 5].pk)
    dates = _dates(END, DAYS + 6)
    ms = Membership.objects.filter(tenant=tenant, community=community)
    expected = members_per_day(ms, dates, ZONE)
    assert members_present(tenant.pk, community.pk, dates) == expected
    stored = (sorted(PresenceStay.objects.filter(tenant=tenant).values_list("member_id", "first_day", "end_day")),
              sorted(CommunityPresenceDay.objects.filter(tenant=tenant).values_list("day", "entered", "exited")))
    do_rebuild_presence(tenant.pk)
    assert (sorted(PresenceStay.objects.filter(tenant=tenant).values_list("member_id", "first_day", "end_day")),
            sorted(CommunityPresenceDay.objects.filter(tenant=tenant).values_list("day", "entered", "exited"))) \
        == stored
    assert members_present(tenant.pk, community.pk, dates) == expected
