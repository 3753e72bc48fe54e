"""Fission tasks (裂变任务): "invite N paying members, get a reward". Cash rewards post to the
ledger here (idempotency key ``fission:<task>:<member>``, one ``FissionReward`` per task and member);
points and coupons come from the hooks other engines register with :func:`register_reward_hook`
(engagement: points, commerce: coupons) from their ``AppConfig.ready``. A **gift** reward becomes a
:class:`GiftShipment` in the fulfilment queue: the member gives an address
(:func:`do_set_gift_address`), staff ship it (:func:`do_ship_gift`: who, when, carrier, tracking
number) or cancel it with a reason."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.commerce.models import CouponTemplate
from shequn.communities.models import Community
from shequn.core.errors import Conflict, Forbidden, Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.ledger.models import AccountKind
from shequn.ledger.services import do_post

from ..models import (
    FissionReward,
    FissionTask,
    GiftShipment,
    RewardKind,
)
from ..selectors import valid_referrals
from ._common import member_account, merchant_account

RewardHook = Callable[[int, int, FissionTask], None]
_REWARD_HOOKS: dict[str, RewardHook] = {}


def register_reward_hook(kind: str, hook: RewardHook) -> None:
    """Other apps grant points/coupons/gifts: ``hook(tenant_id, member_id, task)`` runs inside the
    transaction that records the reward (must not commit on its own)."""
    _REWARD_HOOKS[kind] = hook


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
                elif task.reward_kind == RewardKind.GIFT:
                    # a physical gift: into the fulfilment queue, waiting for the member's address
                    GiftShipment.objects.create(tenant_id=tenant_id, reward=reward, member_id=referrer_id,
                                                gift=(task.reward_note or task.name)[:120])
                elif task.reward_kind in _REWARD_HOOKS:
                    _REWARD_HOOKS[task.reward_kind](tenant_id, referrer_id, task)
        except IntegrityError:
            continue


# --- the gift fulfilment queue ---------------------------------------------------------------------

_PHONE = re.compile(r"^\+?[0-9][0-9 -]{5,18}$")


def _shipment_for_update(tenant_id: int, shipment_id: int) -> GiftShipment:
    row = GiftShipment.objects.select_for_update().filter(tenant_id=tenant_id, pk=shipment_id).first()
    if row is None:
        raise NotFound(_("发货单不存在"), details={"field": "shipment_id"})
    return row


def check_gift_address(recipient: str, phone: str, address: str) -> tuple[str, str, str]:
    recipient, phone, address = recipient.strip(), phone.strip(), address.strip()
    if not recipient or len(recipient) > 60:
        raise Invalid(_("请填写收件人 (最多 60 字)"), details={"field": "recipient"})
    if not _PHONE.match(phone):
        raise Invalid(_("收件电话格式不正确"), details={"field": "phone"})
    if len(address) < 5 or len(address) > 300:
        raise Invalid(_("请填写完整的收件地址 (5 到 300 字)"), details={"field": "address"})
    return recipient, phone, address


@transaction.atomic
def do_set_gift_address(tenant_id: int, shipment_id: int, *, member_id: int, recipient: str, phone: str,
                        address: str) -> GiftShipment:
    """The member (portal or API acting for them) gives or corrects the address before shipping."""
    recipient, phone, address = check_gift_address(recipient, phone, address)
    row = _shipment_for_update(tenant_id, shipment_id)
    if row.member_id != member_id:
        raise NotFound(_("发货单不存在"), details={"field": "shipment_id"})
    if row.status not in (GiftShipment.Status.AWAITING_ADDRESS, GiftShipment.Status.TO_SHIP):
        raise Conflict(_("礼品已发货或已取消, 不能再改地址"), details={"status": row.status})
    row.recipient, row.phone, row.address = recipient, phone, address
    row.status = GiftShipment.Status.TO_SHIP
    row.save(update_fields=["recipient", "phone", "address", "status", "updated_at"])
    return row


def check_gift_shipping(carrier: str, tracking_no: str) -> tuple[str, str]:
    carrier, tracking_no = (carrier or "").strip(), (tracking_no or "").strip()
    if not carrier or len(carrier) > 40:
        raise Invalid(_("请填写快递公司"), details={"field": "carrier"})
    if not tracking_no or len(tracking_no) > 60:
        raise Invalid(_("请填写快递单号"), details={"field": "tracking_no"})
    return carrier, tracking_no


@transaction.atomic
def do_ship_gift(principal: Principal, shipment_id: int, *, carrier: str, tracking_no: str) -> GiftShipment:
    """Staff record the shipment: who shipped, when, carrier and tracking number (audited)."""
    if not principal.can("referrals.write"):
        raise Forbidden(_("没有权限: %(perm)s") % {"perm": "referrals.write"})
    carrier, tracking_no = check_gift_shipping(carrier, tracking_no)
    row = _shipment_for_update(principal.tenant_id, shipment_id)
    if row.status != GiftShipment.Status.TO_SHIP:
        raise Conflict(_("只有已填写地址、待发货的礼品可以发货"), details={"status": row.status})
    row.carrier, row.tracking_no = carrier, tracking_no
    row.shipped_by, row.shipped_at = principal.label[:120], timezone.now()
    row.status = GiftShipment.Status.SHIPPED
    row.save(update_fields=["carrier", "tracking_no", "shipped_by", "shipped_at", "status", "updated_at"])
    do_audit(principal, "referrals.gift.ship", "GiftShipment", str(row.pk),
             data={"carrier": carrier, "tracking_no": tracking_no, "member": row.member_id})
    return row


@transaction.atomic
def do_cancel_gift(principal: Principal, shipment_id: int, *, reason: str) -> GiftShipment:
    if not principal.can("referrals.write"):
        raise Forbidden(_("没有权限: %(perm)s") % {"perm": "referrals.write"})
    if not reason.strip():
        raise Invalid(_("请填写取消原因"), details={"field": "reason"})
    row = _shipment_for_update(principal.tenant_id, shipment_id)
    if row.status == GiftShipment.Status.SHIPPED:
        raise Conflict(_("礼品已发货, 不能取消"), details={"status": row.status})
    row.status, row.note = GiftShipment.Status.CANCELLED, reason.strip()[:200]
    row.save(update_fields=["status", "note", "updated_at"])
    do_audit(principal, "referrals.gift.cancel", "GiftShipment", str(row.pk), reason=reason)
    return row


def check_fission_task(tenant_id: int, *, name: str, threshold: int, reward_kind: str, reward_value: int = 0,
                       reward_note: str = "", community_id: int | None = None, campaign: str = "") -> None:
    """Every rule of :func:`do_create_fission_task`, without writing."""
    if not name or not name.strip() or len(name) > 120:
        raise Invalid(_("请填写名称 (最多 120 个字符)"), details={"field": "name"})
    if not isinstance(threshold, int) or not 1 <= threshold <= 10_000:
        raise Invalid(_("有效邀请人数须在 1 到 10000 之间"), details={"field": "threshold"})
    if reward_kind not in RewardKind.values:
        raise Invalid(_("未知的奖励类型"), details={"field": "reward_kind"})
    if reward_kind in (RewardKind.POINTS, RewardKind.CASH) and (not isinstance(reward_value, int) or reward_value < 1):
        raise Invalid(_("奖励数值必须大于 0"), details={"field": "reward_value"})
    if reward_kind == RewardKind.COUPON and not CouponTemplate.objects.filter(tenant_id=tenant_id,
                                                                              pk=reward_value).exists():
        raise NotFound(_("优惠券模板不存在"), details={"field": "reward_value"})
    if reward_kind == RewardKind.GIFT and not reward_note.strip():
        raise Invalid(_("礼品奖励请写明礼品"), details={"field": "reward_note"})
    if len(reward_note) > 200 or len(campaign) > 64:
        raise Invalid(_("奖励说明最多 200 个字符, 活动最多 64 个字符"), details={"field": "reward_note"})
    if community_id is not None and not Community.objects.filter(tenant_id=tenant_id, pk=community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "community_id"})


@transaction.atomic
def do_create_fission_task(principal: Principal, *, name: str, threshold: int, reward_kind: str,
                           reward_value: int = 0, reward_note: str = "", community_id: int | None = None,
                           campaign: str = "") -> FissionTask:
    """A fission task: invite ``threshold`` paying members, get the reward (points, a coupon of a
    template, cash in fen to the ledger, or a gift named in ``reward_note``)."""
    check_fission_task(principal.tenant_id, name=name, threshold=threshold, reward_kind=reward_kind,
                       reward_value=reward_value, reward_note=reward_note, community_id=community_id,
                       campaign=campaign)
    task = FissionTask.objects.create(tenant_id=principal.tenant_id, name=name.strip(), threshold=threshold,
                                      reward_kind=reward_kind, reward_value=reward_value, reward_note=reward_note,
                                      community_id=community_id, campaign=campaign)
    do_audit(principal, "referrals.fission_task.create", "FissionTask", task.pk,
             data={"reward_kind": reward_kind, "threshold": threshold})
    return task


def _task_values(task: FissionTask) -> dict[str, object]:
    return {"name": task.name, "threshold": task.threshold, "reward_kind": task.reward_kind,
            "reward_value": task.reward_value, "reward_note": task.reward_note, "community_id": task.community_id,
            "campaign": task.campaign}


def _check_task_change(task: FissionTask, changes: dict[str, object]) -> tuple[dict[str, object], list[str]]:
    """Creation's rules on the merged values, then the state rule: once a reward was granted, the
    threshold and the reward (kind and value) are fixed — members earned it on those terms."""
    current = _task_values(task)
    for name in changes:
        if name not in current:
            raise Invalid(_("不能修改的字段: %(f)s") % {"f": name}, details={"field": name})
    values = {**current, **changes}
    check_fission_task(task.tenant_id, **values)  # type: ignore[arg-type]
    changed = [k for k, v in values.items() if current[k] != v]
    if FissionReward.objects.filter(task=task).exists():
        for name in ("threshold", "reward_kind", "reward_value"):
            if name in changed:
                raise Conflict(_("已有会员获得奖励, 门槛和奖励不能再改"), code="locked", details={"field": name})
    return values, changed


def check_update_fission_task(tenant_id: int, task_id: int, **changes: object) -> None:
    """Every rule of :func:`do_update_fission_task`, without writing."""
    task = FissionTask.objects.filter(tenant_id=tenant_id, pk=task_id).first()
    if task is None:
        raise NotFound(_("裂变任务不存在"), details={"field": "task_id"})
    _check_task_change(task, {k: v for k, v in changes.items() if k != "is_active"})


@transaction.atomic
def do_update_fission_task(principal: Principal, task_id: int, **changes: object) -> FissionTask:
    """Change a fission task (creation's ``check_fission_task`` plus the state rule above);
    ``is_active`` pauses or resumes it. Audited with the changed field names."""
    task = FissionTask.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=task_id).first()
    if task is None:
        raise NotFound(_("裂变任务不存在"), details={"field": "task_id"})
    active = changes.pop("is_active", None)
    if active is not None and not isinstance(active, bool):
        raise Invalid(_("状态必须是 true 或 false"), details={"field": "is_active"})
    values, changed = _check_task_change(task, changes)
    if changed:
        for name in changed:
            value = values[name]
            setattr(task, name, value.strip() if name == "name" and isinstance(value, str) else value)
        task.save(update_fields=changed)
        do_audit(principal, "referrals.fission_task.update", "FissionTask", task.pk, data={"fields": changed})
    if active is not None:
        task = do_set_fission_task_active(principal, task.pk, active=active)
    return task


@transaction.atomic
def do_set_fission_task_active(principal: Principal, task_id: int, *, active: bool) -> FissionTask:
    """Pause (no new rewards) or resume a fission task."""
    task = FissionTask.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=task_id).first()
    if task is None:
        raise NotFound(_("裂变任务不存在"), details={"field": "task_id"})
    if task.is_active != active:
        task.is_active = active
        task.save(update_fields=["is_active"])
        do_audit(principal, "referrals.fission_task.resume" if active else "referrals.fission_task.pause",
                 "FissionTask", task.pk)
    return task
