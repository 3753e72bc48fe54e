"""Referral services: links and attribution, binding, one-level commission plans, the order-event
handler, the commission lifecycle on the ledger, withdrawals, fission rewards, fraud review and the
merchant alliance.

Money rule for every function here: money moves only through :func:`shequn.ledger.services.do_post`
(conditional UPDATE per account, accounts in id order, idempotency key per posting). Commission and
withdrawal rows change state with conditional ``UPDATE ... WHERE state = <expected>`` (or
``select_for_update``) in the same transaction as the posting, so a retried task or replayed event
finds the state already moved and posts nothing."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.communities.models import ChatGroup, Community, Membership
from shequn.core.errors import Conflict, Forbidden, Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.ledger.models import Account, AccountKind, OwnerType
from shequn.ledger.services import do_post, get_account, lock_accounts
from shequn.members.models import Member

from . import leaderboard
from .models import (
    Alliance,
    AllianceListing,
    AllianceMember,
    AllianceStatement,
    AllianceStatementLine,
    BindingMode,
    BuyerStat,
    Commission,
    CommissionPlan,
    CommissionRule,
    CommissionState,
    FissionReward,
    FissionTask,
    FraudKind,
    FraudSignal,
    FraudStatus,
    InviteLink,
    LinkEvent,
    LinkEventKind,
    LinkKind,
    ProcessedOrderEvent,
    RateMode,
    ReferralBinding,
    ReferralPolicy,
    RewardKind,
    Withdrawal,
    WithdrawalEvent,
    WithdrawalStatus,
)
from .payouts import FAILED, NOT_FOUND, PROCESSING, SUCCESS, PayoutResult, get_provider

log = logging.getLogger(__name__)

LAW_NOTE = _(
    "《禁止传销条例》第七条把“以发展人员的数量作为计酬依据”和“交纳入门费”列为传销特征; "
    "本系统只支持一级分佣(推荐人直接推荐的成交), 不支持二级及以上"
)


def _require(principal: Principal, permission: str) -> None:
    if not principal.can(permission):
        raise Forbidden(_("没有权限: %(perm)s") % {"perm": permission}, details={"permission": permission})


# --- accounts -----------------------------------------------------------------------------------


def member_account(tenant_id: int, member_id: int, kind: str) -> Account:
    """A member's ledger account; only ``clawback`` may go negative (refund debt to be netted)."""
    return get_account(tenant_id, OwnerType.MEMBER, member_id, kind, allow_negative=kind == AccountKind.CLAWBACK)


def merchant_account(tenant_id: int, kind: str, owner_tenant_id: int | None = None) -> Account:
    """A merchant-side account in ``tenant_id``'s books (expense, fees, alliance payable/receivable
    where ``owner_tenant_id`` is the counterparty). These may go negative (expense accounts)."""
    return get_account(tenant_id, OwnerType.MERCHANT, owner_tenant_id or tenant_id, kind, allow_negative=True)


def get_policy(tenant_id: int) -> ReferralPolicy:
    policy = ReferralPolicy.objects.filter(tenant_id=tenant_id).first()
    if policy is None:
        try:
            with transaction.atomic():
                policy = ReferralPolicy.objects.create(tenant_id=tenant_id)
        except IntegrityError:
            policy = ReferralPolicy.objects.get(tenant_id=tenant_id)
    return policy


# --- links and attribution ------------------------------------------------------------------------


def _new_code() -> str:
    alphabet = "23456789abcdefghjkmnpqrstuvwxyz"
    return "".join(secrets.choice(alphabet) for _i in range(8))


@transaction.atomic
def do_get_or_create_link(
    principal: Principal,
    *,
    kind: str = LinkKind.MEMBER,
    member_id: int | None = None,
    community_id: int | None = None,
    campaign: str = "",
    channel: str = "",
    label: str = "",
    group_ids: list[int] | None = None,
) -> InviteLink:
    """The invite link for (kind, member, community, campaign, channel), created once."""
    tid = principal.tenant_id
    if kind not in LinkKind.values:
        raise Invalid(_("未知的链接类型: %(k)s") % {"k": kind}, details={"field": "kind"})
    if kind == LinkKind.MEMBER and not member_id:
        raise Invalid(_("会员邀请链接必须指定推荐人"), details={"field": "member_id"})
    if kind == LinkKind.CHANNEL and not channel:
        raise Invalid(_("渠道码必须填写渠道名称"), details={"field": "channel"})
    if kind == LinkKind.GROUP_LIVE and not community_id:
        raise Invalid(_("群活码必须指定社群"), details={"field": "community_id"})
    if member_id and not Member.objects.filter(tenant_id=tid, pk=member_id).exists():
        raise NotFound(_("会员不存在"), details={"field": "member_id"})
    if community_id and not Community.objects.filter(tenant_id=tid, pk=community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "community_id"})
    if group_ids:
        found = set(ChatGroup.objects.filter(tenant_id=tid, pk__in=group_ids, community_id=community_id or 0)
                    .values_list("pk", flat=True))
        missing = [g for g in group_ids if g not in found]
        if missing:
            raise Invalid(_("群不存在或不属于该社群: %(g)s") % {"g": missing}, details={"field": "group_ids"})
    lookup: dict[str, Any] = {"tenant_id": tid, "kind": kind, "member_id": member_id, "community_id": community_id,
              "campaign": campaign, "channel": channel}
    link = InviteLink.objects.filter(**lookup).first()
    if link is not None:
        return link
    for _attempt in range(5):
        try:
            with transaction.atomic():
                link = InviteLink.objects.create(**lookup, code=_new_code(), label=label, group_ids=group_ids or [])
            do_audit(principal, "referrals.link.create", "InviteLink", link.pk, data={"code": link.code})
            return link
        except IntegrityError:
            existing = InviteLink.objects.filter(**lookup).first()
            if existing is not None:
                return existing
    raise Conflict(_("生成短码失败, 请重试"))


