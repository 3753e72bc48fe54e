"""Group buys (拼团): creating a campaign, opening a team, joining by share link, failing teams that
did not fill in time (refunding paid members exactly once).

Locking: the team row (``select_for_update``) while seats are counted; stock by conditional UPDATE."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.models import Member

from ..models import CouponTemplate, GroupBuy, GroupBuyParticipant, GroupBuyTeam, Order, OrderStatus, Sku
from ..selectors import member_context
from ._common import _member, _positive_int, _token, clean_attribution
from .fulfilment import do_cancel_order
from .orders import DEFAULT_ORDER_TTL, _take_stock, _write_order
from .paid import _refund_failed_team_order
from .pricing import _clean_lines, _Priced
from .transitions import REFUNDABLE


def check_group_buy(
    tenant_id: int, *, name: str, sku_id: int | None, price_fen: int, team_size: int, starts_at: dt.datetime,
    ends_at: dt.datetime, time_limit_minutes: int = 1440, leader_reward_template_id: int | None = None,
) -> None:
    """Every rule of :func:`do_create_group_buy`, without writing."""
    if not name or not name.strip() or len(name) > 120:
        raise Invalid(_("请填写活动名称 (最多 120 个字符)"), details={"field": "name"})
    _positive_int(price_fen, "price_fen")
    if not isinstance(team_size, int) or team_size < 2 or team_size > 100:
        raise Invalid(_("成团人数须在 2 到 100 之间"), details={"field": "team_size"})
    _positive_int(time_limit_minutes, "time_limit_minutes")
    if ends_at <= starts_at:
        raise Invalid(_("结束时间必须晚于开始时间"), details={"field": "ends_at"})
    if sku_id is None or not Sku.objects.filter(tenant_id=tenant_id, pk=sku_id).exists():
        raise NotFound(_("SKU 不存在"), details={"field": "sku_id"})
    if leader_reward_template_id is not None and not CouponTemplate.objects.filter(
            tenant_id=tenant_id, pk=leader_reward_template_id).exists():
        raise NotFound(_("优惠券模板不存在"), details={"field": "leader_reward_template_id"})


@transaction.atomic
def do_set_group_buy_active(principal: Principal, group_buy_id: int, *, active: bool) -> GroupBuy:
    """Pause (no new teams; open teams may still fill) or resume a group buy."""
    gb = GroupBuy.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=group_buy_id).first()
    if gb is None:
        raise NotFound(_("拼团活动不存在"), details={"field": "group_buy_id"})
    if gb.is_active != active:
        gb.is_active = active
        gb.save(update_fields=["is_active"])
        do_audit(principal, "commerce.group_buy.resume" if active else "commerce.group_buy.pause", "GroupBuy", gb.pk)
    return gb


@transaction.atomic
def do_create_group_buy(
    principal: Principal, *, name: str, sku_id: int, price_fen: int, team_size: int, starts_at: dt.datetime,
    ends_at: dt.datetime, time_limit_minutes: int = 1440, leader_reward_template_id: int | None = None,
) -> GroupBuy:
    tid = principal.tenant_id
    check_group_buy(tid, name=name, sku_id=sku_id, price_fen=price_fen, team_size=team_size, starts_at=starts_at,
                    ends_at=ends_at, time_limit_minutes=time_limit_minutes,
                    leader_reward_template_id=leader_reward_template_id)
    gb = GroupBuy.objects.create(tenant_id=tid, name=name[:120], sku_id=sku_id, price_fen=price_fen,
                                 team_size=team_size, starts_at=starts_at, ends_at=ends_at,
                                 time_limit_minutes=time_limit_minutes,
                                 leader_reward_template_id=leader_reward_template_id)
    do_audit(principal, "commerce.group_buy.create", "GroupBuy", gb.pk, data={"team_size": team_size})
    return gb


def _group_buy_order(principal: Principal, gb: GroupBuy, team: GroupBuyTeam, member: Member, attr: dict[str, Any],
                     *, is_leader: bool) -> Order:
    ctx = member_context(gb.tenant_id, member)
    lines = _clean_lines(gb.tenant_id, [{"sku_id": gb.sku_id, "quantity": 1}], ctx, price_override=gb.price_fen)
    _take_stock(lines)
    ttl = min(DEFAULT_ORDER_TTL, max(team.expires_at - timezone.now(), dt.timedelta(seconds=1)))
    order = _write_order(principal, member, _Priced(lines=lines), attr, idempotency_key=None, request_hash="",
                         ttl=ttl, team=team)
    try:
        with transaction.atomic():
            GroupBuyParticipant.objects.create(tenant_id=gb.tenant_id, team=team, member=member, order=order,
                                               is_leader=is_leader)
    except IntegrityError:
        raise Conflict(_("你已在这个团里"), code="already_joined", details={"field": "member_id"}) from None
    return order


def do_start_team(principal: Principal, group_buy_id: int, *, member_id: int,
                  attribution: Mapping[str, Any] | None = None) -> tuple[GroupBuyTeam, Order]:
    """Open a team (开团) as its leader; returns the team (with its share token) and the leader's order."""
    tid = principal.tenant_id
    gb = GroupBuy.objects.filter(tenant_id=tid, pk=group_buy_id, is_active=True).first()
    if gb is None:
        raise NotFound(_("拼团活动不存在"), details={"field": "group_buy_id"})
    member = _member(tid, member_id)
    now = timezone.now()
    if not (gb.starts_at <= now < gb.ends_at):
        raise Invalid(_("拼团活动不在进行中"), code="ended", details={"field": "group_buy_id"})
    attr = clean_attribution(tid, attribution)
    with transaction.atomic():
        team = GroupBuyTeam.objects.create(
            tenant_id=tid, group_buy=gb, leader=member, share_token=_token(),
            expires_at=min(now + dt.timedelta(minutes=gb.time_limit_minutes), gb.ends_at),
        )
        order = _group_buy_order(principal, gb, team, member, attr, is_leader=True)
        do_audit(principal, "commerce.team.start", "GroupBuyTeam", team.pk, data={"order_id": order.pk})
    return team, order


