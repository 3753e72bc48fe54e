"""Tenant-scoped reads of the connectors app."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from shequn.communities.models import Membership
from shequn.members.models import Identity

from .models import Connection, HumanTask, InboundEvent, OutboxAction, Room
from .platforms.matrix.inbound import missing_powers
from .platforms.telegram.inbound import BOT_RIGHTS, missing_rights

BACKLOG = (OutboxAction.Status.PENDING, OutboxAction.Status.SENDING)


def connections(tenant_id: int) -> QuerySet[Connection]:
    return Connection.objects.filter(tenant_id=tenant_id).order_by("pk")


def connection(tenant_id: int, connection_id: int) -> Connection | None:
    return Connection.objects.filter(tenant_id=tenant_id, pk=connection_id).first()


def hook_connection(platform: str, hook_key: str) -> Connection | None:
    """The active connection a webhook URL (``/hooks/<platform>/<hook_key>/``) belongs to."""
    return Connection.objects.filter(platform=platform, hook_key=hook_key, is_active=True).first()


def active_connection_ids(platform: str, *, only: int | None = None) -> list[int]:
    qs = Connection.objects.filter(platform=platform, is_active=True)
    if only:
        qs = qs.filter(pk=only)
    return list(qs.values_list("pk", flat=True))


def resolve_connection_id(tenant_id: int, platform: str, group_id: int | None) -> int | None:
    """The connection that serves a group: the one whose discovered room is mapped to it, else the
    tenant's only active connection of the platform."""
    if group_id is not None:
        cid = (Room.objects.filter(tenant_id=tenant_id, group_id=group_id, connection__is_active=True)
               .values_list("connection_id", flat=True).first())
        if cid is not None:
            return int(cid)
    ids = list(Connection.objects.filter(tenant_id=tenant_id, platform=platform, is_active=True)
               .values_list("pk", flat=True)[:2])
    return int(ids[0]) if len(ids) == 1 else None


def open_external_ids(tenant_id: int, group_id: int | None, platform: str) -> set[str]:
    """The platform user ids of the members whose membership of ``group_id`` is open."""
    if group_id is None:
        return set()
    member_ids = Membership.objects.filter(tenant_id=tenant_id, group_id=group_id,
                                           left_at__isnull=True).values_list("member_id", flat=True)
    return set(Identity.objects.filter(tenant_id=tenant_id, platform=platform, member_id__in=member_ids)
               .values_list("external_id", flat=True))


def failed_inbound_ids(*, max_attempts: int = 5, limit: int = 200) -> list[int]:
    """Stored callbacks whose processing failed and may be retried."""
    return list(InboundEvent.objects.filter(status=InboundEvent.Status.FAILED, attempts__lt=max_attempts)
                .values_list("pk", flat=True)[:limit])


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
        "problems": power_problems(conn),
    }


def power_problems(conn: Connection) -> list[dict[str, Any]]:
    """Matrix: each joined room where the bot lacks the power level for an action the ladder takes
    (redact, kick, ban, change power levels to mute), from the room's cached power levels, with the
    plain fix. Checked on every sync (the cache follows the room's power-level changes)."""
    if conn.platform == "telegram":
        return telegram_rights_problems(conn)
    if conn.platform != "matrix":
        return []
    bot = str((conn.config or {}).get("user_id") or "")
    out: list[dict[str, Any]] = []
    for room in Room.objects.filter(connection=conn, bot_joined=True).exclude(staff_state={}).order_by("pk"):
        missing = missing_powers(room.staff_state or {}, bot)
        if missing:
            need = max(missing.values())
            label = room.name or room.external_id
            out.append({"room": room.external_id, "room_name": room.name, "missing": sorted(missing), "need": need,
                        "fix": _("请在 %(room)s 中把机器人的权限等级设为 %(level)d (当前无法: %(actions)s)") % {
                            "room": label, "level": need, "actions": ", ".join(sorted(missing))}})
    return out


def telegram_rights_problems(conn: Connection) -> list[dict[str, Any]]:
    """Telegram: each joined chat where the bot is not an administrator with the rights the ladder
    needs (:data:`~shequn.connectors.platforms.telegram.inbound.BOT_RIGHTS`), from the rights cached
    by ``getChatMember`` / ``my_chat_member``, with the plain fix."""
    out: list[dict[str, Any]] = []
    for room in Room.objects.filter(connection=conn, bot_joined=True).order_by("pk"):
        rights = (room.staff_state or {}).get("bot")
        if not isinstance(rights, dict):
            continue  # not checked yet
        missing = missing_rights(rights)
        if not missing:
            continue
        label = room.name or room.external_id
        out.append({"room": room.external_id, "room_name": room.name, "missing": missing,
                    "status": rights.get("status", ""),
                    "fix": _("在群 %(room)s 中把机器人设为管理员并授予%(rights)s权限") % {
                        "room": label, "rights": "、".join(_(BOT_RIGHTS[r]) for r in missing)}})
    return out


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
