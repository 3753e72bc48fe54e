"""The seed world the portal tests share: a paid 19.9 / 1999 community with a 100 % / 80 % one-level
plan available at once, as the seeds describe (社群2.0)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shequn.commerce.models import Product
from shequn.commerce.services import do_seed_tiers
from shequn.communities.models import ChatGroup, Community
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.portal.models import SandboxSms
from shequn.referrals.models import ReferralPolicy
from shequn.referrals.services import do_create_plan

ENTRY, PARTNER = 1990, 199900


@dataclass
class World:
    tenant: Tenant
    system: Principal
    community: Community
    entry: Product
    partner: Product
    group: ChatGroup


def build_world(tenant: Tenant, *, threshold: str = Community.EntryThreshold.PAID) -> World:
    system = Principal.system(tenant.pk)
    comm = Community.objects.create(tenant=tenant, name="社群2.0 入门群", theme="一起学私域运营",
                                    audience="小店老板", needs="引流与复购", rules="不发广告\n友善交流",
                                    entry_threshold=threshold)
    group = ChatGroup.objects.create(tenant=tenant, community=comm, platform="matrix",
                                     external_id="#shequn-entry:example.org", name="入门一群")
    entry, partner = do_seed_tiers(system, comm.pk)
    do_create_plan(system, name="社群2.0", refund_window_days=0, rules=[
        {"product_kind": "tier", "product_id": str(entry.pk), "mode": "percent", "rate_bps": 10000},
        {"product_kind": "tier", "product_id": str(partner.pk), "mode": "percent", "rate_bps": 8000},
    ])
    ReferralPolicy.objects.update_or_create(tenant=tenant, defaults={"withdrawal_approval_above_fen": 100_000,
                                                                     "withdrawal_fee_bps": 0})
    return World(tenant, system, comm, entry, partner, group)


def last_code(tenant: Tenant) -> str:
    """The code the sandbox SMS sender 'sent' last (what the operator sees in the console)."""
    sms = SandboxSms.objects.filter(tenant=tenant).order_by("-pk").first()
    assert sms is not None, "no sandbox SMS"
    match = re.search(r"\b(\d{6})\b", sms.body)
    assert match
    return match.group(1)
