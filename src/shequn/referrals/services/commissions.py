"""Commissions: who earns what, and when it becomes theirs.

The rule, in order:

1. **Plans.** An operator creates a one-level plan (:func:`do_create_plan`; a second level is
   refused, see :data:`LAW_NOTE`) with rules per product kind / product. For an order, the most
   specific active plan applies (:func:`select_plan`: community+campaign > community > campaign >
   general, then priority).
2. **Who.** On a ``paid`` order event (:func:`on_order_event` → ``_on_paid``) the buyer is bound to
   the referrer the order names (invite code or ``referrer_member_id``) per the binding policy
   (:mod:`.binding`); the buyer's active referrer earns. The buyer earns on their own purchase only
   when the plan allows ``self_purchase``.
3. **How much.** Per order line, the most specific rule (``_match_rule``: product id, then product
   kind) gives the amount (:func:`compute_line`: percent of the line or fixed per unit, never more
   than the line, capped by the rule's ``cap_fen``), then the plan's ``cap_per_order_fen`` caps the
   order. The plan and rule are copied into the commission (``_snapshot``), so later plan edits do
   not change past commissions.
4. **Alliance.** When the invite link belongs to another merchant of a shared alliance, the seller's
   alliance listing rate applies instead (``_alliance_paid``; alliances and statements are in
   :mod:`.alliance`).
5. **When.** A commission is ``frozen`` (pending) for the plan's refund window, then ``_thaw`` /
   :func:`do_thaw_due` makes it ``available`` (netting refund debt first). Fraud signals may hold
   it (:mod:`.fraud`; :func:`do_review_signal` releases or voids held ones).
6. **Refunds.** A ``refunded`` / ``cancelled`` event reverses the commission proportionally
   (``_reverse_commission``): from pending, or from available with the rest as refund debt
   (``clawback``).

Money rule for every function here: money moves only through :func:`shequn.ledger.services.do_post`
(conditional UPDATE per account, accounts in id order, idempotency key per posting). Commission rows
change state with conditional ``UPDATE ... WHERE state = <expected>`` (or ``select_for_update``) in
the same transaction as the posting, so a retried task or replayed event finds the state already
moved and posts nothing. Order events are recorded (``ProcessedOrderEvent``) in the transaction of
their effects, so a replay credits nothing twice."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.communities.models import Community
from shequn.core import webhooks
from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.models import WebhookEventType
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.ledger.models import Account, AccountKind
from shequn.ledger.services import do_post, lock_accounts
from shequn.members.models import Member

from .. import leaderboard
from ..models import (
    AllianceListing,
    AllianceMember,
    BuyerStat,
    Commission,
    CommissionPlan,
    CommissionRule,
    CommissionState,
    FraudSignal,
    FraudStatus,
    InviteLink,
    LinkEvent,
    LinkEventKind,
    ProcessedOrderEvent,
    RateMode,
)
from ..selectors import active_binding, buyer_fingerprint, plan_warnings
from ._common import _require, check_max_length, member_account, merchant_account
from .binding import try_bind
from .fission import _check_fission
from .fraud import _apply_fraud_checks, _refund_rate_check

log = logging.getLogger(__name__)


LAW_NOTE = _(
    "《禁止传销条例》第七条把“以发展人员的数量作为计酬依据”和“交纳入门费”列为传销特征; "
    "本系统只支持一级分佣(推荐人直接推荐的成交), 不支持二级及以上"
)


# --- plans and rules: how much -----------------------------------------------------------------


def check_levels(levels: int) -> None:
    if levels != 1:
        raise Invalid(
            _("不支持 %(n)d 级分佣: 只能按推荐人直接推荐的成交计佣(一级)。%(law)s") % {"n": levels, "law": LAW_NOTE},
            code="multi_level_refused", details={"field": "levels", "max": 1},
        )


def check_plan_fields(
    tenant_id: int, *, name: str, levels: int = 1, community_id: int | None = None, campaign: str = "",
    refund_window_days: int = 7, cap_per_order_fen: int | None = None,
) -> None:
    """The plan's own fields (everything but its rules)."""
    check_levels(levels)
    if not name or not name.strip():
        raise Invalid(_("方案名称不能为空"), details={"field": "name"})
    check_max_length(CommissionPlan, "name", name.strip())
    check_max_length(CommissionPlan, "campaign", campaign)
    if refund_window_days < 0 or refund_window_days > 180:
        raise Invalid(_("冻结期须在 0–180 天之间"), details={"field": "refund_window_days"})
    if cap_per_order_fen is not None and cap_per_order_fen < 0:
        raise Invalid(_("每单佣金上限不能为负"), details={"field": "cap_per_order_fen"})
    if community_id and not Community.objects.filter(tenant_id=tenant_id, pk=community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "community_id"})