def do_join_team(principal: Principal, share_token: str, *, member_id: int,
                 attribution: Mapping[str, Any] | None = None) -> Order:
    """Join a team by its share link. Locking: the team row (select_for_update) so seats are counted
    under the lock; then stock by conditional UPDATE."""
    tid = principal.tenant_id
    member = _member(tid, member_id)
    attr = clean_attribution(tid, attribution)
    with transaction.atomic():
        team = GroupBuyTeam.objects.select_for_update().filter(tenant_id=tid, share_token=share_token).first()
        if team is None:
            raise NotFound(_("拼团不存在"), details={"field": "share_token"})
        if team.status != GroupBuyTeam.Status.OPEN or team.expires_at <= timezone.now():
            raise Conflict(_("这个团已结束"), code="team_closed", details={"field": "share_token"})
        seats = GroupBuyParticipant.objects.filter(team=team).exclude(order__status=OrderStatus.CANCELLED).count()
        gb = GroupBuy.objects.get(pk=team.group_buy_id)
        if seats >= gb.team_size:
            raise Conflict(_("这个团已满"), code="team_full", details={"field": "share_token"})
        if attr.get("referrer_member_id") is None:
            attr["referrer_member_id"] = team.leader_id if team.leader_id != member.pk else None
        order = _group_buy_order(principal, gb, team, member, attr, is_leader=False)
        do_audit(principal, "commerce.team.join", "GroupBuyTeam", team.pk, data={"order_id": order.pk})
        return order


def do_fail_expired_teams(now: dt.datetime | None = None, limit: int = 200) -> int:
    """Close teams that did not fill in time and refund every paid member exactly once.

    Exactly once: the team flips open → failed by a conditional UPDATE (only one caller wins), and each
    refund carries the idempotency key ``groupbuy-fail-<order id>``; unpaid orders are cancelled."""
    now = now or timezone.now()
    failed = 0
    for team_id, tid in GroupBuyTeam.objects.filter(status=GroupBuyTeam.Status.OPEN, expires_at__lte=now) \
            .values_list("pk", "tenant_id")[:limit]:
        with transaction.atomic():
            won = GroupBuyTeam.objects.filter(pk=team_id, status=GroupBuyTeam.Status.OPEN).update(
                status=GroupBuyTeam.Status.FAILED, closed_at=now
            )
            if won:
                do_audit(Principal.system(tid, "group_buy"), "commerce.team.failed", "GroupBuyTeam", team_id)
        if not won:
            continue
        failed += 1
        for oid in Order.objects.filter(team_id=team_id).values_list("pk", flat=True).order_by("pk"):
            status = Order.objects.values_list("status", flat=True).get(pk=oid)
            if status == OrderStatus.CREATED:
                try:
                    do_cancel_order(Principal.system(tid, "group_buy"), oid, reason=_("拼团失败"))
                except Conflict:
                    status = Order.objects.values_list("status", flat=True).get(pk=oid)
            if status in REFUNDABLE:
                _refund_failed_team_order(tid, oid)
    return failed
