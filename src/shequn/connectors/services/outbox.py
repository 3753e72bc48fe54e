"""The outbox: ``do_request_action`` is the one way an engine acts on a platform. The row is written
in the caller's transaction; delivery is the worker's job (:mod:`shequn.connectors.services.delivery`);
operators retry dead letters and cancel pending actions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.communities.models import ChatGroup, Community, JoinRequest
from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.models import Platform
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from ..capabilities import supports
from ..models import ActionKind, HumanTask, OutboxAction
from ..selectors import resolve_connection_id
from .delivery import DeliveryStats, deliver_due, notify_outbox, release_abandoned, unmute_key
from .human_tasks import open_human_task


def do_request_action(
    tenant_id: int,
    *,
    kind: str,
    group_id: int | None,
    idempotency_key: str,
    target_member_id: int | None = None,
    target_external_id: str = "",
    message_external_id: str = "",
    payload: dict[str, Any] | None = None,
    source: str = "",
    reason: str = "",
    platform: str | None = None,
) -> OutboxAction:
    """Queue an outbound platform action. Call it inside the transaction of the decision that causes it.

    ``idempotency_key`` is unique per tenant: asking twice returns the first row. When the group's
    platform lacks the capability, the row is ``delegated`` and a :class:`HumanTask` with a deadline
    is created for the group owner / customer service. Delivery is the worker's job.
    """
    if kind not in ActionKind.values:
        raise Invalid(_("未知的动作: %(k)s") % {"k": kind}, details={"field": "kind"})
    group = None
    if group_id is not None:
        group = ChatGroup.objects.filter(tenant_id=tenant_id, pk=group_id).first()
        if group is None:
            raise NotFound(_("群不存在"), details={"field": "group_id"})
        platform = group.platform
    if platform is None:
        raise Invalid(_("需要群或平台"), details={"field": "group_id"})
    existing = OutboxAction.objects.filter(tenant_id=tenant_id, idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    capable = supports(platform, kind)
    try:
        with transaction.atomic():
            action = OutboxAction.objects.create(
                tenant_id=tenant_id, kind=kind, platform=platform, group=group,
                connection_id=resolve_connection_id(tenant_id, platform, group_id) if capable else None,
                target_member_id=target_member_id, target_external_id=target_external_id,
                message_external_id=message_external_id, payload=payload or {}, idempotency_key=idempotency_key,
                source=source, reason=reason[:500],
                status=OutboxAction.Status.PENDING if capable else OutboxAction.Status.DELEGATED,
                next_attempt_at=timezone.now() if capable else None,
            )
            if capable:
                # wake the real-time delivery thread as soon as the decision commits
                transaction.on_commit(notify_outbox)
            else:
                open_human_task(tenant_id, action.pk, reason, title=_("请手动%(action)s (平台不支持自动执行)")
                                % {"action": ActionKind(kind).label})
    except IntegrityError:
        return OutboxAction.objects.get(tenant_id=tenant_id, idempotency_key=idempotency_key)
    return action


def on_join_decided(req: JoinRequest) -> None:
    """Communities' join-decision listener (declared in the wiring): a platform's join request was
    decided (by the entry threshold or by staff), so answer the platform — Telegram
    ``approveChatJoinRequest`` / ``declineChatJoinRequest``, Matrix invite / kick of the knock —
    through the outbox, in the decision's transaction. Once per request."""
    if req.group_id is None or req.status == JoinRequest.Status.PENDING:
        return
    approve = req.status == JoinRequest.Status.APPROVED
    do_request_action(
        req.tenant_id, kind=ActionKind.APPROVE_JOIN if approve else ActionKind.DECLINE_JOIN, group_id=req.group_id,
        target_member_id=req.member_id, idempotency_key=f"join-request:{req.pk}",
        payload={"request": req.pk, "reason": req.decision_note}, source="communities.join_request",
        reason=req.decision_note,
    )


