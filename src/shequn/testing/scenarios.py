"""Scenario builders: several related objects a group of tests starts from, built in one call.

- :func:`api_world` — a tenant's small populated world for the API tests (members with a phone,
  tags and an identity, a community with a group, a membership, a role, one ingested event, an API
  key); the plugin's ``world`` / ``other_world`` fixtures.
- :func:`seeded_club` — the console's club: two communities, groups on two platforms, members with
  identities, tags, memberships (some left), roles and a month of messages.
- :func:`paid_community` — the portal's paid community (社群2.0): a 19.9 元 entry tier and a
  1999 元 partner tier with a 100 % / 80 % one-level commission plan.

Plus the few read-backs the scenarios' tests share (:func:`member_balance`, :func:`last_sms_code`).
"""

from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass

from django.utils import timezone

from shequn.activity.models import ActivityEvent, EventKind
from shequn.activity.services import do_ingest
from shequn.commerce.models import Product
from shequn.commerce.services import do_seed_tiers
from shequn.communities.models import ChatGroup, Community, CommunityRole, Membership, RoleAssignment
from shequn.communities.services import do_add_group, do_assign_role, do_create_community, do_join
from shequn.core.models import ApiKey, AuditLog, Tenant
from shequn.core.permissions import Principal
from shequn.core.services import do_create_api_key
from shequn.ledger.selectors import account_balance
from shequn.members.models import LifecycleStage, Member, MemberTag, Tag
from shequn.members.services import do_create_member
from shequn.portal.models import SandboxSms
from shequn.referrals.models import ReferralPolicy
from shequn.referrals.services import do_create_plan

from .factories import (
    ChatGroupFactory,
    CommunityFactory,
    IdentityFactory,
    MemberFactory,
    MembershipFactory,
    TagFactory,
)

# --- the API's world ----------------------------------------------------------------------------


def api_key_for(tenant: Tenant, scopes: list[str] | None = None, name: str = "test") -> tuple[ApiKey, str]:
    """A real API key of ``tenant`` (made through the service): ``(key, secret)``."""
    return do_create_api_key(Principal.system(tenant.pk), name=name, scopes=scopes or ["*"])


@dataclass
class ApiWorld:
    tenant: Tenant
    member: Member
    other_member: Member
    community: Community
    group: ChatGroup
    membership: Membership
    role: RoleAssignment
    tag: Tag
    api_key: ApiKey
    event_id: int
    audit: AuditLog


def api_world(tenant: Tenant, label: str) -> ApiWorld:
    """A member with phone, tags and a telegram identity, a second member, a community with a
    telegram group, an open membership, a role, one ingested event and an API key — every object
    made through its service, with ``label`` in its names."""
    p = Principal.system(tenant.pk)
    n = tenant.pk
    member = do_create_member(p, display_name=f"{label}会员", phone=f"1380000{n:04d}",
                              email=f"t{n}@example.cn", tags=[f"{label}标签"],
                              identities=[{"platform": "telegram", "external_id": f"tg-{label}"}])
    other = do_create_member(p, display_name=f"{label}另一位", phone=f"1390000{n:04d}")
    community = do_create_community(p, name=f"{label}社群", theme=f"{label}主题")
    group = do_add_group(p, community, platform="telegram", external_id=f"room-{label}", name=f"{label}一群")
    membership = do_join(p, member, community, group=group)
    role = do_assign_role(p, community, member, role="advocate")
    tag = Tag.objects.get(tenant=tenant, name=f"{label}标签")
    key, _secret = api_key_for(tenant, ["members.read"], name=f"{label}-key")
    res = do_ingest(tenant.pk, [{
        "platform": "telegram", "event_id": f"ev-{label}-1", "kind": "message", "sender": f"tg-{label}",
        "group": f"room-{label}", "occurred_at": (timezone.now() - dt.timedelta(hours=1)).isoformat(),
        "payload": {"text": f"{label}你好"},
    }])
    assert res.stored == 1, res
    audit = AuditLog.objects.filter(tenant=tenant).order_by("-pk").first()
    assert audit is not None
    return ApiWorld(tenant=tenant, member=member, other_member=other, community=community, group=group,
                    membership=membership, role=role, tag=tag, api_key=key, event_id=res.event_ids[0], audit=audit)


# --- the console's club -------------------------------------------------------------------------


@dataclass
class SeededClub:
    community: Community
    other: Community
    groups: list[ChatGroup]
    members: list[Member]
    tag: Tag