def route_group_live(link: InviteLink) -> ChatGroup | None:
    """The next group with room for a group live code (群活码): groups in id order, first one whose
    open memberships are below its capacity."""
    groups = ChatGroup.objects.filter(tenant_id=link.tenant_id, community_id=link.community_id or 0, is_active=True)
    if link.group_ids:
        groups = groups.filter(pk__in=link.group_ids)
    groups = groups.annotate(
        open_n=Count("memberships", filter=Q(memberships__left_at__isnull=True))
    ).order_by("pk")
    for group in groups:
        if group.open_n < group.capacity:
            return group
    return None


@dataclass
class ClickResult:
    link: InviteLink
    group: ChatGroup | None = None
    binding: ReferralBinding | None = None
    refused: str = ""


@transaction.atomic
def do_record_click(code: str, *, member_id: int | None = None, ip: str | None = None, device_id: str = "",
                    now: datetime | None = None) -> ClickResult:
    """Attribute a click on ``code``; bind the clicking member (if known) per the tenant's policy; for
    a group live code, route to the next group with room. A ``member_id`` that is not the link's
    tenant's member is :class:`NotFound`."""
    now = now or timezone.now()
    link = InviteLink.objects.filter(code=code, is_active=True).first()
    if link is None:
        raise NotFound(_("邀请链接不存在或已停用"), details={"field": "code"})
    result = ClickResult(link=link)
    if link.kind == LinkKind.GROUP_LIVE:
        result.group = route_group_live(link)
    member = Member.objects.filter(tenant_id=link.tenant_id, pk=member_id).first() if member_id else None
    if member_id and member is None:  # another tenant's member (or none): never attributed, not silently dropped
        raise NotFound(_("会员不存在"), details={"field": "member_id"})
    LinkEvent.objects.create(tenant_id=link.tenant_id, link=link, kind=LinkEventKind.CLICK, member=member,
                             group=result.group, ip=ip or None, device_id=device_id[:128], occurred_at=now)
    if member is not None and link.member_id:
        result.binding, result.refused = try_bind(link.tenant_id, member, link.member_id, link=link, now=now)
    return result


@transaction.atomic
def do_record_join(tenant_id: int, *, member_id: int, code: str, group_id: int | None = None,
                   now: datetime | None = None) -> LinkEvent:
    """Attribute a join (member entered a community/group through ``code``) and bind."""
    now = now or timezone.now()
    link = InviteLink.objects.filter(tenant_id=tenant_id, code=code).first()
    if link is None:
        raise NotFound(_("邀请链接不存在"), details={"field": "code"})
    member = Member.objects.filter(tenant_id=tenant_id, pk=member_id).first()
    if member is None:
        raise NotFound(_("会员不存在"), details={"field": "member_id"})
    last_click = (LinkEvent.objects.filter(tenant_id=tenant_id, member=member, kind=LinkEventKind.CLICK)
                  .order_by("-occurred_at").first())
    event = LinkEvent.objects.create(
        tenant_id=tenant_id, link=link, kind=LinkEventKind.JOIN, member=member, group_id=group_id,
        ip=last_click.ip if last_click else None, device_id=last_click.device_id if last_click else "",
        occurred_at=now,
    )
    if link.member_id:
        try_bind(tenant_id, member, link.member_id, link=link, now=now)
    return event


# --- binding ------------------------------------------------------------------------------------


REFUSALS = {
    "self": _("不能绑定自己为推荐人"),
    "cycle": _("不能形成循环推荐关系(对方是你的下级)"),
    "unknown_referrer": _("推荐人不存在"),
    "existing_customer": _("仅新客户可以绑定推荐人"),
    "already_bound": _("已绑定其他推荐人"),
    "protected": _("当前推荐关系在保护期内"),
}


def active_binding(tenant_id: int, member_id: int, now: datetime | None = None) -> ReferralBinding | None:
    now = now or timezone.now()
    return (ReferralBinding.objects.filter(tenant_id=tenant_id, member_id=member_id)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)).first())


def _is_descendant(tenant_id: int, ancestor_id: int, member_id: int, now: datetime) -> bool:
    """True when ``ancestor_id`` appears in ``member_id``'s chain of referrers (bounded walk)."""
    cur = member_id
    seen = {cur}
    for _i in range(256):
        b = active_binding(tenant_id, cur, now)
        if b is None:
            return False
        if b.referrer_id == ancestor_id:
            return True
        if b.referrer_id in seen:
            return False
        seen.add(b.referrer_id)
        cur = b.referrer_id
    return False


