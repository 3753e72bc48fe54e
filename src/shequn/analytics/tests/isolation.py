"""Tenant-isolation probes of the segments API (see ``shequn.api.tests.test_isolation``): a saved
segment (everyone), granted a claimable coupon template and invited to the partner tier that the
communities' probes seeded."""

from __future__ import annotations

from typing import Any

from shequn.analytics import segments
from shequn.core.models import Tenant
from shequn.core.permissions import Principal

P = "/api/v1/analytics/segments"

PROBES: dict[tuple[str, str], Any] = {
    ("get", f"{P}/{{segment_id}}"): None,
    ("put", f"{P}/{{segment_id}}"): {"name": "改名人群"},
    ("delete", f"{P}/{{segment_id}}"): None,
    ("get", f"{P}/{{segment_id}}/members"): None,
    ("get", f"{P}/{{segment_id}}/export"): None,
    ("post", f"{P}/{{segment_id}}/grant-coupon"): lambda ids: {"template_id": ids["template_id"]},
    ("post", f"{P}/{{segment_id}}/invite-tier"): lambda ids: {"product_id": ids["partner_tier_id"]},
}


def build_ids(tenant: Tenant, ids: dict[str, int]) -> dict[str, int]:
    segment = segments.do_save_segment(Principal.system(tenant.pk), "全部会员", {})
    return {"segment_id": segment.pk}
