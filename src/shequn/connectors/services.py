"""Writers of the connectors app. ``do_request_action`` is the one way an engine acts on a platform."""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets as pysecrets
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.activity.services import IngestResult, do_ingest
from shequn.communities.models import ChatGroup, Community
from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.models import Platform
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from . import secrets
from .capabilities import supports
from .delivery import DeliveryStats, deliver_due, resolve_connection_id
from .models import ActionKind, Connection, HumanTask, InboundEvent, OutboxAction, QrConfig, Room

log = logging.getLogger(__name__)

#: which secrets and config keys each platform's connection needs
REQUIRED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "matrix": (("homeserver", "user_id"), ("access_token",)),
    "telegram": ((), ("bot_token", "webhook_secret")),
    "wecom": (("corp_id",), ("corp_secret", "callback_token", "encoding_aes_key")),
}

HUMAN_TASK_DEADLINE = dt.timedelta(hours=4)


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
            if not capable:
                open_human_task(tenant_id, action.pk, reason, title=_("请手动%(action)s (平台不支持自动执行)")
                                % {"action": ActionKind(kind).label})
    except IntegrityError:
        return OutboxAction.objects.get(tenant_id=tenant_id, idempotency_key=idempotency_key)
    return action


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


# --- connections ------------------------------------------------------------------------------------

def check_connection_input(platform: str, config: Mapping[str, Any], secret_values: Mapping[str, str],
                           *, partial: bool = False) -> None:
    if platform not in REQUIRED:
        raise Invalid(_("不支持的平台: %(p)s") % {"p": platform}, details={"field": "platform"})
    need_config, need_secrets = REQUIRED[platform]
    for key in need_config:
        if not partial and not str(config.get(key) or "").strip():
            raise Invalid(_("缺少配置项: %(k)s") % {"k": key}, details={"field": f"config.{key}"})
    for key in need_secrets:
        if not partial and not str(secret_values.get(key) or "").strip():
            raise Invalid(_("缺少密钥: %(k)s") % {"k": key}, details={"field": f"secrets.{key}"})
    if platform == "matrix" and config.get("homeserver") and not str(config["homeserver"]).startswith(
            ("http://", "https://")):
        raise Invalid(_("homeserver 必须以 http:// 或 https:// 开头"), details={"field": "config.homeserver"})
    ws = str(secret_values.get("webhook_secret") or "")
    if platform == "telegram" and ws and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", ws):
        raise Invalid(_("webhook_secret 只能包含字母、数字、_ 和 -, 最长 256"),
                      details={"field": "secrets.webhook_secret"})
    if platform == "wecom" and secret_values.get("encoding_aes_key") and len(secret_values["encoding_aes_key"]) != 43:
        raise Invalid(_("EncodingAESKey 必须是 43 个字符"), details={"field": "secrets.encoding_aes_key"})


def do_create_connection(principal: Principal, *, platform: str, name: str, config: Mapping[str, Any],
                         secret_values: Mapping[str, str], default_community_id: int | None = None) -> Connection:
    """Connect a platform. Secrets are encrypted at rest; only their last 4 characters are kept in
    clear (``secret_hints``) for the console."""
    check_connection_input(platform, config, secret_values)
    name = name.strip()
    if not name:
        raise Invalid(_("名称不能为空"), details={"field": "name"})
    if default_community_id is not None and not Community.objects.filter(
            tenant_id=principal.tenant_id, pk=default_community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "default_community_id"})
    clean = {k: str(v) for k, v in secret_values.items() if str(v)}
    with transaction.atomic():
        if Connection.objects.filter(tenant_id=principal.tenant_id, platform=platform, name=name).exists():
            raise Conflict(_("同名连接已存在"), details={"field": "name"})
        conn = Connection.objects.create(
            tenant_id=principal.tenant_id, platform=platform, name=name, config=dict(config),
            secrets_encrypted=secrets.encrypt(clean), secret_hints={k: secrets.hint(v) for k, v in clean.items()},
            hook_key=pysecrets.token_urlsafe(24), default_community_id=default_community_id,
        )
        do_audit(principal, "connectors.connect", "connection", str(conn.pk),
                 data={"platform": platform, "name": name, "secrets": sorted(clean)})
    return conn