def try_bind(tenant_id: int, member: Member, referrer_id: int, *, link: InviteLink | None = None,
             now: datetime | None = None, stat_before: BuyerStat | None = None,
             ) -> tuple[ReferralBinding | None, str]:
    """Bind ``member`` to ``referrer_id`` per the tenant's policy. Returns ``(binding, "")`` or
    ``(current_binding_or_None, refusal_code)``; codes are the keys of :data:`REFUSALS`.
    Locking: the referee's binding row is read with ``select_for_update``."""
    now = now or timezone.now()
    if referrer_id == member.pk:
        return active_binding(tenant_id, member.pk, now), "self"
    if not Member.objects.filter(tenant_id=tenant_id, pk=referrer_id).exists():
        return active_binding(tenant_id, member.pk, now), "unknown_referrer"
    policy = get_policy(tenant_id)
    if policy.new_customer_only:
        stat = stat_before or BuyerStat.objects.filter(tenant_id=tenant_id, member=member).first()
        if stat is not None and stat.paid_orders > 0:
            return active_binding(tenant_id, member.pk, now), "existing_customer"
    # referrer is (transitively) referred by member → binding would close a cycle
    if _is_descendant(tenant_id, member.pk, referrer_id, now):
        return active_binding(tenant_id, member.pk, now), "cycle"
    expires = now + timedelta(days=policy.binding_days) if policy.binding_mode == BindingMode.DAYS else None
    protected = now + timedelta(days=policy.protection_days) if policy.protection_days else None
    existing = ReferralBinding.objects.select_for_update().filter(tenant_id=tenant_id, member=member).first()
    if existing is not None:
        active = existing.expires_at is None or existing.expires_at > now
        if existing.referrer_id == referrer_id:
            if policy.binding_mode != BindingMode.PERMANENT and active:
                existing.expires_at = expires
                existing.save(update_fields=["expires_at"])
            if active:
                return existing, ""
        elif active:
            if existing.protected_until and existing.protected_until > now:
                return existing, "protected"
            if policy.binding_mode != BindingMode.LAST_CLICK:
                return existing, "already_bound"
        previous = existing.referrer_id
        existing.referrer_id = referrer_id
        existing.link = link
        existing.bound_at = now
        existing.expires_at = expires
        existing.protected_until = protected
        existing.save()
        do_audit(Principal.system(tenant_id), "referrals.binding.change", "ReferralBinding", existing.pk,
                 data={"member": member.pk, "from": previous, "to": referrer_id})
        return existing, ""
    binding = ReferralBinding.objects.create(tenant_id=tenant_id, member=member, referrer_id=referrer_id, link=link,
                                             bound_at=now, expires_at=expires, protected_until=protected)
    return binding, ""


@transaction.atomic
def do_bind(principal: Principal, *, member_id: int, referrer_id: int) -> ReferralBinding:
    """Bind by hand (console/API); refusals raise :class:`Invalid` with the reason."""
    member = Member.objects.filter(tenant_id=principal.tenant_id, pk=member_id).first()
    if member is None:
        raise NotFound(_("会员不存在"), details={"field": "member_id"})
    binding, refused = try_bind(principal.tenant_id, member, referrer_id)
    if refused or binding is None:
        raise Invalid(str(REFUSALS.get(refused, refused)), code=f"binding_{refused}",
                      details={"field": "referrer_id", "reason": refused})
    do_audit(principal, "referrals.binding.manual", "ReferralBinding", binding.pk, data={"referrer": referrer_id})
    return binding


# --- commission plans ---------------------------------------------------------------------------


def check_levels(levels: int) -> None:
    if levels != 1:
        raise Invalid(
            _("不支持 %(n)d 级分佣: 只能按推荐人直接推荐的成交计佣(一级)。%(law)s") % {"n": levels, "law": LAW_NOTE},
            code="multi_level_refused", details={"field": "levels", "max": 1},
        )


