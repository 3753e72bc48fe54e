"""Lotteries (commit–reveal, see :mod:`shequn.engagement.fairness`): create (seed commitment), enter,
close (snapshot commitment), draw, reroll. Locking: the lottery row (``select_for_update``) first, then
the member's points account (the ledger's conditional UPDATE) for the entry cost."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.activity.models import ActivityEvent
from shequn.communities.models import ChatGroup, Community, Membership
from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.models import Member
from shequn.members.selectors import check_member

from .. import fairness
from ..models import CheckInStats, Lottery, LotteryEntry, LotteryPrize, LotteryWinner, MemberScore
from ..selectors import tenant_time_zone
from ..streaks import day_bounds, local_day
from ._common import _announce
from .points import do_points_spend
from .standing import check_good_standing

_RULE_KEYS = {"community_id", "min_level", "joined_before", "min_streak", "purchased_since", "require_purchase"}


def check_lottery_rules(rules: dict[str, Any]) -> dict[str, Any]:
    """Validate entry rules; unknown keys and bad values name the field."""
    if not isinstance(rules, dict):
        raise Invalid(_("参与条件必须是对象"), details={"field": "rules"})
    unknown = set(rules) - _RULE_KEYS
    if unknown:
        raise Invalid(_("未知的参与条件: %(k)s") % {"k": ", ".join(sorted(unknown))}, details={"field": "rules"})
    for key in ("community_id", "min_level", "min_streak"):
        if key in rules and (not isinstance(rules[key], int) or rules[key] < 0):
            raise Invalid(_("%(k)s 必须是非负整数") % {"k": key}, details={"field": f"rules.{key}"})
    for key in ("joined_before", "purchased_since"):
        if key in rules:
            try:
                dt.date.fromisoformat(str(rules[key]))
            except ValueError as exc:
                raise Invalid(_("%(k)s 必须是日期 YYYY-MM-DD") % {"k": key}, details={"field": f"rules.{key}"}) from exc
    return rules


def check_lottery(
    tenant_id: int, *, title: str, closes_at: dt.datetime, draw_at: dt.datetime,
    prizes: Sequence[tuple[str, int]], rules: dict[str, Any] | None = None, entry_cost_points: int = 0,
    max_tickets: int = 1, community_id: int | None = None, group_id: int | None = None, beacon: str = "",
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Every rule of :func:`do_create_lottery`, without writing; returns the checked entry rules."""
    now = now or timezone.now()
    if not title or not title.strip() or len(title.strip()) > 120:
        raise Invalid(_("请填写标题 (最多 120 个字符)"), details={"field": "title"})
    if closes_at <= now:
        raise Invalid(_("截止时间必须晚于现在"), details={"field": "closes_at"})
    if draw_at < closes_at:
        raise Invalid(_("开奖时间不能早于截止时间"), details={"field": "draw_at"})
    if not prizes:
        raise Invalid(_("至少需要一个奖品"), details={"field": "prizes"})
    for i, (name, stock) in enumerate(prizes):
        if not str(name).strip() or len(str(name).strip()) > 120 or int(stock) < 1:
            raise Invalid(_("第 %(i)d 个奖品: 需要名称且数量至少为 1") % {"i": i + 1},
                          details={"field": f"prizes[{i}]"})
    if max_tickets < 1:
        raise Invalid(_("每人最多注数至少为 1"), details={"field": "max_tickets"})
    if entry_cost_points < 0:
        raise Invalid(_("每注积分不能为负"), details={"field": "entry_cost_points"})
    checked = check_lottery_rules(rules or {})
    if community_id is not None and not Community.objects.filter(tenant_id=tenant_id, pk=community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "community_id"})
    if group_id is not None and not ChatGroup.objects.filter(tenant_id=tenant_id, pk=group_id).exists():
        raise NotFound(_("群不存在"), details={"field": "group_id"})
    return checked


def do_cancel_lottery(principal: Principal, lottery_id: int, *, reason: str = "") -> Lottery:
    """Cancel an open lottery (before entries close): nobody may enter, nothing is drawn."""
    with transaction.atomic():
        lot = Lottery.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=lottery_id).first()
        if lot is None:
            raise NotFound(_("抽奖不存在"), details={"field": "lottery_id"})
        if lot.status != Lottery.Status.OPEN:
            raise Conflict(_("只有报名中的抽奖可以取消"), details={"field": "status"})
        lot.status = Lottery.Status.CANCELLED
        lot.save(update_fields=["status"])
        do_audit(principal, "engagement.lottery.cancel", "lottery", str(lot.pk), reason=reason)
    return lot