def do_update_connection_secrets(principal: Principal, connection_id: int,
                                 secret_values: Mapping[str, str]) -> Connection:
    """Replace some secrets (blank values keep the stored one)."""
    with transaction.atomic():
        conn = Connection.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=connection_id).first()
        if conn is None:
            raise NotFound(_("连接不存在"))
        current = secrets.decrypt(conn.secrets_encrypted)
        changed = {k: str(v) for k, v in secret_values.items() if str(v)}
        check_connection_input(conn.platform, conn.config, {**current, **changed}, partial=True)
        current.update(changed)
        conn.secrets_encrypted = secrets.encrypt(current)
        conn.secret_hints = {k: secrets.hint(v) for k, v in current.items()}
        conn.save(update_fields=["secrets_encrypted", "secret_hints"])
        do_audit(principal, "connectors.secrets", "connection", str(conn.pk), data={"changed": sorted(changed)})
    return conn


def connection_secrets(conn: Connection) -> dict[str, str]:
    """Decrypted secrets, for adapters only. Never log or return them."""
    return secrets.decrypt(conn.secrets_encrypted)


def do_note_connection_error(connection_id: int, message: str) -> None:
    Connection.objects.filter(pk=connection_id).update(
        error_count=F("error_count") + 1, last_error=message[:500], last_error_at=timezone.now())


# --- rooms ------------------------------------------------------------------------------------------

def do_discover_room(conn: Connection, external_id: str, *, name: str = "", member_count: int | None = None,
                     joined: bool = True) -> Room:
    """Record a room the bot has seen; map it to the connection's default community if it has one."""
    room, created = Room.objects.get_or_create(
        connection=conn, external_id=external_id,
        defaults={"tenant_id": conn.tenant_id, "name": name[:200], "member_count": member_count,
                  "bot_joined": joined},
    )
    changed: list[str] = []
    if not created:
        if name and room.name != name[:200]:
            room.name = name[:200]
            changed.append("name")
        if member_count is not None and room.member_count != member_count:
            room.member_count = member_count
            changed.append("member_count")
        if room.bot_joined != joined:
            room.bot_joined = joined
            changed.append("bot_joined")
        if changed:
            room.save(update_fields=changed)
    if room.group_id is None and conn.default_community_id is not None and joined:
        _map(room, conn.default_community_id)
    return room


def _map(room: Room, community_id: int) -> ChatGroup:
    group, _created = ChatGroup.objects.get_or_create(
        tenant_id=room.tenant_id, platform=room.connection.platform, external_id=room.external_id,
        defaults={"community_id": community_id, "name": (room.name or room.external_id)[:120]},
    )
    if group.community_id != community_id:
        group.community_id = community_id
        group.save(update_fields=["community_id"])
    room.group = group
    room.save(update_fields=["group"])
    return group


def do_map_room(principal: Principal, room_id: int, community_id: int, *,
                robot_key: str | None = None) -> ChatGroup:
    """Map a discovered room to a community (creates or moves its ChatGroup). ``robot_key`` is a
    WeCom group robot's webhook key, stored encrypted on the room."""
    with transaction.atomic():
        room = Room.objects.select_related("connection").filter(tenant_id=principal.tenant_id, pk=room_id).first()
        if room is None:
            raise NotFound(_("群不存在"), details={"field": "room_id"})
        if not Community.objects.filter(tenant_id=principal.tenant_id, pk=community_id).exists():
            raise NotFound(_("社群不存在"), details={"field": "community_id"})
        group = _map(room, community_id)
        if robot_key:
            do_set_room_secret(room, "robot_key", robot_key)
        do_audit(principal, "connectors.map_room", "room", str(room.pk),
                 data={"community_id": community_id, "group_id": group.pk})
    return group


def do_set_room_secret(room: Room, key: str, value: str) -> None:
    values = secrets.decrypt(room.secrets_encrypted)
    values[key] = value
    room.secrets_encrypted = secrets.encrypt(values)
    room.secret_hints = {k: secrets.hint(v) for k, v in values.items()}
    room.save(update_fields=["secrets_encrypted", "secret_hints"])


# --- inbound ----------------------------------------------------------------------------------------

