from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.utils import timezone

from shequn.activity.models import ActivityEvent
from shequn.communities.models import ChatGroup, Community, Membership
from shequn.members.models import Identity, Member

_ids = itertools.count(1)


@pytest.fixture
def community(tenant):
    c = Community.objects.create(tenant=tenant, name="车友会")
    Community.objects.filter(pk=c.pk).update(created_at=timezone.now() - dt.timedelta(days=400))
    c.refresh_from_db()
    return c


@pytest.fixture
def group(tenant, community):
    return ChatGroup.objects.create(tenant=tenant, community=community, platform="telegram", external_id="-100",
                                    name="车友 1 群")


@pytest.fixture
def make_member(tenant, community, group):
    def make(name="会员", *, joined_days_ago=100, last_active=None, tenant_obj=None, join=True, now=None):
        t = tenant_obj or tenant
        now = now or timezone.now()
        m = Member.objects.create(tenant=t, display_name=name, first_seen_at=now - dt.timedelta(days=joined_days_ago),
                                  last_active_at=last_active)
        Identity.objects.create(tenant=t, member=m, platform="telegram", external_id=f"u{m.pk}", verified=True)
        if join and t == tenant:
            Membership.objects.create(tenant=t, member=m, community=community, group=group,
                                      joined_at=now - dt.timedelta(days=joined_days_ago))
        return m

    return make


@pytest.fixture
def event(tenant, community, group):
    def make(member, kind, when, payload=None, *, comm=True):
        return ActivityEvent.objects.create(
            tenant=tenant, member=member, community=community if comm else None, group=group if comm else None,
            platform="telegram", platform_event_id=f"e{next(_ids)}", kind=kind, occurred_at=when,
            received_at=when, payload=payload or {})

    return make