def do_create_lottery(
    principal: Principal, *, title: str, closes_at: dt.datetime, draw_at: dt.datetime,
    prizes: Sequence[tuple[str, int]], rules: dict[str, Any] | None = None, entry_cost_points: int = 0,
    max_tickets: int = 1, community_id: int | None = None, group_id: int | None = None, beacon: str = "",
) -> Lottery:
    """Create a lottery and publish its seed commitment (SHA-256 of a fresh 32-byte secret seed)."""
    tid = principal.tenant_id
    rules = check_lottery(tid, title=title, closes_at=closes_at, draw_at=draw_at, prizes=prizes, rules=rules,
                          entry_cost_points=entry_cost_points, max_tickets=max_tickets, community_id=community_id,
                          group_id=group_id, beacon=beacon)
    seed = secrets.token_hex(32)
    with transaction.atomic():
        lot = Lottery.objects.create(
            tenant_id=tid, title=title.strip(), community_id=community_id, group_id=group_id, rules=rules,
            entry_cost_points=entry_cost_points, max_tickets=max_tickets, closes_at=closes_at, draw_at=draw_at,
            seed_hex=seed, seed_commitment=fairness.seed_commitment(seed), beacon=beacon, created_by=principal.label,
        )
        LotteryPrize.objects.bulk_create([
            LotteryPrize(tenant_id=tid, lottery=lot, rank=i + 1, name=str(n).strip(), stock=int(s))
            for i, (n, s) in enumerate(prizes)
        ])
        do_audit(principal, "engagement.lottery.create", "lottery", str(lot.pk),
                 data={"seed_commitment": lot.seed_commitment, "rules": rules})
    return lot


def check_lottery_entry(lottery: Lottery, member_id: int, *, now: dt.datetime) -> None:
    """Raise :class:`Invalid` naming the first entry rule the member fails."""
    tid = lottery.tenant_id
    rules = lottery.rules or {}
    community_id = rules.get("community_id") or lottery.community_id
    if community_id and not Membership.objects.filter(tenant_id=tid, member_id=member_id, community_id=community_id,
                                                      left_at__isnull=True).exists():
        raise Invalid(_("仅限本社群成员参与"), code="rule_community", details={"field": "rules.community_id"})
    if rules.get("min_level"):
        level = MemberScore.objects.filter(tenant_id=tid, member_id=member_id).values_list("level", flat=True).first()
        if (level or 0) < int(rules["min_level"]):
            raise Invalid(_("活跃等级需达到 %(n)d 级") % {"n": rules["min_level"]}, code="rule_level",
                          details={"field": "rules.min_level"})
    if rules.get("joined_before"):
        cutoff = day_bounds(dt.date.fromisoformat(rules["joined_before"]), tenant_time_zone(tid))[0]
        joined = Membership.objects.filter(tenant_id=tid, member_id=member_id, joined_at__lt=cutoff)
        if community_id:
            joined = joined.filter(community_id=community_id)
        if not joined.exists():
            raise Invalid(_("需在 %(d)s 之前入群") % {"d": rules["joined_before"]}, code="rule_joined",
                          details={"field": "rules.joined_before"})
    if rules.get("min_streak"):
        stats = CheckInStats.objects.filter(tenant_id=tid, member_id=member_id).first()
        today = local_day(now, tenant_time_zone(tid))
        fresh = stats is not None and stats.last_day is not None and stats.last_day >= today - dt.timedelta(days=1)
        live = stats.current_streak if stats is not None and fresh else 0
        if live < int(rules["min_streak"]):
            raise Invalid(_("需连续签到 %(n)d 天") % {"n": rules["min_streak"]}, code="rule_streak",
                          details={"field": "rules.min_streak"})
    if rules.get("require_purchase") or rules.get("purchased_since"):
        q = ActivityEvent.objects.filter(tenant_id=tid, member_id=member_id, kind="purchase")
        if rules.get("purchased_since"):
            q = q.filter(occurred_at__gte=day_bounds(dt.date.fromisoformat(rules["purchased_since"]),
                                                     tenant_time_zone(tid))[0])
        if not q.exists():
            raise Invalid(_("需有购买记录"), code="rule_purchase", details={"field": "rules.purchased_since"})


