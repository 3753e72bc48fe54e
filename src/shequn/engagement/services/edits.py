"""Changing existing engagement campaign objects: lotteries (with their prizes), red packets,
badges, SOP content items and SOP schedules. The console's change forms and ``PATCH
/api/v1/engagement/…`` call these; creation is in the topic modules.

Each ``do_update_<object>(principal, id, **changes)`` takes only the fields that change (the create
service's keyword names), merges them with the stored values, holds the result to the **same**
``check_*`` as creation, then to the state rules below, and audits the changed field names;
``check_update_<object>`` runs the same checks without writing (the console form's ``clean()``).

State rules:

* **Lottery**: only an open lottery changes (once entries close its snapshot is published). Once a
  member has entered, the entry cost, tickets per member, entry rules, community and beacon are
  fixed (entrants entered on those terms) and prizes may only be added or increased, never removed
  or reduced. The seed commitment never changes. Prizes are the whole list, rank 1 first.
* **Red packet**: funded up front, so its amount, count, currency, mode, sender and group never
  change; the greeting and the expiry may (the expiry later than now and within 30 days of
  creation). :func:`do_end_red_packet` ends it now and refunds the unclaimed rest.
* **Badge**: the code is fixed once the badge was awarded (members' badges are shown by it).
* **Content item**: any field; deliveries already sent keep what was sent.
* **SOP schedule**: the kind is fixed once it has delivered; ``active`` pauses or resumes it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from ..models import (
    Badge,
    ContentDelivery,
    ContentItem,
    ContentSchedule,
    Lottery,
    LotteryEntry,
    LotteryPrize,
    MemberBadge,
    RedPacket,
)
from .campaigns import check_badge, check_content_item, check_content_schedule, do_set_schedule_active
from .lotteries import check_lottery
from .red_packets import _expire_packet


def merge(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The stored values with ``changes`` applied; a name that is not a field is refused."""
    for name in changes:
        if name not in current:
            raise Invalid(_("不能修改的字段: %(f)s") % {"f": name}, details={"field": name})
    return {**current, **changes}