def check_plan_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A plan's rules: one level only, known modes, rates 0–100 %, no negative money; returns them
    cleaned. An error names ``rules[<i>].<field>``."""
    if not rules:
        raise Invalid(_("至少需要一条佣金规则"), details={"field": "rules"})
    checked: list[dict[str, Any]] = []
    for i, raw in enumerate(rules):
        field_prefix = f"rules[{i}]"
        if int(raw.get("level", 1)) != 1:
            try:
                check_levels(int(raw["level"]))
            except Invalid as exc:
                exc.details = {"field": f"{field_prefix}.level", "max": 1}
                raise
        mode = raw.get("mode", RateMode.PERCENT)
        if mode not in RateMode.values:
            raise Invalid(_("第 %(n)d 条规则: 未知的计佣方式 %(m)s") % {"n": i + 1, "m": mode},
                          details={"field": f"{field_prefix}.mode"})
        rate = int(raw.get("rate_bps", 0) or 0)
        fixed = int(raw.get("fixed_fen", 0) or 0)
        if not 0 <= rate <= 10000:
            raise Invalid(_("第 %(n)d 条规则: 比例须在 0–100%% 之间") % {"n": i + 1},
                          details={"field": f"{field_prefix}.rate_bps"})
        if fixed < 0:
            raise Invalid(_("第 %(n)d 条规则: 固定佣金不能为负") % {"n": i + 1},
                          details={"field": f"{field_prefix}.fixed_fen"})
        if (mode == RateMode.PERCENT and rate == 0) or (mode == RateMode.FIXED and fixed == 0):
            raise Invalid(_("第 %(n)d 条规则: 佣金为 0, 请填写比例或固定佣金") % {"n": i + 1},
                          details={"field": f"{field_prefix}.rate_bps" if mode == RateMode.PERCENT
                                   else f"{field_prefix}.fixed_fen"})
        cap = raw.get("cap_fen")
        if cap is not None and cap < 0:
            raise Invalid(_("第 %(n)d 条规则: 佣金上限不能为负") % {"n": i + 1},
                          details={"field": f"{field_prefix}.cap_fen"})
        kind = raw.get("product_kind", "") or ""
        if kind not in ("", "goods", "tier"):
            raise Invalid(_("第 %(n)d 条规则: 商品类型须为 goods 或 tier") % {"n": i + 1},
                          details={"field": f"{field_prefix}.product_kind"})
        product_id = str(raw.get("product_id", "") or "")
        check_max_length(CommissionRule, "product_id", product_id, field=f"{field_prefix}.product_id", rule=i + 1)
        checked.append({"product_kind": kind, "product_id": product_id, "mode": mode, "rate_bps": rate,
                        "fixed_fen": fixed, "cap_fen": cap})
    return checked


def check_plan(
    tenant_id: int, *, name: str, rules: list[dict[str, Any]], levels: int = 1, community_id: int | None = None,
    campaign: str = "", refund_window_days: int = 7, self_purchase: bool = False,
    cap_per_order_fen: int | None = None, priority: int = 0,
) -> list[dict[str, Any]]:
    """Every rule of :func:`do_create_plan`, without writing; returns the cleaned rules."""
    check_plan_fields(tenant_id, name=name, levels=levels, community_id=community_id, campaign=campaign,
                      refund_window_days=refund_window_days, cap_per_order_fen=cap_per_order_fen)
    return check_plan_rules(rules)


@transaction.atomic
def do_create_plan(
    principal: Principal,
    *,
    name: str,
    rules: list[dict[str, Any]],
    levels: int = 1,
    community_id: int | None = None,
    campaign: str = "",
    refund_window_days: int = 7,
    self_purchase: bool = False,
    cap_per_order_fen: int | None = None,
    priority: int = 0,
) -> tuple[CommissionPlan, list[str]]:
    """Create a one-level plan with its rules; returns ``(plan, warnings)``. A second level (plan
    ``levels`` > 1 or any rule with ``level`` > 1) is refused with the legal explanation. Every
    field and rule is checked before anything is written (caps not negative, strings within the
    columns' lengths); an error names the field (``rules[<i>].<field>`` for a rule)."""
    checked = check_plan(principal.tenant_id, name=name, rules=rules, levels=levels, community_id=community_id,
                         campaign=campaign, refund_window_days=refund_window_days, self_purchase=self_purchase,
                         cap_per_order_fen=cap_per_order_fen, priority=priority)
    plan = CommissionPlan.objects.create(
        tenant_id=principal.tenant_id, name=name.strip(), community_id=community_id, campaign=campaign,
        refund_window_days=refund_window_days, self_purchase=self_purchase, cap_per_order_fen=cap_per_order_fen,
        priority=priority,
    )
    for rule in checked:
        CommissionRule.objects.create(tenant_id=principal.tenant_id, plan=plan, **rule)
    warnings = plan_warnings(plan)
    do_audit(principal, "referrals.plan.create", "CommissionPlan", plan.pk, data={"warnings": warnings})
    return plan, warnings


@transaction.atomic
def do_update_plan(
    principal: Principal, plan_id: int, *, name: str, rules: list[dict[str, Any]],
    community_id: int | None = None, campaign: str = "", refund_window_days: int = 7, self_purchase: bool = False,
    cap_per_order_fen: int | None = None, priority: int = 0, is_active: bool = True, levels: int = 1,
) -> tuple[CommissionPlan, list[str]]:
    """Change a plan and replace its rules, held to :func:`check_plan`. Commissions already earned
    keep the rule snapshot taken when their order was paid."""
    plan = CommissionPlan.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=plan_id).first()
    if plan is None:
        raise NotFound(_("佣金方案不存在"), details={"field": "plan_id"})
    checked = check_plan(principal.tenant_id, name=name, rules=rules, levels=levels, community_id=community_id,
                         campaign=campaign, refund_window_days=refund_window_days, self_purchase=self_purchase,
                         cap_per_order_fen=cap_per_order_fen, priority=priority)
    plan.name, plan.community_id, plan.campaign = name.strip(), community_id, campaign
    plan.refund_window_days, plan.self_purchase = refund_window_days, self_purchase
    plan.cap_per_order_fen, plan.priority, plan.is_active = cap_per_order_fen, priority, is_active
    plan.save()
    plan.rules.all().delete()
    for rule in checked:
        CommissionRule.objects.create(tenant_id=principal.tenant_id, plan=plan, **rule)
    warnings = plan_warnings(plan)
    do_audit(principal, "referrals.plan.update", "CommissionPlan", plan.pk, data={"warnings": warnings})
    return plan, warnings


