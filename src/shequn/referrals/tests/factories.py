"""Test helpers: a stand-in for commerce's OrderEventData (same shape) and small builders."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from shequn.communities.models import Community
from shequn.core.permissions import Principal
from shequn.ledger.selectors import account_balance
from shequn.members.models import Member

_seq = itertools.count(1)


@dataclass(frozen=True)
class OrderEventData:
    tenant_id: int
    event_id: str
    kind: str
    order_id: int
    member_id: int | None
    amount_fen: int
    lines: list[dict[str, Any]]
    attribution: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime = field(default_factory=timezone.now)


def member(tenant, name: str, phone: str = "") -> Member:
    return Member.objects.create(tenant=tenant, display_name=name, phone=phone, first_seen_at=timezone.now())


def community(tenant, name: str = "入门社群") -> Community:
    return Community.objects.create(tenant=tenant, name=name)


def line(product_id: str, amount_fen: int, kind: str = "tier", qty: int = 1, line_id: str | None = None) -> dict:
    return {"order_line_id": line_id or f"L{next(_seq)}", "product_id": product_id, "sku_id": product_id,
            "product_kind": kind, "quantity": qty, "amount_fen": amount_fen}


def paid(tenant, buyer, lines, *, code: str = "", referrer=None, event_id: str | None = None,
         order_id: int | None = None, at=None, community_id=None, campaign="") -> OrderEventData:
    oid = order_id or next(_seq)
    return OrderEventData(
        tenant_id=tenant.pk, event_id=event_id or f"paid-{oid}", kind="paid", order_id=oid,
        member_id=buyer.pk if buyer else None, amount_fen=sum(li["amount_fen"] for li in lines), lines=lines,
        attribution={"invite_code": code, "referrer_member_id": referrer.pk if referrer else None,
                     "community_id": community_id, "group_id": None, "live_session_id": None,
                     "campaign": campaign},
        occurred_at=at or timezone.now(),
    )


def refunded(event: OrderEventData, lines=None, event_id: str | None = None, at=None) -> OrderEventData:
    return OrderEventData(
        tenant_id=event.tenant_id, event_id=event_id or f"refund-{event.order_id}", kind="refunded",
        order_id=event.order_id, member_id=event.member_id, amount_fen=event.amount_fen,
        lines=event.lines if lines is None else lines, attribution=event.attribution,
        occurred_at=at or timezone.now(),
    )


def bal(tenant, m, kind: str) -> int:
    return account_balance(tenant.pk, "member", m.pk, kind)


def principal(tenant) -> Principal:
    return Principal.system(tenant.pk)