def do_enter_lottery(tenant_id: int, lottery_id: int, member_id: int, *, tickets: int = 1,
                     now: dt.datetime | None = None) -> LotteryEntry:
    """Enter (once per member) with ``tickets`` weight, paying ``entry_cost_points × tickets``.

    Locking: the lottery row (``select_for_update``) so no entry slips in after the snapshot is frozen,
    then the member's points account (conditional UPDATE)."""
    now = now or timezone.now()
    check_member(tenant_id, member_id)
    with transaction.atomic():
        lot = Lottery.objects.select_for_update().filter(tenant_id=tenant_id, pk=lottery_id).first()
        if lot is None:
            raise NotFound(_("抽奖不存在"), details={"field": "lottery_id"})
        if lot.status != Lottery.Status.OPEN or now >= lot.closes_at:
            raise Conflict(_("报名已截止"), code="lottery_closed")
        if not 1 <= tickets <= lot.max_tickets:
            raise Invalid(_("注数必须在 1 到 %(n)d 之间") % {"n": lot.max_tickets}, details={"field": "tickets"})
        if LotteryEntry.objects.filter(lottery=lot, member_id=member_id).exists():
            raise Conflict(_("已经报名了"), code="already_entered")
        check_good_standing(tenant_id, member_id, _("参加抽奖"))
        check_lottery_entry(lot, member_id, now=now)
        if lot.entry_cost_points:
            do_points_spend(tenant_id, member_id, lot.entry_cost_points * tickets, kind="lottery",
                            idempotency_key=f"lottery:{lot.pk}:{member_id}", reason=lot.title)
        return LotteryEntry.objects.create(tenant_id=tenant_id, lottery=lot, member_id=member_id, weight=tickets)


def _snapshot(lot: Lottery) -> dict[str, Any]:
    entrants = [{"id": f"m{m}", "weight": w}
                for m, w in LotteryEntry.objects.filter(lottery=lot).order_by("pk").values_list("member_id", "weight")]
    prizes = [{"id": f"p{p.pk}", "name": p.name, "stock": p.stock}
              for p in LotteryPrize.objects.filter(lottery=lot).order_by("rank", "pk")]
    return {"entrants": entrants, "prizes": prizes}


def do_close_lottery(tenant_id: int, lottery_id: int, *, now: dt.datetime | None = None) -> Lottery:
    """Freeze the entrant snapshot and publish ``SHA-256(snapshot, algorithm, seed commitment, beacon)``
    (also announced in the group) before anything about the seed is revealed."""
    now = now or timezone.now()
    with transaction.atomic():
        lot = Lottery.objects.select_for_update().filter(tenant_id=tenant_id, pk=lottery_id).first()
        if lot is None:
            raise NotFound(_("抽奖不存在"), details={"field": "lottery_id"})
        if lot.status != Lottery.Status.OPEN:
            return lot
        lot.snapshot = _snapshot(lot)
        lot.commitment = fairness.snapshot_commitment(lottery=str(lot.pk), snapshot=lot.snapshot,
                                                      seed_commitment=lot.seed_commitment, beacon=lot.beacon)
        lot.status, lot.closed_at = Lottery.Status.CLOSED, now
        lot.save(update_fields=["snapshot", "commitment", "status", "closed_at"])
        _announce(tenant_id, lot.group_id, f"lottery:{lot.pk}:commit",
                  _("【%(t)s】报名截止, 共 %(n)d 人参与。开奖承诺 SHA-256: %(c)s (开奖后公布种子, 可自行验证)")
                  % {"t": lot.title, "n": len(lot.snapshot["entrants"]), "c": lot.commitment}, "engagement.lottery")
    return lot


def _store_result(lot: Lottery, result: fairness.DrawResult) -> None:
    members = {f"m{m}": m for m in LotteryEntry.objects.filter(lottery=lot).values_list("member_id", flat=True)}
    prizes = {f"p{p}": p for p in LotteryPrize.objects.filter(lottery=lot).values_list("pk", flat=True)}
    existing = {w.member_id: w for w in LotteryWinner.objects.filter(lottery=lot)}
    rows = [*result.winners, *[r for r in result.rerolls if r["entrant"] is not None]]
    for w in rows:
        member_id = members[w["entrant"]]
        if member_id not in existing:
            existing[member_id] = LotteryWinner.objects.create(
                tenant_id=lot.tenant_id, lottery=lot, prize_id=prizes[w["prize"]], member_id=member_id,
                position=w["position"])
    lot.result = {"winners": result.winners, "rerolls": result.rerolls}