def do_ingest_platform_events(conn: Connection, events: Sequence[Mapping[str, Any]], *,
                              mapped_only: bool = True) -> IngestResult:
    """Hand parsed platform events to the activity stream and update the connection's health.

    Events of rooms not mapped to a community are dropped when ``mapped_only`` (the default):
    shequn tracks the communities an operator chose, not every room a bot happens to sit in."""
    if mapped_only:
        rooms = {e.get("group") for e in events if e.get("group")}
        mapped = set(Room.objects.filter(connection=conn, external_id__in=rooms, group__isnull=False)
                     .values_list("external_id", flat=True)) if rooms else set()
        events = [e for e in events if not e.get("group") or e.get("group") in mapped]
    result = do_ingest(conn.tenant_id, events) if events else IngestResult()
    for err in result.errors[:5]:
        log.warning("connection %s: event %d rejected (%s: %s)", conn.pk, err.index, err.field, err.message)
    now = timezone.now()
    latest = None
    for e in events:
        occ = e.get("occurred_at")
        if isinstance(occ, int | float):
            ts = dt.datetime.fromtimestamp(occ, tz=dt.UTC)
            latest = ts if latest is None or ts > latest else latest
    updates: dict[str, Any] = {"last_received_at": now, "events_received": F("events_received") + result.stored}
    if latest is not None:
        updates["last_event_at"] = latest
    Connection.objects.filter(pk=conn.pk).update(**updates)
    return result


def do_store_inbound(conn: Connection, dedupe_key: str, event_type: str,
                     body: dict[str, Any]) -> tuple[InboundEvent, bool]:
    """Store a verified raw callback once and enqueue its processing in the same transaction.
    Returns (row, created); a platform retry of the same callback returns created=False."""
    from .tasks import process_inbound

    with transaction.atomic():
        row, created = InboundEvent.objects.get_or_create(
            connection=conn, dedupe_key=dedupe_key[:191],
            defaults={"tenant_id": conn.tenant_id, "platform": conn.platform, "event_type": event_type[:80],
                      "body": body},
        )
        if created:
            process_inbound.enqueue(row.pk)
    return row, created


def do_process_inbound(inbound_id: int) -> str:
    """Process one stored callback (idempotent: a done row is skipped)."""
    from .inbound import process

    with transaction.atomic():
        row = InboundEvent.objects.select_for_update().select_related("connection").filter(pk=inbound_id).first()
        if row is None or row.status == InboundEvent.Status.DONE:
            return "skipped"
        row.attempts += 1
        try:
            with transaction.atomic():
                process(row)
        except Exception as exc:
            log.exception("inbound %s (%s) failed", row.pk, row.platform)
            row.status = InboundEvent.Status.FAILED
            row.error = f"{type(exc).__name__}: {exc}"[:500]
            row.save(update_fields=["status", "error", "attempts"])
            do_note_connection_error(row.connection_id, row.error)
            return "failed"
        row.status = InboundEvent.Status.DONE
        row.processed_at = timezone.now()
        row.error = ""
        row.save(update_fields=["status", "processed_at", "error", "attempts"])
    return "done"


def do_matrix_sync(connection_id: int, *, timeout_ms: int = 0) -> dict[str, int]:
    """One Matrix sync round for a connection: fetch since the stored token, then in ONE transaction
    record rooms, ingest events and store the new token (restart-safe, no duplicates)."""
    from .matrix_sync import fetch_sync

    conn = Connection.objects.get(pk=connection_id, platform=Platform.MATRIX)
    info = _conn_info(conn)
    since = (conn.state or {}).get("next_batch")
    known = set(Room.objects.filter(connection=conn).exclude(staff_state={}).values_list("external_id", flat=True))
    try:
        batch = fetch_sync(info, since, timeout_ms=timeout_ms, auto_join=bool(conn.config.get("auto_join", True)),
                           known_levels=known)
    except Exception as exc:
        do_note_connection_error(conn.pk, f"sync: {type(exc).__name__}: {exc}")
        raise
    with transaction.atomic():
        conn = Connection.objects.select_for_update().get(pk=connection_id)
        if (conn.state or {}).get("next_batch") != since:
            return {"stored": 0, "duplicates": 0, "skipped_concurrent": 1}  # another syncer got there first
        for seen in batch.rooms:
            do_discover_room(conn, seen.room_id, name=seen.name, member_count=seen.member_count, joined=seen.joined)
        fresh = {seen.room_id: seen.power_levels for seen in batch.rooms if seen.power_levels is not None}
        parsed = do_parse_matrix_events(conn, batch.events, fresh)
        result = do_ingest_platform_events(conn, parsed)
        conn.state = {**(conn.state or {}), "next_batch": batch.next_batch}
        conn.save(update_fields=["state"])
    return {"stored": result.stored, "duplicates": result.duplicates, "events": len(batch.events),
            "rooms": len(batch.rooms), "gap_pages": batch.gap_pages}