def _plan_changes(plan: CommissionPlan, changes: dict[str, Any]) -> dict[str, Any]:
    current: dict[str, Any] = {
        "name": plan.name, "community_id": plan.community_id, "campaign": plan.campaign,
        "refund_window_days": plan.refund_window_days, "self_purchase": plan.self_purchase,
        "cap_per_order_fen": plan.cap_per_order_fen, "priority": plan.priority, "is_active": plan.is_active,
        "levels": 1,
        "rules": [{k: getattr(r, k) for k in ("product_kind", "product_id", "mode", "rate_bps", "fixed_fen", "cap_fen")}
                  for r in plan.rules.order_by("pk")],
    }
    for name in changes:
        if name not in current:
            raise Invalid(_("不能修改的字段: %(f)s") % {"f": name}, details={"field": name})
    return {**current, **changes}


def check_change_plan(tenant_id: int, plan_id: int, **changes: Any) -> None:
    """Every rule of :func:`do_change_plan`, without writing."""
    plan = CommissionPlan.objects.filter(tenant_id=tenant_id, pk=plan_id).first()
    if plan is None:
        raise NotFound(_("佣金方案不存在"), details={"field": "plan_id"})
    values = _plan_changes(plan, changes)
    values.pop("is_active")
    check_plan(tenant_id, **values)