def seeded_club(tenant: Tenant, *, members: int = 30, days: int = 30, seed_value: int = 1,
                prefix: str = "") -> SeededClub:
    """A car club (WeCom and Telegram groups) and a skincare community, ``members`` members with a
    WeCom identity spread over the lifecycle stages and relationship levels (every third tagged
    车主, every seventh left three days after joining), an owner and an advocate, and 3–12
    messages a day for ``days`` days. Deterministic for a given ``seed_value``; ``prefix`` keeps
    two tenants' names apart."""
    rnd = random.Random(seed_value)
    now = timezone.now()
    community = CommunityFactory.create(tenant=tenant, name=f"{prefix}车友会", theme="自驾与保养",
                                 purpose=Community.Purpose.SHARING, category=Community.Category.INTEREST,
                                 stage=Community.Stage.GROWING)
    other = CommunityFactory.create(tenant=tenant, name=f"{prefix}护肤群", theme="敏感肌护理",
                             purpose=Community.Purpose.SALES, category=Community.Category.PRODUCT)
    g1 = ChatGroupFactory.create(tenant=tenant, community=community, platform="wecom", external_id=f"{prefix}wr1",
                          name=f"{prefix}车友一群")
    g2 = ChatGroupFactory.create(tenant=tenant, community=community, platform="telegram", external_id=f"{prefix}-1001",
                          name=f"{prefix}车友 TG 群")
    vip = TagFactory.create(tenant=tenant, name=f"{prefix}车主")
    stages = list(LifecycleStage.values)
    people = []
    for i in range(members):
        m = MemberFactory.create(
            tenant=tenant, display_name=f"{prefix}会员{i:03d}", phone=f"13{rnd.randint(0, 9)}{i:08d}",
            source_channel=rnd.choice(["线下活动", "直播", "老客户"]),
            first_seen_at=now - dt.timedelta(days=days + 5), last_active_at=now - dt.timedelta(days=rnd.randint(0, 20)),
            lifecycle_stage=stages[i % len(stages)], relationship_level=i % 5,
        )
        IdentityFactory.create(tenant=tenant, member=m, platform="wecom", external_id=f"{prefix}wm{i}")
        if i % 3 == 0:
            MemberTag.objects.create(tenant=tenant, member=m, tag=vip)
        joined = now - dt.timedelta(days=rnd.randint(0, days - 1), hours=rnd.randint(0, 23))
        left = joined + dt.timedelta(days=3) if i % 7 == 0 and joined + dt.timedelta(days=3) < now else None
        MembershipFactory.create(tenant=tenant, member=m, community=community, group=g1 if i % 2 else g2,
                          joined_at=joined, left_at=left)
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
    return SeededClub(community=community, other=other, groups=[g1, g2], members=people, tag=vip)


# --- the portal's paid community ----------------------------------------------------------------

#: the entry and partner tier prices of :func:`paid_community`, in fen (19.9 元, 1999 元)
ENTRY_FEN, PARTNER_FEN = 1990, 199900


@dataclass
class PaidCommunity:
    tenant: Tenant
    system: Principal
    community: Community
    entry: Product
    partner: Product
    group: ChatGroup


def paid_community(tenant: Tenant, *, threshold: str = Community.EntryThreshold.PAID) -> PaidCommunity:
    """The seeds' paid community (社群2.0) with a Matrix group: an entry tier and a partner tier
    (``do_seed_tiers``), a one-level plan paying 100 % of the entry and 80 % of the partner price,
    available at once, and withdrawals without a fee (approval above 1000 元)."""
    system = Principal.system(tenant.pk)
    comm = CommunityFactory.create(tenant=tenant, name="社群2.0 入门群", theme="一起学私域运营", audience="小店老板",
                            needs="引流与复购", rules="不发广告\n友善交流", entry_threshold=threshold)
    group = ChatGroupFactory.create(tenant=tenant, community=comm, platform="matrix",
                             external_id="#shequn-entry:example.org", name="入门一群")
    entry, partner = do_seed_tiers(system, comm.pk)
    do_create_plan(system, name="社群2.0", refund_window_days=0, rules=[
        {"product_kind": "tier", "product_id": str(entry.pk), "mode": "percent", "rate_bps": 10000},
        {"product_kind": "tier", "product_id": str(partner.pk), "mode": "percent", "rate_bps": 8000},
    ])
    ReferralPolicy.objects.update_or_create(tenant=tenant, defaults={"withdrawal_approval_above_fen": 100_000,
                                                                     "withdrawal_fee_bps": 0})
    return PaidCommunity(tenant, system, comm, entry, partner, group)


# --- read-backs ---------------------------------------------------------------------------------


def member_balance(tenant: Tenant, member: Member, kind: str) -> int:
    """A member's ledger balance of one account kind (``available``, ``commission_pending`` …)."""
    return account_balance(tenant.pk, "member", member.pk, kind)


def last_sms_code(tenant: Tenant) -> str:
    """The code the sandbox SMS sender 'sent' last (what the operator sees in the console)."""
    sms = SandboxSms.objects.filter(tenant=tenant).order_by("-pk").first()
    assert sms is not None, "no sandbox SMS"
    match = re.search(r"\b(\d{6})\b", sms.body)
    assert match
    return match.group(1)
