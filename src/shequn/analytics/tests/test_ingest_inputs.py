"""Issue 12 "accepted here, rejected later": ingest stores any JSON payload, and the journey
recomputation reads ``inviter_member_id`` / ``live_session_id`` from a join's payload into 64-bit
columns. A payload number that does not fit (or is not a number) must not break the refresh for the
whole tenant: it reads as "none" (0)."""

from __future__ import annotations

import pytest

from shequn.analytics import services
from shequn.analytics.models import MemberJourney
from shequn.core.models import Tenant

from .world import at, event, ingest, make_world

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("bad", [10**30, -(10**30), "99999999999999999999999", 1.5e300, "abc", [1], -5])
def test_out_of_range_payload_ids_do_not_break_the_refresh(tenant: Tenant, bad):
    w = make_world(tenant, n_members=2)
    join = event(w, "join", 0, 0, at(0))
    join["payload"] = {"inviter_member_id": bad, "live_session_id": bad}
    ingest(w, [join, event(w, "join", 1, 0, at(0))])
    services.do_refresh(tenant.pk)
    journey = MemberJourney.objects.get(tenant=tenant, member_id=w.members[0].pk)
    assert (journey.inviter_id, journey.live_session_id) == (0, 0)
    assert MemberJourney.objects.filter(tenant=tenant, member_id=w.members[1].pk).exists()


def test_in_range_payload_ids_are_kept(tenant: Tenant):
    w = make_world(tenant, n_members=2)
    join = event(w, "join", 0, 0, at(0))
    join["payload"] = {"inviter_member_id": w.members[1].pk, "live_session_id": 7}
    ingest(w, [join])
    services.do_refresh(tenant.pk)
    journey = MemberJourney.objects.get(tenant=tenant, member_id=w.members[0].pk)
    assert (journey.inviter_id, journey.live_session_id) == (w.members[1].pk, 7)