def do_draw_lottery(tenant_id: int, lottery_id: int, *, beacon_value: str = "",
                    now: dt.datetime | None = None) -> Lottery:
    """Reveal the seed and derive the winners (``fairness.draw``); announce them through the outbox."""
    now = now or timezone.now()
    with transaction.atomic():
        lot = Lottery.objects.select_for_update().filter(tenant_id=tenant_id, pk=lottery_id).first()
        if lot is None:
            raise NotFound(_("抽奖不存在"), details={"field": "lottery_id"})
        if lot.status == Lottery.Status.DRAWN:
            return lot
        if lot.status != Lottery.Status.CLOSED or lot.snapshot is None:
            raise Conflict(_("请先截止报名并公布承诺"), code="lottery_not_closed")
        if lot.beacon and not (beacon_value or lot.beacon_value):
            raise Invalid(_("需要公共随机源 %(b)s 的值") % {"b": lot.beacon}, details={"field": "beacon_value"})
        lot.beacon_value = beacon_value or lot.beacon_value
        result = fairness.draw(lot.snapshot, seed_hex=lot.seed_hex, commitment=lot.commitment,
                               beacon_value=lot.beacon_value)
        _store_result(lot, result)
        lot.status, lot.drawn_at = Lottery.Status.DRAWN, now
        lot.save(update_fields=["result", "status", "drawn_at", "beacon_value"])
        _announce_winners(lot, "winners", result.winners)
    return lot


def _announce_winners(lot: Lottery, suffix: str, rows: Sequence[dict[str, Any]]) -> None:
    if lot.group_id is None or not rows:
        return
    names = dict(Member.objects.filter(tenant_id=lot.tenant_id, pk__in=[
        int(r["entrant"][1:]) for r in rows if r.get("entrant")]).values_list("pk", "display_name"))
    prizes = {f"p{p.pk}": p.name for p in LotteryPrize.objects.filter(lottery=lot)}
    lines = [f"{prizes.get(r['prize'], '')}: {names.get(int(r['entrant'][1:]), r['entrant'])}"
             for r in rows if r.get("entrant")]
    _announce(lot.tenant_id, lot.group_id, f"lottery:{lot.pk}:{suffix}",
              _("【%(t)s】开奖结果\n%(lines)s\n种子: %(s)s") % {"t": lot.title, "lines": "\n".join(lines),
                                                          "s": lot.seed_hex}, "engagement.lottery")


def do_reroll(principal: Principal, lottery_id: int, member_id: int, *, reason: str = "") -> LotteryWinner | None:
    """A winner forfeits; the next entrant of the same shuffle takes the prize (verifiable)."""
    with transaction.atomic():
        lot = Lottery.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=lottery_id).first()
        if lot is None:
            raise NotFound(_("抽奖不存在"), details={"field": "lottery_id"})
        if lot.status != Lottery.Status.DRAWN or lot.snapshot is None or lot.result is None:
            raise Conflict(_("尚未开奖"), code="lottery_not_drawn")
        winner = LotteryWinner.objects.filter(lottery=lot, member_id=member_id, status=LotteryWinner.Status.WON).first()
        if winner is None:
            raise NotFound(_("该会员不是有效中奖者"), details={"field": "member_id"})
        winner.status = LotteryWinner.Status.FORFEITED
        winner.save(update_fields=["status"])
        forfeited = [r["forfeited"] for r in lot.result.get("rerolls", [])] + [f"m{member_id}"]
        result = fairness.draw(lot.snapshot, seed_hex=lot.seed_hex, commitment=lot.commitment,
                               beacon_value=lot.beacon_value, forfeited=forfeited)
        _store_result(lot, result)
        lot.save(update_fields=["result"])
        new = result.rerolls[-1]
        _announce_winners(lot, f"reroll:{len(forfeited)}", [new])
        do_audit(principal, "engagement.lottery.reroll", "lottery", str(lot.pk), reason=reason,
                 data={"forfeited": member_id, "replacement": new})
        if new["entrant"] is None:
            return None
        return LotteryWinner.objects.get(lottery=lot, member_id=int(new["entrant"][1:]))


def do_run_due_lotteries(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Scheduled: close lotteries past ``closes_at``; draw closed ones past ``draw_at`` (those waiting
    for a public randomness value are left for an operator)."""
    now = now or timezone.now()
    closed = drawn = 0
    due = Lottery.objects.filter(status=Lottery.Status.OPEN, closes_at__lte=now).values_list("tenant_id", "pk")
    for tid, pk in due:
        do_close_lottery(tid, pk, now=now)
        closed += 1
    for tid, pk, beacon, value in Lottery.objects.filter(status=Lottery.Status.CLOSED, draw_at__lte=now).values_list(
            "tenant_id", "pk", "beacon", "beacon_value"):
        if beacon and not value:
            continue
        do_draw_lottery(tid, pk, now=now)
        drawn += 1
    return {"closed": closed, "drawn": drawn}