@transaction.atomic
def do_change_plan(principal: Principal, plan_id: int, **changes: Any) -> tuple[CommissionPlan, list[str]]:
    """A partial change (``PATCH``): the fields given, merged with the plan's current values (``rules``
    replaces the whole list), then :func:`do_update_plan` — the same checks, the same audit."""
    plan = CommissionPlan.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=plan_id).first()
    if plan is None:
        raise NotFound(_("佣金方案不存在"), details={"field": "plan_id"})
    return do_update_plan(principal, plan_id, **_plan_changes(plan, changes))


@transaction.atomic
def do_set_plan_active(principal: Principal, plan_id: int, *, active: bool) -> CommissionPlan:
    """Pause (no new commissions from this plan) or resume a plan."""
    plan = CommissionPlan.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=plan_id).first()
    if plan is None:
        raise NotFound(_("佣金方案不存在"), details={"field": "plan_id"})
    if plan.is_active != active:
        plan.is_active = active
        plan.save(update_fields=["is_active"])
        do_audit(principal, "referrals.plan.resume" if active else "referrals.plan.pause", "CommissionPlan", plan.pk)
    return plan


def select_plan(tenant_id: int, community_id: int | None, campaign: str) -> CommissionPlan | None:
    """The most specific active plan: community+campaign > community > campaign > general; then priority."""
    plans = CommissionPlan.objects.filter(tenant_id=tenant_id, is_active=True).filter(
        Q(community_id__isnull=True) | Q(community_id=community_id)).filter(Q(campaign="") | Q(campaign=campaign))
    best: CommissionPlan | None = None
    best_key: tuple[int, int, int, int] | None = None
    for plan in plans:
        key = (int(plan.community_id is not None), int(bool(plan.campaign)), plan.priority, -plan.pk)
        if best_key is None or key > best_key:
            best, best_key = plan, key
    return best


def _match_rule(rules: list[CommissionRule], line: dict[str, Any]) -> CommissionRule | None:
    pid = str(line.get("product_id") or "")
    kind = str(line.get("product_kind") or "")
    ranked = sorted(
        (r for r in rules
         if (not r.product_id or r.product_id == pid) and (not r.product_kind or r.product_kind == kind)),
        key=lambda r: (bool(r.product_id), bool(r.product_kind)), reverse=True,
    )
    return ranked[0] if ranked else None


def compute_line(mode: str, rate_bps: int, fixed_fen: int, cap_fen: int | None, line: dict[str, Any]) -> int:
    amount = int(line.get("amount_fen") or 0)
    qty = int(line.get("quantity") or 1)
    value = amount * rate_bps // 10000 if mode == RateMode.PERCENT else fixed_fen * qty
    value = min(value, amount)  # never more than the line itself
    if cap_fen is not None:
        value = min(value, cap_fen)
    return max(value, 0)


def _snapshot(plan: CommissionPlan, rule: CommissionRule) -> dict[str, Any]:
    return {"plan_id": plan.pk, "name": plan.name, "levels": plan.levels,
            "refund_window_days": plan.refund_window_days, "self_purchase": plan.self_purchase,
            "cap_per_order_fen": plan.cap_per_order_fen,
            "rule": {"id": rule.pk, "product_kind": rule.product_kind, "product_id": rule.product_id,
                     "mode": rule.mode, "rate_bps": rule.rate_bps, "fixed_fen": rule.fixed_fen,
                     "cap_fen": rule.cap_fen}}


# --- order events: who earns -------------------------------------------------------------------


class OrderEvent(Protocol):
    """The shape of ``shequn.commerce.events.OrderEventData`` (duck-typed: no import of commerce)."""

    tenant_id: int
    event_id: Any
    kind: str
    order_id: Any
    member_id: int | None
    amount_fen: int
    lines: list[dict[str, Any]]
    attribution: dict[str, Any]
    occurred_at: datetime | None