def on_community_gated(community: Community, groups: Sequence[ChatGroup]) -> None:
    """Communities' gate listener (declared in the wiring): the community now has an approval or paid
    threshold, so its Matrix rooms must make newcomers knock. One ``join_rule`` action per room
    (the delivery reads the room's join rule and changes only a *public* room; invite-only and knock
    rooms stay). A room with one still queued is not asked again. Telegram links are the portal's."""
    for group in groups:
        if group.platform != Platform.MATRIX:
            continue
        queued = OutboxAction.objects.filter(
            tenant_id=community.tenant_id, group=group, kind=ActionKind.JOIN_RULE,
            status__in=(OutboxAction.Status.PENDING, OutboxAction.Status.SENDING, OutboxAction.Status.FAILED))
        if queued.exists():
            continue
        do_request_action(
            community.tenant_id, kind=ActionKind.JOIN_RULE, group_id=group.pk,
            idempotency_key=f"join-rule:{group.pk}:{timezone.now().timestamp():.6f}",
            payload={"join_rule": "knock"}, source="communities.gate",
            reason=str(community.get_entry_threshold_display()))


# --- outbox operations --------------------------------------------------------------------------------

def do_deliver_due(limit: int = 100, *, now: dt.datetime | None = None) -> DeliveryStats:
    """One round of the outbox worker (see :mod:`shequn.connectors.services.delivery`)."""
    return deliver_due(limit, now=now)


def do_release_abandoned() -> int:
    """Release the actions a dead delivery process of this host left ``sending`` (see
    :func:`shequn.connectors.services.delivery.release_abandoned`)."""
    return release_abandoned()


def do_retry_action(principal: Principal, action_id: int, *, reason: str = "") -> OutboxAction:
    """Re-queue a dead-lettered or failed action (attempts reset)."""
    with transaction.atomic():
        action = OutboxAction.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=action_id).first()
        if action is None:
            raise NotFound(_("动作不存在"))
        if action.status not in (OutboxAction.Status.DEAD, OutboxAction.Status.FAILED):
            raise Conflict(_("只有死信或失败的动作可以重试"), details={"status": action.status})
        action.status = OutboxAction.Status.PENDING
        action.attempts = 0
        action.next_attempt_at = timezone.now()
        action.lease_token = ""
        action.done_at = None
        action.save(update_fields=["status", "attempts", "next_attempt_at", "lease_token", "done_at"])
        transaction.on_commit(notify_outbox)
        do_audit(principal, "connectors.retry", "outbox_action", str(action.pk), reason=reason,
                 data={"last_error": action.last_error[:200]})
    return action


def do_cancel_action(principal: Principal, action_id: int, *, reason: str = "") -> OutboxAction:
    with transaction.atomic():
        action = OutboxAction.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=action_id).first()
        if action is None:
            raise NotFound(_("动作不存在"))
        if action.status in (OutboxAction.Status.DONE, OutboxAction.Status.SENDING):
            raise Conflict(_("动作已完成或正在发送, 不能取消"), details={"status": action.status})
        action.status = OutboxAction.Status.CANCELLED
        action.next_attempt_at = None
        action.save(update_fields=["status", "next_attempt_at"])
        HumanTask.objects.filter(action=action, status=HumanTask.Status.OPEN).update(status=HumanTask.Status.CANCELLED)
        do_audit(principal, "connectors.cancel", "outbox_action", str(action.pk), reason=reason)
    return action


def do_cancel_scheduled_unmutes(tenant_id: int, mute_action_ids: list[int]) -> int:
    """Cancel the unmutes queued for the end of these mute actions (Matrix: the outbox is the
    scheduler; Telegram has none, ``until_date`` ends its mutes) — a mute lifted early is unmuted at
    once instead. Returns how many were cancelled."""
    return OutboxAction.objects.filter(
        tenant_id=tenant_id, idempotency_key__in=[unmute_key(i) for i in mute_action_ids],
        status=OutboxAction.Status.PENDING).update(status=OutboxAction.Status.CANCELLED, next_attempt_at=None)
