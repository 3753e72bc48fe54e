"""Tenant-isolation probes of the ledger API (see ``shequn.api.tests.test_isolation``): a member
account with one posted entry."""

from __future__ import annotations

from typing import Any

from shequn.core.models import Tenant
from shequn.ledger.models import Account, Entry
from shequn.ledger.services import do_post, get_account

PROBES: dict[tuple[str, str], Any] = {
    ("get", "/api/v1/ledger/accounts/{account_id}/entries"): None,
}


def build_ids(tenant: Tenant, ids: dict[str, int]) -> dict[str, int]:
    source = get_account(tenant.pk, "platform", tenant.pk, "iso_expense", allow_negative=True)
    target = get_account(tenant.pk, "member", ids["member_id"], "iso_reward")
    do_post(tenant.pk, "iso-ledger-1", "iso.reward", [(source, -321), (target, 321)], memo="隔离测试")
    return {"account_id": target.pk}


def snapshot(tenant: Tenant) -> dict[str, Any]:
    return {"accounts": list(Account.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "balance_fen")),
            "entries": Entry.objects.filter(tenant=tenant).count()}
