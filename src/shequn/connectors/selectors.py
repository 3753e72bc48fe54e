"""Tenant-scoped reads of the connectors app."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from .models import Connection, HumanTask, OutboxAction, Room

BACKLOG = (OutboxAction.Status.PENDING, OutboxAction.Status.SENDING)


def connections(tenant_id: int) -> QuerySet[Connection]:
    return Connection.objects.filter(tenant_id=tenant_id).order_by("pk")


def connection(tenant_id: int, connection_id: int) -> Connection | None:
    return Connection.objects.filter(tenant_id=tenant_id, pk=connection_id).first()


def lag_seconds(conn: Connection) -> float | None:
    """How far behind the platform the last received event was (receive time − platform time)."""
    if conn.last_event_at is None or conn.last_received_at is None:
        return None
    return round(max(0.0, (conn.last_received_at - conn.last_event_at).total_seconds()), 1)


def outbox_backlog(tenant_id: int, connection_id: int) -> int:
    return OutboxAction.objects.filter(tenant_id=tenant_id, connection_id=connection_id, status__in=BACKLOG).count()


def health(conn: Connection) -> dict[str, Any]:
    return {
        "last_event_at": conn.last_event_at, "last_received_at": conn.last_received_at,
        "lag_seconds": lag_seconds(conn),
        "events_received": conn.events_received, "error_count": conn.error_count, "last_error": conn.last_error,
        "last_error_at": conn.last_error_at, "outbox_backlog": outbox_backlog(conn.tenant_id, conn.pk),
        "dead_letters": OutboxAction.objects.filter(tenant_id=conn.tenant_id, connection_id=conn.pk,
                                                    status=OutboxAction.Status.DEAD).count(),
    }


def rooms(tenant_id: int, *, connection_id: int | None = None, unmapped: bool = False) -> QuerySet[Room]:
    qs = Room.objects.filter(tenant_id=tenant_id)
    if connection_id is not None:
        qs = qs.filter(connection_id=connection_id)
    if unmapped:
        qs = qs.filter(group__isnull=True)
    return qs


def outbox(tenant_id: int, *, status: str | None = None, platform: str | None = None) -> QuerySet[OutboxAction]:
    qs = OutboxAction.objects.filter(tenant_id=tenant_id)
    if status:
        qs = qs.filter(status=status)
    if platform:
        qs = qs.filter(platform=platform)
    return qs


def human_tasks(tenant_id: int, *, status: str | None = None, overdue_at: Any = None) -> QuerySet[HumanTask]:
    qs = HumanTask.objects.filter(tenant_id=tenant_id).select_related("action")
    if status:
        qs = qs.filter(status=status)
    if overdue_at is not None:
        qs = qs.filter(Q(status=HumanTask.Status.OPEN) & Q(due_at__lt=overdue_at))
    return qs
