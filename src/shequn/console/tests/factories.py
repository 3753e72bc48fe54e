"""Small, fast seed data for the console tests (and the screenshot script)."""

from __future__ import annotations

import datetime as dt
import random

from django.utils import timezone

from shequn.activity.models import ActivityEvent, EventKind
from shequn.communities.models import ChatGroup, Community, CommunityRole, JoinSource, Membership, RoleAssignment
from shequn.core.models import StaffMembership, StaffRole, Tenant
from shequn.core.services import do_create_operator
from shequn.members.models import Identity, LifecycleStage, Member, MemberTag, Tag

PASSWORD = "pass-word-123"


def staff(tenant: Tenant, role: str = StaffRole.OWNER, username: str | None = None) -> StaffMembership:
    return do_create_operator(tenant=tenant, username=username or f"{tenant.slug}-{role}", password=PASSWORD,
                              role=role, display_name=f"{tenant.name} {role}")


def seed(tenant: Tenant, *, members: int = 30, days: int = 30, seed_value: int = 1, prefix: str = "") -> dict:
    rnd = random.Random(seed_value)
    now = timezone.now()
    community = Community.objects.create(tenant=tenant, name=f"{prefix}车友会", theme="自驾与保养",
                                         purpose=Community.Purpose.SHARING, category=Community.Category.INTEREST,
                                         stage=Community.Stage.GROWING)
    other = Community.objects.create(tenant=tenant, name=f"{prefix}护肤群", theme="敏感肌护理",
                                     purpose=Community.Purpose.SALES, category=Community.Category.PRODUCT)
    g1 = ChatGroup.objects.create(tenant=tenant, community=community, platform="wecom", external_id=f"{prefix}wr1",
                                  name=f"{prefix}车友一群")
    g2 = ChatGroup.objects.create(tenant=tenant, community=community, platform="telegram",
                                  external_id=f"{prefix}-1001", name=f"{prefix}车友 TG 群")
    vip = Tag.objects.create(tenant=tenant, name=f"{prefix}车主")
    stages = list(LifecycleStage.values)
    people = []
    for i in range(members):
        m = Member.objects.create(
            tenant=tenant, display_name=f"{prefix}会员{i:03d}", phone=f"13{rnd.randint(0, 9)}{i:08d}",
            source_channel=rnd.choice(["线下活动", "直播", "老客户"]),
            first_seen_at=now - dt.timedelta(days=days + 5), last_active_at=now - dt.timedelta(days=rnd.randint(0, 20)),
            lifecycle_stage=stages[i % len(stages)], relationship_level=i % 5,
        )
        Identity.objects.create(tenant=tenant, member=m, platform="wecom", external_id=f"{prefix}wm{i}")
        if i % 3 == 0:
            MemberTag.objects.create(tenant=tenant, member=m, tag=vip)
        joined = now - dt.timedelta(days=rnd.randint(0, days - 1), hours=rnd.randint(0, 23))
        left = joined + dt.timedelta(days=3) if i % 7 == 0 and joined + dt.timedelta(days=3) < now else None
        Membership.objects.create(tenant=tenant, member=m, community=community, group=g1 if i % 2 else g2,
                                  joined_at=joined, left_at=left, join_source=JoinSource.QR)
        people.append(m)
    RoleAssignment.objects.create(tenant=tenant, community=community, member=people[0], role=CommunityRole.OWNER,
                                  since=now - dt.timedelta(days=days))
    RoleAssignment.objects.create(tenant=tenant, community=community, member=people[1],
                                  role=CommunityRole.ADVOCATE, since=now - dt.timedelta(days=5), reward_note="每月红包")
    events = []
    for d in range(days):
        day = now - dt.timedelta(days=d)
        for k in range(rnd.randint(3, 12)):
            m = rnd.choice(people)
            events.append(ActivityEvent(
                tenant=tenant, member=m, community=community, group=g1, platform="wecom",
                platform_event_id=f"{prefix}e{d}-{k}", kind=EventKind.MESSAGE,
                occurred_at=day - dt.timedelta(minutes=rnd.randint(0, 600)), received_at=day, payload={"text": "hi"},
            ))
    ActivityEvent.objects.bulk_create(events)
    return {"community": community, "other": other, "groups": [g1, g2], "members": people, "tag": vip}
