"""Human tasks: an action no bot can perform (the platform lacks it, or refused it: a Telegram
message older than 48 h, a WeCom group without a robot key) becomes a task for a person — the group
owner / 客服 — with a deadline. Completing the task marks its action done. Never silently dropped."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import Conflict, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from ..models import ActionKind, HumanTask, OutboxAction
from ..signals import send_action_settled

HUMAN_TASK_DEADLINE = dt.timedelta(hours=4)


def open_human_task(tenant_id: int, action_id: int, reason: str, *, title: str | None = None,
                    deadline: dt.timedelta = HUMAN_TASK_DEADLINE) -> HumanTask:
    """The human task for an action no bot can perform (idempotent: one task per action)."""
    action = OutboxAction.objects.get(tenant_id=tenant_id, pk=action_id)
    task, _created = HumanTask.objects.get_or_create(
        tenant_id=tenant_id, action=action,
        defaults={"assignee_role": "owner",
                  "title": (title or _("请手动%(action)s") % {"action": ActionKind(action.kind).label})[:200],
                  "instructions": reason, "due_at": timezone.now() + deadline},
    )
    return task


def do_complete_human_task(principal: Principal, task_id: int, *, note: str = "") -> HumanTask:
    """A person did what the bot could not: the task is done and its action counts as done."""
    with transaction.atomic():
        task = HumanTask.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=task_id).first()
        if task is None:
            raise NotFound(_("任务不存在"))
        if task.status != HumanTask.Status.OPEN:
            raise Conflict(_("任务已处理"), details={"status": task.status})
        now = timezone.now()
        task.status = HumanTask.Status.DONE
        task.done_by = principal.label[:120]
        task.done_at = now
        task.save(update_fields=["status", "done_by", "done_at"])
        n = OutboxAction.objects.filter(pk=task.action_id, status=OutboxAction.Status.DELEGATED).update(
            status=OutboxAction.Status.DONE, done_at=now,
            result={"by_human": principal.label[:120], "note": note[:500]})
        if n:  # the requester (e.g. the moderation ladder) now counts it as applied
            row = OutboxAction.objects.get(pk=task.action_id)
            send_action_settled(tenant_id=row.tenant_id, action_id=row.pk, kind=row.kind, status="done",
                                source=row.source, idempotency_key=row.idempotency_key)
        do_audit(principal, "connectors.human_task_done", "human_task", str(task.pk), reason=note)
    return task
