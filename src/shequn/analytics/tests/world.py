"""Small builders for analytics tests: a tenant world with two communities, members, a product, and
helpers that write orders/refunds with chosen times (the order listener is called like commerce would)."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from shequn.activity.services import do_ingest
from shequn.analytics import services
from shequn.commerce.events import OrderEventData
from shequn.commerce.models import Order, OrderStatus, Payment, Refund
from shequn.communities.models import ChatGroup, Community
from shequn.core.models import Tenant
from shequn.members.models import Member
from shequn.referrals.models import InviteLink, LinkEvent, LinkEventKind

ZONE = ZoneInfo("Asia/Shanghai")
BASE = dt.datetime(2026, 10, 1, tzinfo=ZONE)
_seq = itertools.count(1)


@dataclass
class World:
    tenant: Tenant
    communities: list[Community]
    groups: list[ChatGroup]
    members: list[Member]
    link: InviteLink
    orders: list[Order] = field(default_factory=list)


def make_world(tenant: Tenant, n_members: int = 5) -> World:
    comms = [Community.objects.create(tenant=tenant, name=n) for n in ("护肤群", "车友会")]
    groups = [ChatGroup.objects.create(tenant=tenant, community=c, platform="matrix", external_id=f"!r{c.pk}:x",
                                       name=f"{c.name}1群") for c in comms]
    members = [Member.objects.create(tenant=tenant, display_name=f"会员{i}", first_seen_at=BASE)
               for i in range(n_members)]
    link = InviteLink.objects.create(tenant=tenant, code=f"c{next(_seq)}x{tenant.pk}", community=comms[0],
                                     campaign="双11", channel="门店")
    return World(tenant, comms, groups, members, link)


def at(day: int, hour: int = 10) -> dt.datetime:
    return BASE + dt.timedelta(days=day, hours=hour)


def event(w: World, kind: str, member: int, group: int, when: dt.datetime, *, invite: bool = False,
          event_id: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": "hi"} if kind in ("message", "reply") else {}
    if invite:
        payload["invite_code"] = w.link.code
    return {"platform": "matrix", "event_id": event_id or f"e{next(_seq)}", "kind": kind,
            "occurred_at": when.isoformat(), "member_id": w.members[member].pk,
            "group": w.groups[group].external_id, "payload": payload}


def ingest(w: World, events: list[dict[str, Any]]) -> None:
    result = do_ingest(w.tenant.pk, events)
    assert not result.errors, result.errors


def pay(w: World, member: int, amount: int, when: dt.datetime, *, community: int | None = 0,
        campaign: str = "") -> Order:
    attribution: dict[str, Any] = {"community_id": w.communities[community].pk if community is not None else None,
                                   "campaign": campaign or None}
    order = Order.objects.create(tenant=w.tenant, member=w.members[member], status=OrderStatus.PAID, goods_fen=amount,
                                 total_fen=amount, paid_fen=amount, attribution=attribution, paid_at=when)
    Payment.objects.create(tenant=w.tenant, order=order, provider="sandbox", out_trade_no=f"p{next(_seq)}",
                           amount_fen=amount, status=Payment.Status.SUCCEEDED, applied=True, paid_at=when)
    w.orders.append(order)
    notify(w, order, "paid", amount, when)
    return order


def refund(w: World, order: Order, amount: int, when: dt.datetime) -> None:
    Refund.objects.create(tenant=w.tenant, order=order, payment=order.payments.get(), out_refund_no=f"r{next(_seq)}",
                          amount_fen=amount, status=Refund.Status.SUCCEEDED, idempotency_key=f"k{next(_seq)}",
                          completed_at=when)
    Order.objects.filter(pk=order.pk).update(refunded_fen=order.refunded_fen + amount)
    order.refunded_fen += amount
    notify(w, order, "refunded", amount, when)


def click(w: World, when: dt.datetime, *, member: int | None = None, ip: str = "10.0.0.1") -> None:
    LinkEvent.objects.create(tenant=w.tenant, link=w.link, kind=LinkEventKind.CLICK, ip=ip,
                             member=w.members[member] if member is not None else None, occurred_at=when)
    services.do_mark_dirty(w.tenant.pk, [services.local_day(when, ZONE)])


def notify(w: World, order: Order, kind: str, amount: int, when: dt.datetime) -> None:
    services.on_order_event(OrderEventData(tenant_id=w.tenant.pk, event_id=next(_seq), kind=kind, order_id=order.pk,
                                           member_id=order.member_id, amount_fen=amount,
                                           attribution=order.attribution, occurred_at=when))