def do_parse_matrix_events(conn: Connection, events: list[tuple[str, dict[str, Any]]],
                       fresh_levels: Mapping[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Raw Matrix events → activity events marked ``sender_is_admin`` from the rooms' power levels
    (cached on :class:`Room`, overridden by ``fresh_levels`` from the sync's state and by power-level
    changes in the batch); the cache is updated when the levels changed."""
    from .events_matrix import to_activities

    rooms = {room_id for room_id, _ev in events} | set(fresh_levels or {})
    cached = dict(Room.objects.filter(connection=conn, external_id__in=rooms)
                  .values_list("external_id", "staff_state"))
    levels = {room_id: lv for room_id, lv in cached.items() if lv}
    levels.update(fresh_levels or {})
    parsed = to_activities(events, bot_user=str(conn.config.get("user_id") or ""), levels=levels)
    for room_id, lv in levels.items():
        if room_id in cached and cached[room_id] != lv:
            Room.objects.filter(connection=conn, external_id=room_id).update(staff_state=lv)
    return parsed


def _conn_info(conn: Connection) -> Any:
    from .adapters import ConnInfo

    return ConnInfo(id=conn.pk, tenant_id=conn.tenant_id, platform=conn.platform, config=dict(conn.config or {}),
                    secrets=secrets.decrypt(conn.secrets_encrypted))


# --- outbox operations --------------------------------------------------------------------------------

def do_deliver_due(limit: int = 100, *, now: dt.datetime | None = None) -> DeliveryStats:
    """One round of the outbox worker (see :mod:`shequn.connectors.delivery`)."""
    return deliver_due(limit, now=now)


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
        OutboxAction.objects.filter(pk=task.action_id, status=OutboxAction.Status.DELEGATED).update(
            status=OutboxAction.Status.DONE, done_at=now,
            result={"by_human": principal.label[:120], "note": note[:500]})
        do_audit(principal, "connectors.human_task_done", "human_task", str(task.pk), reason=note)
    return task


# --- WeCom QR configs ----------------------------------------------------------------------------------

def do_create_qr_config(principal: Principal, connection_id: int, *, kind: str, state: str = "", remark: str = "",
                        chat_ids: list[str] | None = None, users: list[str] | None = None) -> QrConfig:
    """Create a WeCom 加入群聊 (``join_way``: up to 5 customer groups) or 联系我 (``contact_way``) QR
    config. ``state`` (≤ 30 chars) is echoed back on joins made through it (for attribution)."""
    from .wecom import WecomApi, check_qr_input

    conn = Connection.objects.filter(tenant_id=principal.tenant_id, pk=connection_id, platform="wecom").first()
    if conn is None:
        raise NotFound(_("连接不存在"), details={"field": "connection_id"})
    if kind not in QrConfig.Kind.values:
        raise Invalid(_("未知的二维码类型: %(k)s") % {"k": kind}, details={"field": "kind"})
    if len(remark) > 30:
        raise Invalid(_("备注最长 30 个字符"), details={"field": "remark"})
    is_join = kind == QrConfig.Kind.JOIN_WAY
    check_qr_input(state=state, chat_ids=list(chat_ids or []) if is_join else None,
                   users=list(users or []) if not is_join else None)
    api = WecomApi(conn, connection_secrets(conn))
    if is_join:
        made = api.add_join_way(chat_ids=list(chat_ids or []), state=state, remark=remark)
    else:
        made = api.add_contact_way(users=list(users or []), state=state, remark=remark)
    with transaction.atomic():
        qr = QrConfig.objects.create(tenant_id=principal.tenant_id, connection=conn, kind=kind,
                                     config_id=str(made["config_id"]), state=state, remark=remark,
                                     qr_code=str(made.get("qr_code") or ""), chat_ids=list(chat_ids or []),
                                     users=list(users or []))
        do_audit(principal, "connectors.qr_config", "qr_config", str(qr.pk), data={"kind": kind, "state": state})
    return qr