def on_order_event(data: OrderEvent) -> None:
    """Handle one order event from commerce (``paid`` / ``refunded`` / ``cancelled`` / ``completed``).

    Idempotent on ``(tenant, event_id)``: the event is recorded in the same transaction as its
    effects, so a replay (or a retried task) returns without crediting again; each commission is also
    unique per order line and each posting has its own ledger idempotency key."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                ProcessedOrderEvent.objects.create(tenant_id=data.tenant_id, event_id=str(data.event_id),
                                                   kind=data.kind)
        except IntegrityError:
            return
        if data.kind == "paid":
            _on_paid(data)
        elif data.kind in ("refunded", "cancelled"):
            _on_refund(data)


def _on_paid(data: OrderEvent) -> None:
    tid = data.tenant_id
    now = data.occurred_at or timezone.now()
    if not data.member_id:
        return
    buyer = Member.objects.filter(tenant_id=tid, pk=data.member_id).first()
    if buyer is None:
        return
    stat, _created = BuyerStat.objects.select_for_update().get_or_create(tenant_id=tid, member=buyer)
    stat_before = BuyerStat(tenant_id=tid, member=buyer, paid_orders=stat.paid_orders, first_paid_at=stat.first_paid_at)
    stat.paid_orders += 1
    stat.first_paid_at = stat.first_paid_at or now
    stat.save(update_fields=["paid_orders", "first_paid_at"])

    attribution = data.attribution or {}
    code = str(attribution.get("invite_code") or "")
    link = InviteLink.objects.filter(code=code).first() if code else None
    if link is not None and link.tenant_id != tid:
        _alliance_paid(data, link, buyer)
        return
    community_id = attribution.get("community_id") or (link.community_id if link else None)
    campaign = str(attribution.get("campaign") or (link.campaign if link else "") or "")
    explicit = attribution.get("referrer_member_id") or (link.member_id if link else None)
    refused = ""
    if explicit and int(explicit) != buyer.pk:
        _b, refused = try_bind(tid, buyer, int(explicit), link=link, now=now, stat_before=stat_before)
    binding = active_binding(tid, buyer.pk, now)
    plan = select_plan(tid, community_id, campaign)
    referrer_id: int | None = binding.referrer_id if binding else None
    if explicit and int(explicit) == buyer.pk and plan is not None and plan.self_purchase:
        referrer_id = buyer.pk
    attr_link = link or (binding.link if binding else None)
    if attr_link is not None:
        ip, device = buyer_fingerprint(tid, buyer.pk)
        LinkEvent.objects.create(tenant_id=tid, link=attr_link, kind=LinkEventKind.PURCHASE, member=buyer,
                                 ip=ip, device_id=device, order_id=str(data.order_id), amount_fen=data.amount_fen,
                                 occurred_at=now)
    if referrer_id is None or plan is None:
        if refused:
            log.info("order %s: referral not bound (%s)", data.order_id, refused)
        return
    if referrer_id == buyer.pk and not plan.self_purchase:
        return
    rules = list(plan.rules.all())
    remaining_cap = plan.cap_per_order_fen
    created: list[Commission] = []
    for line in data.lines:
        rule = _match_rule(rules, line)
        if rule is None:
            continue
        amount = compute_line(rule.mode, rule.rate_bps, rule.fixed_fen, rule.cap_fen, line)
        if remaining_cap is not None:
            amount = min(amount, remaining_cap)
            remaining_cap -= amount
        if amount <= 0:
            continue
        c = Commission.objects.create(
            tenant_id=tid, event_id=str(data.event_id), order_id=str(data.order_id),
            order_line_id=str(line.get("order_line_id")), product_id=str(line.get("product_id") or ""),
            product_kind=str(line.get("product_kind") or ""), referrer_id=referrer_id, buyer_id=buyer.pk,
            buyer_name=buyer.display_name, payer_tenant_id=tid, plan=plan, plan_snapshot=_snapshot(plan, rule),
            community_id_snapshot=community_id, campaign=campaign, invite_code=attr_link.code if attr_link else "",
            base_fen=int(line.get("amount_fen") or 0), amount_fen=amount, state=CommissionState.FROZEN,
            paid_at=now, thaw_at=now + timedelta(days=plan.refund_window_days),
        )
        do_post(tid, f"comm:{c.pk}:accrue", "commission.accrue",
                [(merchant_account(tid, AccountKind.COMMISSION_EXPENSE), -amount),
                 (member_account(tid, referrer_id, AccountKind.COMMISSION_PENDING), amount)],
                memo=f"佣金 订单 {data.order_id}", ref=("order_line", c.order_line_id))
        created.append(c)
    if not created:
        return
    held = _apply_fraud_checks(tid, referrer_id, buyer, created, now=now, binding=binding)
    for c in created:
        if not held and c.thaw_at <= now:
            _thaw(c, now)
    total = sum(c.amount_fen for c in created)
    scopes = leaderboard.scopes_for(community_id, campaign)
    leaderboard.do_bump(tid, "referrals", scopes, referrer_id, 1, at=now)
    leaderboard.do_bump(tid, "commission", scopes, referrer_id, total, at=now)
    _check_fission(tid, referrer_id, community_id, campaign, now)


def _alliance_paid(data: OrderEvent, link: InviteLink, buyer: Member) -> None:
    """A member of merchant A (link's tenant) sold merchant B's product (the order's tenant): B pays
    A's member per B's alliance listing (the alliance rate's only use; listings are managed in
    :mod:`.alliance`). Two postings: in B's books expense → payable to A; in A's
    books receivable from B → the member's pending commission."""
    seller_tid, earner_tid = data.tenant_id, link.tenant_id
    if not link.member_id:
        return
    def alliances(tid: int) -> set[int]:
        return set(AllianceMember.objects.filter(tenant_id=tid, is_active=True).values_list("alliance_id", flat=True))

    shared = alliances(seller_tid) & alliances(earner_tid)
    if not shared:
        return
    now = data.occurred_at or timezone.now()
    created = False
    for line in data.lines:
        listing = AllianceListing.objects.filter(alliance_id__in=shared, tenant_id=seller_tid, is_active=True,
                                                 product_id=str(line.get("product_id") or "")).first()
        if listing is None:
            continue
        amount = compute_line(listing.mode, listing.rate_bps, listing.fixed_fen, None, line)
        if amount <= 0:
            continue
        c = Commission.objects.create(
            tenant_id=earner_tid, event_id=str(data.event_id), order_id=str(data.order_id),
            order_line_id=str(line.get("order_line_id")), product_id=str(line.get("product_id") or ""),
            product_kind=str(line.get("product_kind") or ""), referrer_id=link.member_id, buyer_id=buyer.pk,
            buyer_name=buyer.display_name, payer_tenant_id=seller_tid, alliance_id=listing.alliance_id,
            plan_snapshot={"alliance_listing_id": listing.pk, "mode": listing.mode, "rate_bps": listing.rate_bps,
                           "fixed_fen": listing.fixed_fen, "refund_window_days": listing.refund_window_days,
                           "levels": 1},
            campaign=link.campaign, invite_code=link.code, base_fen=int(line.get("amount_fen") or 0),
            amount_fen=amount, state=CommissionState.FROZEN, paid_at=now,
            thaw_at=now + timedelta(days=listing.refund_window_days))
        do_post(seller_tid, f"alli:{c.pk}:payable", "alliance.accrue",
                [(merchant_account(seller_tid, AccountKind.COMMISSION_EXPENSE), -amount),
                 (merchant_account(seller_tid, AccountKind.MERCHANT_PAYABLE, earner_tid), amount)],
                memo=f"联盟佣金 订单 {data.order_id}", ref=("order_line", c.order_line_id))
        do_post(earner_tid, f"comm:{c.pk}:accrue", "commission.accrue",
                [(merchant_account(earner_tid, AccountKind.MERCHANT_RECEIVABLE, seller_tid), -amount),
                 (member_account(earner_tid, link.member_id, AccountKind.COMMISSION_PENDING), amount)],
                memo=f"联盟佣金 订单 {data.order_id}", ref=("order_line", c.order_line_id))
        LinkEvent.objects.create(tenant_id=earner_tid, link=link, kind=LinkEventKind.PURCHASE,
                                 order_id=str(data.order_id), amount_fen=int(line.get("amount_fen") or 0),
                                 occurred_at=now)
        if c.thaw_at <= now:
            _thaw(c, now)
        leaderboard.do_bump(earner_tid, "commission", leaderboard.scopes_for(None, link.campaign), link.member_id,
                            amount, at=now)
        created = True
    if created:
        scopes = leaderboard.scopes_for(None, link.campaign)
        leaderboard.do_bump(earner_tid, "referrals", scopes, link.member_id, 1, at=now)


# --- thaw and reversal: when it is theirs, and taking it back ----------------------------------


def _thaw(c: Commission, now: datetime) -> bool:
    """frozen → available: move pending to available, netting any refund debt (clawback) first."""
    if not Commission.objects.filter(pk=c.pk, state=CommissionState.FROZEN).update(
            state=CommissionState.AVAILABLE, available_at=now):
        return False
    tid = c.tenant_id
    amount = c.amount_fen - c.reversed_fen
    pending = member_account(tid, c.referrer_id, AccountKind.COMMISSION_PENDING)
    avail = member_account(tid, c.referrer_id, AccountKind.AVAILABLE)
    claw = member_account(tid, c.referrer_id, AccountKind.CLAWBACK)
    debt = {a.pk: a.balance_fen for a in lock_accounts([pending, avail, claw])}[claw.pk]
    net = min(amount, -debt) if debt < 0 else 0
    lines: list[tuple[Account | int, int]] = [(pending, -amount), (avail, amount - net)]
    if net:
        lines.append((claw, net))
    if amount:
        do_post(tid, f"comm:{c.pk}:thaw", "commission.thaw", lines, memo=f"佣金解冻 订单 {c.order_id}",
                ref=("order_line", c.order_line_id))
    c.state = CommissionState.AVAILABLE
    webhooks.emit(tid, WebhookEventType.COMMISSION_AVAILABLE, f"commission:{c.pk}:available", {
        "commission_id": c.pk, "member_id": c.referrer_id, "order_id": c.order_id, "amount_fen": amount,
        "available_at": now})
    return True


def do_thaw_due(now: datetime | None = None, tenant_id: int | None = None, limit: int = 1000) -> int:
    """Thaw every frozen commission whose refund window has ended. Safe to run concurrently and to
    retry: each commission moves state with a conditional UPDATE inside its own transaction."""
    now = now or timezone.now()
    qs = Commission.objects.filter(state=CommissionState.FROZEN, thaw_at__lte=now)
    if tenant_id is not None:
        qs = qs.filter(tenant_id=tenant_id)
    n = 0
    for c in list(qs.order_by("thaw_at")[:limit]):
        with transaction.atomic():
            if _thaw(c, now):
                n += 1
    return n


def _reverse_commission(c: Commission, amount: int, key: str, now: datetime) -> int:
    """Take back ``amount`` of commission ``c``: from pending if not yet available (void), else from
    available, and what is no longer there becomes refund debt on ``clawback`` (netted against future
    earnings; withdrawals are blocked while it is negative). Returns the amount reversed."""
    c = Commission.objects.select_for_update().get(pk=c.pk)
    amount = min(amount, c.amount_fen - c.reversed_fen)
    if amount <= 0 or c.state in (CommissionState.VOID, CommissionState.CLAWED_BACK):
        return 0
    tid = c.tenant_id
    counter = (merchant_account(tid, AccountKind.MERCHANT_RECEIVABLE, c.payer_tenant_id) if c.alliance_id
               else merchant_account(tid, AccountKind.COMMISSION_EXPENSE))
    if c.state in (CommissionState.FROZEN, CommissionState.HELD):
        lines: list[tuple[Account | int, int]] = [
            (member_account(tid, c.referrer_id, AccountKind.COMMISSION_PENDING), -amount), (counter, amount)]
    else:
        avail = member_account(tid, c.referrer_id, AccountKind.AVAILABLE)
        claw = member_account(tid, c.referrer_id, AccountKind.CLAWBACK)
        locked = {a.pk: a for a in lock_accounts([avail, claw])}
        take = min(amount, max(locked[avail.pk].balance_fen, 0))
        lines = [(avail, -take), (counter, amount)]
        if amount - take:
            lines.append((claw, -(amount - take)))
    do_post(tid, key, "commission.reverse", lines, memo=f"退款冲回佣金 订单 {c.order_id}",
            ref=("order_line", c.order_line_id))
    if c.alliance_id:
        ptid = c.payer_tenant_id
        do_post(ptid, key + ":payer", "alliance.reverse",
                [(merchant_account(ptid, AccountKind.MERCHANT_PAYABLE, tid), -amount),
                 (merchant_account(ptid, AccountKind.COMMISSION_EXPENSE), amount)],
                memo=f"联盟佣金冲回 订单 {c.order_id}", ref=("order_line", c.order_line_id))
    c.reversed_fen += amount
    if c.reversed_fen >= c.amount_fen:
        c.state = (CommissionState.VOID if c.state in (CommissionState.FROZEN, CommissionState.HELD)
                   else CommissionState.CLAWED_BACK)
    c.save(update_fields=["reversed_fen", "state"])
    return amount


def _on_refund(data: OrderEvent) -> None:
    tid = data.tenant_id
    now = data.occurred_at or timezone.now()
    comms = list(Commission.objects.filter(payer_tenant_id=tid, order_id=str(data.order_id)).order_by("pk"))
    if not comms:
        return
    by_line = {str(line.get("order_line_id")): line for line in (data.lines or [])}
    whole = not by_line or data.kind == "cancelled"
    referrer_totals: dict[tuple[int, int], int] = {}
    for c in comms:
        if whole:
            amount = c.amount_fen
        elif c.order_line_id in by_line:
            refunded = int(by_line[c.order_line_id].get("amount_fen") or 0)
            amount = c.amount_fen if refunded >= c.base_fen else c.amount_fen * refunded // max(c.base_fen, 1)
        else:
            continue
        took = _reverse_commission(c, amount, f"comm:{c.pk}:rev:{data.event_id}", now)
        if took:
            key = (c.tenant_id, c.referrer_id)
            referrer_totals[key] = referrer_totals.get(key, 0) + took
    for (ctid, referrer_id), took in referrer_totals.items():
        sample = next(c for c in comms if c.referrer_id == referrer_id and c.tenant_id == ctid)
        scopes = leaderboard.scopes_for(sample.community_id_snapshot, sample.campaign)
        leaderboard.do_bump(ctid, "commission", scopes, referrer_id, -took, at=now)
        order_all_void = not Commission.objects.filter(
            payer_tenant_id=tid, order_id=str(data.order_id), referrer_id=referrer_id,
            reversed_fen__lt=F("amount_fen")).exists()
        if order_all_void:
            leaderboard.do_bump(ctid, "referrals", scopes, referrer_id, -1, at=now)
    _refund_rate_check(tid, {r for (_t, r) in referrer_totals}, now)


# --- fraud review: release or void held commissions ---------------------------------------------


@transaction.atomic
def do_review_signal(principal: Principal, signal_id: int, *, decision: str, note: str = "") -> FraudSignal:
    """Clear (release held commissions) or confirm (void them) a fraud signal."""
    _require(principal, "referrals.write")
    if decision not in (FraudStatus.CLEARED, FraudStatus.CONFIRMED):
        raise Invalid(_("审核结果须为 cleared 或 confirmed"), details={"field": "decision"})
    signal = FraudSignal.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=signal_id).first()
    if signal is None:
        raise NotFound(_("风险信号不存在"))
    if signal.status != FraudStatus.OPEN:
        raise Conflict(_("该信号已审核"), code="already_reviewed")
    now = timezone.now()
    signal.status, signal.reviewed_by, signal.reviewed_at = decision, principal.label, now
    signal.save(update_fields=["status", "reviewed_by", "reviewed_at"])
    if signal.commission_id:
        held = Commission.objects.filter(tenant_id=principal.tenant_id, order_id=signal.order_id,
                                         referrer_id=signal.referrer_id, state=CommissionState.HELD)
        if decision == FraudStatus.CONFIRMED:
            for c in held:
                _reverse_commission(c, c.amount_fen, f"comm:{c.pk}:fraud", now)
        elif not FraudSignal.objects.filter(tenant_id=principal.tenant_id, order_id=signal.order_id,
                                            status=FraudStatus.OPEN, blocking=True).exists():
            for c in held:
                Commission.objects.filter(pk=c.pk, state=CommissionState.HELD).update(state=CommissionState.FROZEN)
                c.state = CommissionState.FROZEN
                if c.thaw_at <= now:
                    _thaw(c, now)
    do_audit(principal, f"referrals.fraud.{decision}", "FraudSignal", signal.pk, reason=note)
    return signal
