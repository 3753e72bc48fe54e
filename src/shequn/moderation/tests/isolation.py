"""Tenant-isolation probes of the moderation API (see ``shequn.api.tests.test_isolation``).

The violation is real: an ad posted in the tenant's group is moderated on ingest (actioned, neither
appealed nor reviewed, so both the appeal and the review succeed for its own tenant)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from shequn.activity.services import do_ingest
from shequn.communities.models import ChatGroup
from shequn.core.models import Tenant
from shequn.moderation.models import ModerationPolicy, Violation

P = "/api/v1/moderation"

PROBES: dict[tuple[str, str], Any] = {
    ("get", f"{P}/violations/{{violation_id}}"): None,
    ("post", f"{P}/violations/{{violation_id}}/review"): {"decision": "confirm", "note": "确认"},
    ("post", f"{P}/violations/{{violation_id}}/appeal"): {"text": "误会"},
    ("get", f"{P}/communities/{{community_id}}/policy"): None,
    ("put", f"{P}/communities/{{community_id}}/policy"): {"warn_limit": 5, "rules_text": "allow domain iso.example"},
}


def build_ids(tenant: Tenant, ids: dict[str, int]) -> dict[str, int]:
    group = ChatGroup.objects.get(pk=ids["group_id"])
    res = do_ingest(tenant.pk, [{
        "platform": group.platform, "event_id": f"iso-ad-{tenant.pk}", "kind": "message",
        "member_id": ids["spare_member_id"], "group": group.external_id, "occurred_at": timezone.now().isoformat(),
        "payload": {"text": "兼职刷单日结300加我薇信 vip_8888"},
    }])
    assert res.stored == 1, res
    v = Violation.objects.get(tenant=tenant, event_id=res.event_ids[0])
    assert v.status not in (Violation.Status.REVERSED, Violation.Status.CONFIRMED) and v.appealed_at is None, v
    return {"violation_id": v.pk}


def snapshot(tenant: Tenant) -> dict[str, Any]:
    return {
        "violations": list(Violation.objects.filter(tenant=tenant).order_by("pk")
                           .values_list("pk", "status", "appeal_text", "reviewed_by")),
        "policies": list(ModerationPolicy.objects.filter(tenant=tenant).order_by("pk")
                         .values_list("pk", "warn_limit", "rules_text")),
    }