def plan_warnings(plan: CommissionPlan) -> list[str]:
    """Risk notes shown to the operator next to a plan."""
    out: list[str] = []
    rules = list(plan.rules.all())
    kinds = {r.product_kind for r in rules}
    if rules and kinds == {"tier"}:
        out.append(_("该方案只对会员费/入群费计佣, 收入主要来自拉人头交纳的入门费, 接近《禁止传销条例》"
                     "第七条所列特征; 请确保会员费对应真实的商品或服务, 并考虑对商品销售计佣"))
    if plan.refund_window_days == 0:
        out.append(_("冻结期为 0: 佣金即时可提现; 若订单随后退款, 已提现的佣金只能从今后的佣金中抵扣(追回风险)"))
    if any(r.mode == RateMode.PERCENT and r.rate_bps >= 10000 for r in rules):
        out.append(_("佣金比例为 100%: 该商品的收入全部付给推荐人"))
    return out


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
    ``levels`` > 1 or any rule with ``level`` > 1) is refused with the legal explanation."""
    check_levels(levels)
    if not name.strip():
        raise Invalid(_("方案名称不能为空"), details={"field": "name"})
    if not rules:
        raise Invalid(_("至少需要一条佣金规则"), details={"field": "rules"})
    if refund_window_days < 0 or refund_window_days > 180:
        raise Invalid(_("冻结期须在 0–180 天之间"), details={"field": "refund_window_days"})
    if community_id and not Community.objects.filter(tenant_id=principal.tenant_id, pk=community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "community_id"})
    plan = CommissionPlan.objects.create(
        tenant_id=principal.tenant_id, name=name.strip(), community_id=community_id, campaign=campaign,
        refund_window_days=refund_window_days, self_purchase=self_purchase, cap_per_order_fen=cap_per_order_fen,
        priority=priority,
    )
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
        rate = int(raw.get("rate_bps", 0))
        fixed = int(raw.get("fixed_fen", 0))
        if not 0 <= rate <= 10000:
            raise Invalid(_("第 %(n)d 条规则: 比例须在 0–100%% 之间") % {"n": i + 1},
                          details={"field": f"{field_prefix}.rate_bps"})
        if fixed < 0:
            raise Invalid(_("第 %(n)d 条规则: 固定佣金不能为负") % {"n": i + 1},
                          details={"field": f"{field_prefix}.fixed_fen"})
        kind = raw.get("product_kind", "")
        if kind not in ("", "goods", "tier"):
            raise Invalid(_("第 %(n)d 条规则: 商品类型须为 goods 或 tier") % {"n": i + 1},
                          details={"field": f"{field_prefix}.product_kind"})
        CommissionRule.objects.create(
            tenant_id=principal.tenant_id, plan=plan, product_kind=kind, product_id=str(raw.get("product_id", "")),
            mode=mode, rate_bps=rate, fixed_fen=fixed, cap_fen=raw.get("cap_fen"),
        )
    warnings = plan_warnings(plan)
    do_audit(principal, "referrals.plan.create", "CommissionPlan", plan.pk, data={"warnings": warnings})
    return plan, warnings


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


# --- order events -------------------------------------------------------------------------------


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
        ip, device = _buyer_fingerprint(tid, buyer.pk)
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


def _buyer_fingerprint(tenant_id: int, member_id: int) -> tuple[str | None, str]:
    click = (LinkEvent.objects.filter(tenant_id=tenant_id, member_id=member_id, kind=LinkEventKind.CLICK)
             .order_by("-occurred_at").values_list("ip", "device_id").first())
    return (click[0], click[1]) if click else (None, "")


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


# --- fraud --------------------------------------------------------------------------------------


def _apply_fraud_checks(tenant_id: int, referrer_id: int, buyer: Member, created: list[Commission], *,
                        now: datetime, binding: ReferralBinding | None) -> bool:
    """Record fraud signals for this referred purchase; returns True when commissions are held
    (only if the tenant turned blocking on — by default signals are flagged for review)."""
    policy = get_policy(tenant_id)
    signals: list[tuple[str, dict[str, Any]]] = []
    referrer = Member.objects.get(pk=referrer_id)
    if buyer.pk != referrer_id and buyer.phone and buyer.phone == referrer.phone:
        signals.append((FraudKind.SAME_PHONE, {}))
    ip, device = _buyer_fingerprint(tenant_id, buyer.pk)
    purchases = LinkEvent.objects.filter(tenant_id=tenant_id, kind=LinkEventKind.PURCHASE, link__member_id=referrer_id)
    if ip:
        n = purchases.filter(ip=ip).values("member_id").distinct().count()
        if n > policy.fraud_ip_threshold:
            signals.append((FraudKind.IP_CLUSTER, {"ip": ip, "buyers": n}))
    if device:
        n = purchases.filter(device_id=device).values("member_id").distinct().count()
        if n > policy.fraud_ip_threshold:
            signals.append((FraudKind.DEVICE_CLUSTER, {"buyers": n}))
    recent = Commission.objects.filter(tenant_id=tenant_id, referrer_id=referrer_id,
                                       created_at__gte=now - timedelta(hours=1)).values("order_id").distinct().count()
    if recent > policy.fraud_velocity_per_hour:
        signals.append((FraudKind.VELOCITY, {"orders_last_hour": recent}))
    if buyer.phone and Member.objects.filter(tenant_id=tenant_id, phone=buyer.phone).exclude(pk=buyer.pk).filter(
            created_at__lt=buyer.created_at).exists():
        signals.append((FraudKind.REREGISTRATION, {}))
    stat = BuyerStat.objects.filter(tenant_id=tenant_id, member=buyer).first()
    if binding is not None and stat is not None and stat.first_paid_at and stat.first_paid_at < binding.bound_at:
        signals.append((FraudKind.EXISTING_CUSTOMER, {"first_paid_at": stat.first_paid_at.isoformat()}))
    if not signals:
        return False
    block = policy.fraud_blocking
    for kind, detail in signals:
        FraudSignal.objects.create(tenant_id=tenant_id, kind=kind, referrer_id=referrer_id, subject_member_id=buyer.pk,
                                   commission=created[0], order_id=created[0].order_id, detail=detail, blocking=block)
    if block:
        Commission.objects.filter(pk__in=[c.pk for c in created], state=CommissionState.FROZEN).update(
            state=CommissionState.HELD)
        for c in created:
            c.state = CommissionState.HELD
    return block


def _refund_rate_check(tenant_id: int, referrer_ids: Iterable[int], now: datetime) -> None:
    policy = get_policy(tenant_id)
    for rid in referrer_ids:
        agg = Commission.objects.filter(tenant_id=tenant_id, referrer_id=rid).aggregate(
            n=Count("order_id", distinct=True),
            refunded=Count("order_id", distinct=True, filter=Q(reversed_fen__gt=0)))
        n, refunded = agg["n"] or 0, agg["refunded"] or 0
        if n >= 4 and refunded * 100 >= policy.fraud_refund_rate_pct * n and not FraudSignal.objects.filter(
                tenant_id=tenant_id, referrer_id=rid, kind=FraudKind.REFUND_RATE, status=FraudStatus.OPEN).exists():
            FraudSignal.objects.create(tenant_id=tenant_id, kind=FraudKind.REFUND_RATE, referrer_id=rid,
                                       detail={"orders": n, "refunded": refunded}, blocking=False)


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


# --- fission tasks ------------------------------------------------------------------------------

RewardHook = Callable[[int, int, FissionTask], None]
_REWARD_HOOKS: dict[str, RewardHook] = {}


def register_reward_hook(kind: str, hook: RewardHook) -> None:
    """Other apps grant points/coupons/gifts: ``hook(tenant_id, member_id, task)`` runs inside the
    transaction that records the reward (must not commit on its own)."""
    _REWARD_HOOKS[kind] = hook


def valid_referrals(tenant_id: int, referrer_id: int, community_id: int | None = None, campaign: str = "") -> int:
    """Distinct paying referees whose commissions are not fully reversed."""
    qs = Commission.objects.filter(tenant_id=tenant_id, referrer_id=referrer_id).exclude(
        state__in=[CommissionState.VOID, CommissionState.CLAWED_BACK]).exclude(referrer_id=F("buyer_id"))
    if community_id:
        qs = qs.filter(community_id_snapshot=community_id)
    if campaign:
        qs = qs.filter(campaign=campaign)
    return qs.values("buyer_id").distinct().count()


def _check_fission(tenant_id: int, referrer_id: int, community_id: int | None, campaign: str, now: datetime) -> None:
    tasks = FissionTask.objects.filter(tenant_id=tenant_id, is_active=True).filter(
        Q(community__isnull=True) | Q(community_id=community_id)).filter(Q(campaign="") | Q(campaign=campaign))
    for task in tasks:
        if FissionReward.objects.filter(task=task, member_id=referrer_id).exists():
            continue
        n = valid_referrals(tenant_id, referrer_id, task.community_id, task.campaign)
        if n < task.threshold:
            continue
        try:
            with transaction.atomic():
                reward = FissionReward.objects.create(tenant_id=tenant_id, task=task, member_id=referrer_id,
                                                      detail={"valid_referrals": n})
                if task.reward_kind == RewardKind.CASH and task.reward_value > 0:
                    do_post(tenant_id, f"fission:{task.pk}:{referrer_id}", "fission.reward",
                            [(merchant_account(tenant_id, AccountKind.REWARD_EXPENSE), -task.reward_value),
                             (member_account(tenant_id, referrer_id, AccountKind.AVAILABLE), task.reward_value)],
                            memo=f"裂变奖励 {task.name}", ref=("referrals.FissionReward", reward.pk))
                elif task.reward_kind in _REWARD_HOOKS:
                    _REWARD_HOOKS[task.reward_kind](tenant_id, referrer_id, task)
        except IntegrityError:
            continue


# --- withdrawals --------------------------------------------------------------------------------


def withdrawal_fee(policy: ReferralPolicy, amount_fen: int) -> int:
    return policy.withdrawal_fee_fixed_fen + amount_fen * policy.withdrawal_fee_bps // 10000


def _trail(w: Withdrawal, to: str, actor: str = "system", note: str = "") -> None:
    WithdrawalEvent.objects.create(tenant_id=w.tenant_id, withdrawal=w, from_status=w.status, to_status=to,
                                   actor=actor, note=note[:255])
    w.status = to


def do_request_withdrawal(principal: Principal, *, member_id: int, amount_fen: int, idempotency_key: str,
                          payee: str = "", now: datetime | None = None) -> Withdrawal:
    """Request a payout of ``amount_fen`` from the member's available balance.

    Checks (in the member's language): minimum, fee below the amount, no refund debt (clawback < 0),
    the daily cap. Locking: the member's available, withdrawing and clawback accounts are locked
    with ``select_for_update`` in id order (the order do_post uses), then the hold posts available →
    withdrawing with the conditional update, so concurrent requests never overdraw. The same
    ``idempotency_key`` returns the first withdrawal. Small amounts are approved and their payout
    task enqueued in the same transaction; amounts above the policy threshold wait for approval."""
    now = now or timezone.now()
    tid = principal.tenant_id
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen <= 0:
        raise Invalid(_("提现金额必须是正整数(分)"), details={"field": "amount_fen"})
    existing = Withdrawal.objects.filter(tenant_id=tid, idempotency_key=idempotency_key).first()
    if existing is not None:
        if existing.member_id != member_id or existing.amount_fen != amount_fen:
            raise Conflict(_("同一个幂等键用于了不同的提现请求"), code="idempotency_mismatch")
        return existing
    if not Member.objects.filter(tenant_id=tid, pk=member_id).exists():
        raise NotFound(_("会员不存在"), details={"field": "member_id"})
    policy = get_policy(tid)
    if amount_fen < policy.withdrawal_min_fen:
        raise Invalid(_("最低提现金额为 %(m).2f 元") % {"m": policy.withdrawal_min_fen / 100},
                      code="below_minimum", details={"field": "amount_fen", "min_fen": policy.withdrawal_min_fen})
    fee = withdrawal_fee(policy, amount_fen)
    if fee >= amount_fen:
        raise Invalid(_("提现金额不足以支付手续费 %(f).2f 元") % {"f": fee / 100}, details={"field": "amount_fen"})
    with transaction.atomic():
        avail = member_account(tid, member_id, AccountKind.AVAILABLE)
        held = member_account(tid, member_id, AccountKind.WITHDRAWING)
        claw = member_account(tid, member_id, AccountKind.CLAWBACK)
        locked = {a.pk: a for a in lock_accounts([avail, held, claw])}
        if locked[claw.pk].balance_fen < 0:
            raise Conflict(_("有 %(d).2f 元退款佣金待抵扣, 暂不能提现") % {"d": -locked[claw.pk].balance_fen / 100},
                           code="negative_balance", details={"clawback_fen": locked[claw.pk].balance_fen})
        day_start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
        today = Withdrawal.objects.filter(tenant_id=tid, member_id=member_id, requested_at__gte=day_start).exclude(
            status__in=[WithdrawalStatus.REVERSED, WithdrawalStatus.REJECTED]).aggregate(s=Sum("amount_fen"))["s"] or 0
        if today + amount_fen > policy.withdrawal_daily_cap_fen:
            raise Invalid(_("超过每日提现上限 %(c).2f 元(今日已申请 %(t).2f 元)")
                          % {"c": policy.withdrawal_daily_cap_fen / 100, "t": today / 100},
                          code="daily_cap", details={"field": "amount_fen"})
        try:
            with transaction.atomic():
                w = Withdrawal.objects.create(
                    tenant_id=tid, member_id=member_id, idempotency_key=idempotency_key,
                    out_no=f"wd{tid}x{secrets.token_hex(8)}", amount_fen=amount_fen, fee_fen=fee, payee=payee,
                    status=WithdrawalStatus.REQUESTED, provider=policy.payout_provider, requested_at=now)
        except IntegrityError:
            return Withdrawal.objects.get(tenant_id=tid, idempotency_key=idempotency_key)
        WithdrawalEvent.objects.create(tenant_id=tid, withdrawal=w, from_status="", to_status=w.status,
                                       actor=principal.label)
        do_post(tid, f"wd:{w.pk}:hold", "withdrawal.hold", [(avail, -amount_fen), (held, amount_fen)],
                memo=f"提现申请 {w.out_no}", ref=("referrals.Withdrawal", w.pk))
        if amount_fen <= policy.withdrawal_approval_above_fen:
            _trail(w, WithdrawalStatus.APPROVED, "auto", _("小额自动审核"))
            w.save(update_fields=["status", "updated_at"])
            _enqueue_payout(tid, w.pk)
        do_audit(principal, "referrals.withdrawal.request", "Withdrawal", w.pk, data={"amount_fen": amount_fen})
        w.refresh_from_db()  # an in-process task backend may already have paid it
        return w


def _enqueue_payout(tenant_id: int, withdrawal_id: int) -> None:
    from .tasks import execute_payout

    execute_payout.enqueue(tenant_id, withdrawal_id)


@transaction.atomic
def do_approve_withdrawal(principal: Principal, withdrawal_id: int) -> Withdrawal:
    _require(principal, "finance.write")
    w = _locked_withdrawal(principal.tenant_id, withdrawal_id)
    if w.status != WithdrawalStatus.REQUESTED:
        raise Conflict(_("只有待审核的提现可以审核通过(当前: %(s)s)") % {"s": w.get_status_display()})
    _trail(w, WithdrawalStatus.APPROVED, principal.label)
    w.save(update_fields=["status", "updated_at"])
    do_audit(principal, "referrals.withdrawal.approve", "Withdrawal", w.pk)
    _enqueue_payout(principal.tenant_id, w.pk)
    w.refresh_from_db()
    return w


@transaction.atomic
def do_reject_withdrawal(principal: Principal, withdrawal_id: int, *, reason: str) -> Withdrawal:
    _require(principal, "finance.write")
    if not reason.strip():
        raise Invalid(_("请填写驳回原因"), details={"field": "reason"})
    w = _locked_withdrawal(principal.tenant_id, withdrawal_id)
    if w.status != WithdrawalStatus.REQUESTED:
        raise Conflict(_("只有待审核的提现可以驳回(当前: %(s)s)") % {"s": w.get_status_display()})
    _trail(w, WithdrawalStatus.REJECTED, principal.label, reason)
    _release(w, principal.label)
    do_audit(principal, "referrals.withdrawal.reject", "Withdrawal", w.pk, reason=reason)
    return w


def _locked_withdrawal(tenant_id: int, withdrawal_id: int) -> Withdrawal:
    w = Withdrawal.objects.select_for_update().filter(tenant_id=tenant_id, pk=withdrawal_id).first()
    if w is None:
        raise NotFound(_("提现不存在"))
    return w


def _release(w: Withdrawal, actor: str) -> None:
    """withdrawing → available (rejected or failed payout), then status reversed."""
    tid = w.tenant_id
    do_post(tid, f"wd:{w.pk}:release", "withdrawal.release",
            [(member_account(tid, w.member_id, AccountKind.WITHDRAWING), -w.amount_fen),
             (member_account(tid, w.member_id, AccountKind.AVAILABLE), w.amount_fen)],
            memo=f"提现退回 {w.out_no}", ref=("referrals.Withdrawal", w.pk))
    _trail(w, WithdrawalStatus.REVERSED, actor)
    w.save(update_fields=["status", "failure_reason", "provider_ref", "updated_at"])


def _apply_result(w: Withdrawal, result: PayoutResult) -> None:
    tid = w.tenant_id
    if result.provider_ref:
        w.provider_ref = result.provider_ref
    if result.status == SUCCESS:
        do_post(tid, f"wd:{w.pk}:paid", "withdrawal.paid",
                [(member_account(tid, w.member_id, AccountKind.WITHDRAWING), -w.amount_fen),
                 (member_account(tid, w.member_id, AccountKind.PAID_OUT), w.amount_fen - w.fee_fen)]
                + ([(merchant_account(tid, AccountKind.FEE_INCOME), w.fee_fen)] if w.fee_fen else []),
                memo=f"提现到账 {w.out_no}", ref=("referrals.Withdrawal", w.pk))
        _trail(w, WithdrawalStatus.PAID, w.provider)
        w.save(update_fields=["status", "provider_ref", "updated_at"])
        _allocate_withdrawn(w)
    elif result.status == FAILED:
        w.failure_reason = result.reason[:255]
        _trail(w, WithdrawalStatus.FAILED, w.provider, result.reason)
        _release(w, w.provider)
    elif result.status == PROCESSING and w.status != WithdrawalStatus.PROCESSING:
        _trail(w, WithdrawalStatus.PROCESSING, w.provider)
        w.save(update_fields=["status", "provider_ref", "updated_at"])


def _allocate_withdrawn(w: Withdrawal) -> None:
    """Mark the member's available commissions withdrawn, oldest first, up to the paid amount (the
    statement then says which earnings left). Cash rewards in the balance are not commissions, so an
    amount may remain unallocated. Locking: the commission rows, ``select_for_update`` in pk order."""
    remaining = w.amount_fen
    qs = Commission.objects.select_for_update().filter(
        tenant_id=w.tenant_id, referrer_id=w.member_id, state=CommissionState.AVAILABLE).order_by("available_at", "pk")
    for c in qs:
        if remaining <= 0:
            break
        free = c.amount_fen - c.reversed_fen - c.withdrawn_fen
        take = min(free, remaining)
        c.withdrawn_fen += take
        remaining -= take
        if c.withdrawn_fen >= c.amount_fen - c.reversed_fen:
            c.state = CommissionState.WITHDRAWN
        c.save(update_fields=["withdrawn_fen", "state"])


def do_execute_payout(tenant_id: int, withdrawal_id: int) -> Withdrawal:
    """Send an approved withdrawal to its payout provider and book the outcome. Idempotent: the row
    is locked (``select_for_update``) and only an ``approved`` withdrawal is sent; the provider
    de-duplicates by ``out_no``; each outcome posting has its own ledger key."""
    with transaction.atomic():
        w = _locked_withdrawal(tenant_id, withdrawal_id)
        if w.status != WithdrawalStatus.APPROVED:
            return w
        provider = get_provider(w.provider)
        try:
            result = provider.transfer(out_no=w.out_no, payee=w.payee, amount_fen=w.amount_fen - w.fee_fen,
                                       memo="佣金提现")
        except Exception as exc:  # network or provider error: stay approved, reconcile later
            log.warning("payout %s: provider error %s", w.out_no, type(exc).__name__)
            return w
        _apply_result(w, result)
        return w


def do_reconcile_withdrawals(tenant_id: int | None = None, older_than: timedelta = timedelta(0)) -> int:
    """Ask providers about withdrawals still approved/processing and book the outcome."""
    cutoff = timezone.now() - older_than
    qs = Withdrawal.objects.filter(status__in=[WithdrawalStatus.APPROVED, WithdrawalStatus.PROCESSING],
                                   updated_at__lte=cutoff)
    if tenant_id is not None:
        qs = qs.filter(tenant_id=tenant_id)
    n = 0
    for wid, tid in list(qs.values_list("pk", "tenant_id")):
        with transaction.atomic():
            w = _locked_withdrawal(tid, wid)
            if w.status not in (WithdrawalStatus.APPROVED, WithdrawalStatus.PROCESSING):
                continue
            result = get_provider(w.provider).query(out_no=w.out_no)
            if result.status == NOT_FOUND and w.status == WithdrawalStatus.APPROVED:
                continue  # never sent: the payout task will send it
            if result.status == NOT_FOUND:
                result = PayoutResult(FAILED, reason="provider has no record")
            before = w.status
            _apply_result(w, result)
            n += int(w.status != before)
    return n


# --- merchant alliance --------------------------------------------------------------------------


@transaction.atomic
def do_create_alliance(principal: Principal, *, name: str) -> Alliance:
    if not name.strip():
        raise Invalid(_("联盟名称不能为空"), details={"field": "name"})
    alliance = Alliance.objects.create(name=name.strip(), owner_tenant_id=principal.tenant_id)
    AllianceMember.objects.create(alliance=alliance, tenant_id=principal.tenant_id)
    do_audit(principal, "referrals.alliance.create", "Alliance", alliance.pk)
    return alliance


@transaction.atomic
def do_join_alliance(principal: Principal, alliance_id: int) -> AllianceMember:
    """Join (the founder invites by sharing the alliance id; joining is the merchant's own act)."""
    if not Alliance.objects.filter(pk=alliance_id).exists():
        raise NotFound(_("联盟不存在"))
    member, _c = AllianceMember.objects.get_or_create(alliance_id=alliance_id, tenant_id=principal.tenant_id)
    do_audit(principal, "referrals.alliance.join", "Alliance", alliance_id)
    return member


@transaction.atomic
def do_list_product(principal: Principal, alliance_id: int, *, product_id: str, title: str = "",
                    mode: str = RateMode.PERCENT, rate_bps: int = 1000, fixed_fen: int = 0,
                    refund_window_days: int = 7) -> AllianceListing:
    if not AllianceMember.objects.filter(alliance_id=alliance_id, tenant_id=principal.tenant_id,
                                         is_active=True).exists():
        raise NotFound(_("你不是该联盟成员"))
    if not 0 <= rate_bps <= 10000:
        raise Invalid(_("比例须在 0–100% 之间"), details={"field": "rate_bps"})
    listing, _c = AllianceListing.objects.update_or_create(
        alliance_id=alliance_id, tenant_id=principal.tenant_id, product_id=product_id,
        defaults={"title": title, "mode": mode, "rate_bps": rate_bps, "fixed_fen": fixed_fen,
                  "refund_window_days": refund_window_days, "is_active": True})
    do_audit(principal, "referrals.alliance.list", "AllianceListing", listing.pk)
    return listing


def _alliance_paid(data: OrderEvent, link: InviteLink, buyer: Member) -> None:
    """A member of merchant A (link's tenant) sold merchant B's product (the order's tenant): B pays
    A's member per B's alliance listing. Two postings: in B's books expense → payable to A; in A's
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


@dataclass
class StatementResult:
    statement: AllianceStatement
    lines: list[AllianceStatementLine] = field(default_factory=list)


@transaction.atomic
def do_build_statement(alliance_id: int, *, payer_id: int, payee_id: int, start: datetime,
                       end: datetime) -> AllianceStatement:
    """The statement of what ``payer`` owes ``payee`` for [start, end): one line per ledger posting on
    the payer's "payable to payee" account (accruals positive, refunds negative), each line pointing
    at both ledger transactions behind it. Building the same period again returns the same statement."""
    existing = AllianceStatement.objects.filter(alliance_id=alliance_id, payer_id=payer_id, payee_id=payee_id,
                                                period_start=start, period_end=end).first()
    if existing is not None:
        return existing
    from shequn.ledger.models import Entry, Transaction

    payable = merchant_account(payer_id, AccountKind.MERCHANT_PAYABLE, payee_id)
    entries = list(Entry.objects.filter(tenant_id=payer_id, account=payable, created_at__gte=start, created_at__lt=end)
                   .select_related("transaction").order_by("pk"))
    statement = AllianceStatement.objects.create(alliance_id=alliance_id, payer_id=payer_id, payee_id=payee_id,
                                                 period_start=start, period_end=end, total_fen=0)
    total = 0
    for e in entries:
        txn = e.transaction
        key = txn.idempotency_key
        if key.startswith("alli:settle:") or not key.startswith(("alli:", "comm:")):
            continue  # settlement postings are not statement lines
        comm_pk = int(key.split(":")[1])
        commission = Commission.objects.filter(pk=comm_pk, alliance_id=alliance_id).first()
        if commission is None:
            continue
        payee_key = f"comm:{comm_pk}:accrue" if key.endswith(":payable") else key.removesuffix(":payer")
        payee_txn = Transaction.objects.get(tenant_id=payee_id, idempotency_key=payee_key)
        AllianceStatementLine.objects.create(statement=statement, commission=commission, amount_fen=e.amount_fen,
                                             payer_transaction=txn, payee_transaction=payee_txn)
        total += e.amount_fen
    statement.total_fen = total
    statement.save(update_fields=["total_fen"])
    return statement


@transaction.atomic
def do_settle_statement(statement_id: int, *, now: datetime | None = None) -> AllianceStatement:
    """Book the settlement of a statement in both merchants' ledgers (payable/receivable ↔ clearing)."""
    st = AllianceStatement.objects.select_for_update().get(pk=statement_id)
    if st.settled_at is not None:
        return st
    if st.total_fen:
        do_post(st.payer_id, f"alli:settle:{st.pk}:payer", "alliance.settle",
                [(merchant_account(st.payer_id, AccountKind.MERCHANT_PAYABLE, st.payee_id), -st.total_fen),
                 (merchant_account(st.payer_id, AccountKind.PLATFORM_CLEARING), st.total_fen)],
                memo=f"联盟结算单 {st.pk}", ref=("referrals.AllianceStatement", st.pk))
        do_post(st.payee_id, f"alli:settle:{st.pk}:payee", "alliance.settle",
                [(merchant_account(st.payee_id, AccountKind.MERCHANT_RECEIVABLE, st.payer_id), st.total_fen),
                 (merchant_account(st.payee_id, AccountKind.PLATFORM_CLEARING), -st.total_fen)],
                memo=f"联盟结算单 {st.pk}", ref=("referrals.AllianceStatement", st.pk))
    st.settled_at = now or timezone.now()
    st.save(update_fields=["settled_at"])
    return st


@transaction.atomic
def do_build_my_statements(principal: Principal, alliance_id: int, *, start: datetime,
                           end: datetime) -> list[AllianceStatement]:
    """Build the statements for [start, end) between the principal's tenant and every other active
    member of the alliance, in both directions (what we owe, what we are owed). Only a member of the
    alliance may build them; building again returns the same statements."""
    if end <= start:
        raise Invalid(_("结束时间必须晚于开始时间"), details={"field": "end"})
    me = principal.tenant_id
    if not AllianceMember.objects.filter(alliance_id=alliance_id, tenant_id=me, is_active=True).exists():
        raise NotFound(_("你不是该联盟成员"))
    others = (AllianceMember.objects.filter(alliance_id=alliance_id, is_active=True).exclude(tenant_id=me)
              .order_by("tenant_id").values_list("tenant_id", flat=True))
    out = []
    for other in others:
        out.append(do_build_statement(alliance_id, payer_id=me, payee_id=other, start=start, end=end))
        out.append(do_build_statement(alliance_id, payer_id=other, payee_id=me, start=start, end=end))
    do_audit(principal, "referrals.alliance.statements", "Alliance", alliance_id,
             data={"start": start.isoformat(), "end": end.isoformat(), "statements": [st.pk for st in out]})
    return out


@transaction.atomic
def do_settle_my_statement(principal: Principal, statement_id: int) -> AllianceStatement:
    """The payer confirms it has paid a statement: books the settlement in both ledgers
    (:func:`do_settle_statement`, idempotent). Another tenant's statement is not found."""
    st = AllianceStatement.objects.filter(pk=statement_id, payer_id=principal.tenant_id).first()
    if st is None:
        raise NotFound(_("结算单不存在或不由你方付款"), details={"field": "statement_id"})
    st = do_settle_statement(st.pk)
    do_audit(principal, "referrals.alliance.settle", "AllianceStatement", st.pk, data={"total_fen": st.total_fen})
    return st


def on_activity_events(tenant_id: int, events: Iterable[Any]) -> None:
    """Activity consumer: a ``join`` whose payload carries ``invite_code`` (or ``state``, the WeCom
    join-QR parameter) is attributed to that link and binds the member. Idempotent: a join already
    recorded for (link, member, time) is skipped, so a retried batch adds nothing."""
    for ev in events:
        payload = ev.payload or {}
        code = str(payload.get("invite_code") or payload.get("state") or "")
        if not code or not ev.member_id:
            continue
        link = InviteLink.objects.filter(tenant_id=tenant_id, code=code).first()
        if link is None or LinkEvent.objects.filter(tenant_id=tenant_id, link=link, member_id=ev.member_id,
                                                    kind=LinkEventKind.JOIN, occurred_at=ev.occurred_at).exists():
            continue
        do_record_join(tenant_id, member_id=ev.member_id, code=code, group_id=ev.group_id, now=ev.occurred_at)


def register_with_commerce() -> bool:
    """Subscribe :func:`on_order_event` to commerce's order events when commerce is installed."""
    try:
        from shequn.commerce.events import register_order_listener  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return False
    # on_order_event reads OrderEventData through the structural OrderEvent protocol (its fields are
    # declared mutable there, the dataclass is frozen), so mypy cannot match the two callables
    register_order_listener("referrals", on_order_event)  # type: ignore[arg-type]
    return True


def open_memberships(group: ChatGroup) -> int:
    return Membership.objects.filter(tenant_id=group.tenant_id, group=group, left_at__isnull=True).count()
