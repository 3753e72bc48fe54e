"""Tenant-isolation probes of the communities API added with the entry thresholds (see
``shequn.api.tests.test_isolation``; the older community paths are probed there): a pending join
request in an approval community, and a partner (partner tier held) who may open their own group."""

from __future__ import annotations

from typing import Any

from shequn.commerce.services import do_create_order, do_seed_tiers
from shequn.commerce.tests.conftest import pay
from shequn.communities.models import Community
from shequn.communities.services import do_request_join
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.testing.factories import MemberFactory

P = "/api/v1/communities"

PROBES: dict[tuple[str, str], Any] = {
    ("post", f"{P}/join-requests/{{request_id}}/approve"): {"note": "欢迎"},
    ("post", f"{P}/join-requests/{{request_id}}/decline"): {"note": "资料不全"},
    ("post", f"{P}/{{community_id}}/partner-groups"):
        lambda ids: {"member_id": ids["partner_member_id"], "platform": "telegram", "external_id": "-100999"},
}


def build_ids(tenant: Tenant, ids: dict[str, int]) -> dict[str, int]:
    system = Principal.system(tenant.pk)
    gated = Community.objects.create(tenant=tenant, name="审核入群社群", entry_threshold="approval")
    asker = MemberFactory(tenant=tenant, display_name="申请人")
    request = do_request_join(asker, gated, message="想加入")
    _entry, partner_tier = do_seed_tiers(system, ids["community_id"])
    partner = MemberFactory(tenant=tenant, display_name="合伙人")
    order = do_create_order(system, member_id=partner.pk, lines=[{"sku_id": partner_tier.skus.get().pk, "quantity": 1}])
    pay(system, order.pk)
    return {"request_id": request.pk, "partner_member_id": partner.pk, "partner_tier_id": partner_tier.pk}