def _changed(current: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    return [k for k, v in values.items() if current.get(k) != v]


def _fixed(name: str, message: str) -> Conflict:
    return Conflict(message, code="locked", details={"field": name})


def _row(model: Any, tenant_id: int, pk: int, message: str, field: str, *, lock: bool = False) -> Any:
    q = model.objects.filter(tenant_id=tenant_id, pk=pk)
    row = (q.select_for_update() if lock else q).first()
    if row is None:
        raise NotFound(message, details={"field": field})
    return row


# -- lotteries -------------------------------------------------------------------------------------


def _prizes(lot: Lottery) -> list[tuple[str, int]]:
    return [(p.name, p.stock) for p in LotteryPrize.objects.filter(lottery=lot).order_by("rank", "pk")]


def _lottery_values(lot: Lottery) -> dict[str, Any]:
    return {"title": lot.title, "closes_at": lot.closes_at, "draw_at": lot.draw_at, "prizes": _prizes(lot),
            "rules": dict(lot.rules or {}), "entry_cost_points": lot.entry_cost_points,
            "max_tickets": lot.max_tickets, "community_id": lot.community_id, "group_id": lot.group_id,
            "beacon": lot.beacon}


def _check_lottery(lot: Lottery, changes: Mapping[str, Any], now: dt.datetime) -> tuple[dict[str, Any], list[str]]:
    if lot.status != Lottery.Status.OPEN:
        raise _fixed("status", _("只有报名中的抽奖可以修改"))
    current = _lottery_values(lot)
    changes = dict(changes)
    if "prizes" in changes:
        changes["prizes"] = [(str(n).strip(), int(s)) for n, s in changes["prizes"] or []]
    values = merge(current, changes)
    values["rules"] = check_lottery(lot.tenant_id, now=now, **values)
    changed = _changed(current, values)
    if changed and LotteryEntry.objects.filter(lottery=lot).exists():
        for name in ("entry_cost_points", "max_tickets", "rules", "community_id", "beacon"):
            if name in changed:
                raise _fixed(name, _("已有会员参与, 参与条件、每注积分、每人注数和随机信标不能再改"))
        old, new = current["prizes"], values["prizes"]
        if len(new) < len(old):
            raise _fixed(f"prizes[{len(new)}]", _("已有会员参与, 奖品只能增加, 不能删除或减少"))
        for i, ((_old_name, old_stock), (_name, stock)) in enumerate(zip(old, new, strict=False)):
            if stock < old_stock:
                raise _fixed(f"prizes[{i}]", _("已有会员参与, 奖品只能增加, 不能删除或减少"))
    return values, changed


def check_update_lottery(tenant_id: int, lottery_id: int, *, now: dt.datetime | None = None, **changes: Any) -> None:
    """Every rule of :func:`do_update_lottery`, without writing."""
    lot = _row(Lottery, tenant_id, lottery_id, _("抽奖不存在"), "lottery_id")
    _check_lottery(lot, changes, now or timezone.now())


@transaction.atomic
def do_update_lottery(principal: Principal, lottery_id: int, *, now: dt.datetime | None = None,
                      **changes: Any) -> Lottery:
    """Change an open lottery (texts, times, prizes, entry terms) under this module's state rules.
    Locking: the lottery row (entering locks it too, so no entry slips in between check and write)."""
    lot: Lottery = _row(Lottery, principal.tenant_id, lottery_id, _("抽奖不存在"), "lottery_id", lock=True)
    values, changed = _check_lottery(lot, changes, now or timezone.now())
    if not changed:
        return lot
    columns = [c for c in changed if c != "prizes"]
    for name in columns:
        setattr(lot, name, values[name].strip() if name == "title" else values[name])
    if columns:
        lot.save(update_fields=columns)
    if "prizes" in changed:
        _write_prizes(lot, values["prizes"])
    do_audit(principal, "engagement.lottery.update", "lottery", str(lot.pk),
             data={"fields": changed, "prizes": values["prizes"] if "prizes" in changed else None})
    return lot


def _write_prizes(lot: Lottery, prizes: Sequence[tuple[str, int]]) -> None:
    """Rank i+1 is ``prizes[i]``: existing ranks are updated, missing ones created, extra ones removed
    (only while nobody entered, see the rules)."""
    rows = {p.rank: p for p in LotteryPrize.objects.filter(lottery=lot)}
    for i, (name, stock) in enumerate(prizes):
        row = rows.pop(i + 1, None)
        if row is None:
            LotteryPrize.objects.create(tenant_id=lot.tenant_id, lottery=lot, rank=i + 1, name=name, stock=stock)
        elif (row.name, row.stock) != (name, stock):
            row.name, row.stock = name, stock
            row.save(update_fields=["name", "stock"])
    LotteryPrize.objects.filter(pk__in=[r.pk for r in rows.values()]).delete()


# -- red packets -----------------------------------------------------------------------------------

_PACKET_FIXED = ("total", "count", "currency", "mode", "sender_member_id", "group_id", "community_id")


def _check_packet(p: RedPacket, changes: Mapping[str, Any], now: dt.datetime) -> tuple[dict[str, Any], list[str]]:
    current = {"title": p.title, "expires_at": p.expires_at, "total": p.total, "count": p.count,
               "currency": p.currency, "mode": p.mode, "sender_member_id": p.sender_id, "group_id": p.group_id,
               "community_id": p.community_id}
    values = merge(current, changes)
    changed = _changed(current, values)
    for name in _PACKET_FIXED:
        if name in changed:
            raise _fixed(name, _("红包已发出并扣款, 金额、个数、币种、类型和发送对象不能再改"))
    if changed and p.status != RedPacket.Status.OPEN:
        raise _fixed("status", _("红包已领完或已过期, 不能再修改"))
    title = values["title"]
    if not isinstance(title, str) or not title.strip() or len(title) > 120:
        raise Invalid(_("请填写祝福语 (最多 120 个字符)"), details={"field": "title"})
    if "expires_at" in changed:
        until = values["expires_at"]
        if not isinstance(until, dt.datetime) or until <= now or until > p.created_at + dt.timedelta(days=30):
            raise Invalid(_("过期时间须晚于现在, 且不超过发出后 30 天"), details={"field": "expires_at"})
    return values, changed


def check_update_red_packet(tenant_id: int, packet_id: int, *, now: dt.datetime | None = None,
                            **changes: Any) -> None:
    p = _row(RedPacket, tenant_id, packet_id, _("红包不存在"), "packet_id")
    _check_packet(p, changes, now or timezone.now())


@transaction.atomic
def do_update_red_packet(principal: Principal, packet_id: int, *, now: dt.datetime | None = None,
                         **changes: Any) -> RedPacket:
    """Change a red packet's greeting or expiry (its money never changes). Locking: the packet row,
    as claims do."""
    p: RedPacket = _row(RedPacket, principal.tenant_id, packet_id, _("红包不存在"), "packet_id", lock=True)
    values, changed = _check_packet(p, changes, now or timezone.now())
    if changed:
        for name in changed:
            setattr(p, name, values[name].strip() if name == "title" else values[name])
        p.save(update_fields=changed)
        do_audit(principal, "engagement.redpacket.update", "red_packet", str(p.pk), data={"fields": changed})
    return p


def do_end_red_packet(principal: Principal, packet_id: int) -> RedPacket:
    """End an open packet now: nobody may claim any more; the unclaimed rest goes back to whoever
    funded it (the expiry's refund, exactly once)."""
    p: RedPacket = _row(RedPacket, principal.tenant_id, packet_id, _("红包不存在"), "packet_id")
    with transaction.atomic():
        if _expire_packet(p.pk):
            RedPacket.objects.filter(pk=p.pk, expires_at__gt=timezone.now()).update(expires_at=timezone.now())
            do_audit(principal, "engagement.redpacket.end", "red_packet", str(p.pk))
    p.refresh_from_db()
    return p


# -- badges ----------------------------------------------------------------------------------------


def _check_badge(badge: Badge, changes: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    current = {"code": badge.code, "name": badge.name, "rule": badge.rule, "threshold": badge.threshold,
               "description": badge.description}
    values = merge(current, changes)
    check_badge(badge.tenant_id, badge_id=badge.pk, **values)
    changed = _changed(current, values)
    if "code" in changed and MemberBadge.objects.filter(badge=badge).exists():
        raise _fixed("code", _("徽章已颁发, 代码不能再改"))
    return values, changed


def check_update_badge(tenant_id: int, badge_id: int, **changes: Any) -> None:
    _check_badge(_row(Badge, tenant_id, badge_id, _("徽章不存在"), "badge_id"), changes)


@transaction.atomic
def do_update_badge(principal: Principal, badge_id: int, **changes: Any) -> Badge:
    badge: Badge = _row(Badge, principal.tenant_id, badge_id, _("徽章不存在"), "badge_id", lock=True)
    values, changed = _check_badge(badge, changes)
    if changed:
        for name in changed:
            setattr(badge, name, values[name].strip() if name == "name" else values[name])
        badge.save(update_fields=changed)
        do_audit(principal, "engagement.badge.update", "badge", str(badge.pk), data={"fields": changed})
    return badge


# -- SOP content and schedules ---------------------------------------------------------------------


def _check_item(item: ContentItem, changes: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    current = {"title": item.title, "kind": item.kind, "body": item.body, "url": item.url,
               "image_url": item.image_url, "is_sales": item.is_sales,
               "platform_overrides": dict(item.platform_overrides or {})}
    values = merge(current, changes)
    check_content_item(item.tenant_id, **values)
    values["platform_overrides"] = {k: v for k, v in (values["platform_overrides"] or {}).items() if v and v.strip()}
    return values, _changed(current, values)


def check_update_content_item(tenant_id: int, item_id: int, **changes: Any) -> None:
    _check_item(_row(ContentItem, tenant_id, item_id, _("内容不存在"), "content_id"), changes)


@transaction.atomic
def do_update_content_item(principal: Principal, item_id: int, **changes: Any) -> ContentItem:
    item: ContentItem = _row(ContentItem, principal.tenant_id, item_id, _("内容不存在"), "content_id", lock=True)
    values, changed = _check_item(item, changes)
    if changed:
        for name in changed:
            setattr(item, name, values[name].strip() if name == "title" else values[name])
        item.save(update_fields=changed)
        do_audit(principal, "engagement.content.update", "content_item", str(item.pk), data={"fields": changed})
    return item


def _schedule_values(s: ContentSchedule) -> dict[str, Any]:
    return {"content_id": s.content_id, "kind": s.kind, "community_id": s.community_id, "group_id": s.group_id,
            "run_at": s.run_at, "time_of_day": s.time_of_day, "weekdays": sorted(s.weekdays or []),
            "day_offset": s.day_offset, "respect_quiet_hours": s.respect_quiet_hours,
            "audience_id": s.audience_id}


def _check_schedule(s: ContentSchedule, changes: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], bool | None]:
    changes = dict(changes)
    active = changes.pop("active", None)
    if active is not None and not isinstance(active, bool):
        raise Invalid(_("状态必须是 true 或 false"), details={"field": "active"})
    current = _schedule_values(s)
    values = merge(current, changes)
    check_content_schedule(s.tenant_id, **values)
    values["weekdays"] = sorted(set(values["weekdays"] or []))
    changed = _changed(current, values)
    if "kind" in changed and ContentDelivery.objects.filter(schedule=s).exists():
        raise _fixed("kind", _("排期已发送过, 类型不能再改"))
    return values, changed, active


def check_update_content_schedule(tenant_id: int, schedule_id: int, **changes: Any) -> None:
    _check_schedule(_row(ContentSchedule, tenant_id, schedule_id, _("排期不存在"), "schedule_id"), changes)


@transaction.atomic
def do_update_content_schedule(principal: Principal, schedule_id: int, **changes: Any) -> ContentSchedule:
    """Change an SOP item (what, where, when); ``active`` pauses or resumes it."""
    s: ContentSchedule = _row(ContentSchedule, principal.tenant_id, schedule_id, _("排期不存在"), "schedule_id",
                              lock=True)
    values, changed, active = _check_schedule(s, changes)
    if changed:
        for name in changed:
            setattr(s, name, values[name])
        s.save(update_fields=changed)
        do_audit(principal, "engagement.schedule.update", "content_schedule", str(s.pk), data={"fields": changed})
    if active is not None:
        s = do_set_schedule_active(principal, s.pk, active=active)
    return s


__all__ = [
    "check_update_badge", "check_update_content_item", "check_update_content_schedule", "check_update_lottery",
    "check_update_red_packet", "do_end_red_packet", "do_update_badge", "do_update_content_item",
    "do_update_content_schedule", "do_update_lottery", "do_update_red_packet",
]
