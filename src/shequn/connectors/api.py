"""REST API of the connectors (``/api/v1/connectors/``): connections with health, discovered rooms
and mapping, the outbox (list, retry, cancel), human tasks (list, complete). Secrets are write-only:
responses carry only their hints."""


import datetime as dt
from typing import Annotated, Any

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Router, Schema

from shequn.core.errors import NotFound
from shequn.core.http import ERRORS, BodyIn, Id, idempotent, max_len, require
from shequn.core.pagination import KeysetPagination, paginate

from . import selectors, services
from .models import Connection, QrConfig

router = Router(tags=["connectors"])


class HealthOut(Schema):
    last_event_at: dt.datetime | None
    last_received_at: dt.datetime | None
    lag_seconds: float | None
    events_received: int
    error_count: int
    last_error: str
    last_error_at: dt.datetime | None
    outbox_backlog: int
    dead_letters: int
    problems: list[dict[str, Any]] = []


class ConnectionOut(Schema):
    id: int
    platform: str
    name: str
    is_active: bool
    config: dict[str, Any]
    secret_hints: dict[str, str]
    hook_path: str
    default_community_id: int | None
    health: HealthOut


class ConnectionIn(BodyIn):
    platform: str = Field(min_length=1, max_length=max_len(Connection, "platform"))
    name: str = Field(min_length=1, max_length=max_len(Connection, "name"))
    config: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)
    default_community_id: Id | None = None


class SecretsIn(BodyIn):
    secrets: dict[str, str]


class RoomOut(Schema):
    id: int
    connection_id: int
    external_id: str
    name: str
    member_count: int | None
    group_id: int | None
    bot_joined: bool
    encrypted: bool = False


class MapIn(BodyIn):
    community_id: Id
    robot_key: str | None = Field(None, max_length=200)


class ActionOut(Schema):
    id: int
    kind: str
    platform: str
    status: str
    group_id: int | None
    connection_id: int | None
    target_external_id: str
    message_external_id: str
    attempts: int
    next_attempt_at: dt.datetime | None
    last_error: str
    source: str
    reason: str
    result: dict[str, Any]
    created_at: dt.datetime
    done_at: dt.datetime | None


class TaskOut(Schema):
    id: int
    action_id: int
    title: str
    instructions: str
    assignee_role: str
    due_at: dt.datetime
    status: str
    done_by: str
    done_at: dt.datetime | None


class NoteIn(BodyIn):
    note: str = Field("", max_length=500)


class QrIn(BodyIn):
    kind: str = Field(min_length=1, max_length=32)
    state: str = Field("", max_length=max_len(QrConfig, "state"))
    remark: str = Field("", max_length=max_len(QrConfig, "remark"))
    chat_ids: list[Annotated[str, Field(max_length=191)]] | None = Field(None, max_length=100)
    users: list[Annotated[str, Field(max_length=191)]] | None = Field(None, max_length=100)


class QrOut(Schema):
    id: int
    kind: str
    config_id: str
    state: str
    remark: str
    qr_code: str


def _conn_out(c: Any) -> dict[str, Any]:
    path = f"/hooks/{c.platform}/{c.hook_key}/"
    if c.platform == "matrix":
        path += "_matrix/app/v1/transactions/{txnId}"
    return {"id": c.pk, "platform": c.platform, "name": c.name, "is_active": c.is_active, "config": c.config,
            "secret_hints": c.secret_hints, "hook_path": path, "default_community_id": c.default_community_id,
            "health": selectors.health(c)}


@router.get("/connections", response={200: list[ConnectionOut], **ERRORS})
def list_connections(request: HttpRequest) -> Any:
    p = require(request, "connectors.read")
    return [_conn_out(c) for c in selectors.connections(p.tenant_id)]


@router.post("/connections", response={201: ConnectionOut, **ERRORS})
@idempotent
def create_connection(request: HttpRequest, body: ConnectionIn) -> Any:
    p = require(request, "connectors.write")
    c = services.do_create_connection(p, platform=body.platform, name=body.name, config=body.config,
                                      secret_values=body.secrets, default_community_id=body.default_community_id)
    return 201, _conn_out(c)


@router.post("/connections/{connection_id}/deactivate", response={200: ConnectionOut, **ERRORS})
@idempotent
def deactivate_connection(request: HttpRequest, connection_id: int, body: NoteIn | None = None) -> Any:
    p = require(request, "connectors.write")
    return _conn_out(services.do_set_connection_active(p, connection_id, False, reason=body.note if body else ""))


@router.post("/connections/{connection_id}/activate", response={200: ConnectionOut, **ERRORS})
@idempotent
def activate_connection(request: HttpRequest, connection_id: int, body: NoteIn | None = None) -> Any:
    p = require(request, "connectors.write")
    return _conn_out(services.do_set_connection_active(p, connection_id, True, reason=body.note if body else ""))


class ConnectionDeletedOut(Schema):
    id: int
    deleted: bool


@router.delete("/connections/{connection_id}", response={200: ConnectionDeletedOut, **ERRORS})
def delete_connection(request: HttpRequest, connection_id: int) -> Any:
    p = require(request, "connectors.write")
    services.do_delete_connection(p, connection_id)
    return {"id": connection_id, "deleted": True}


@router.post("/connections/{connection_id}/secrets", response={200: ConnectionOut, **ERRORS})
@idempotent
def update_secrets(request: HttpRequest, connection_id: Id, body: SecretsIn) -> Any:
    p = require(request, "connectors.write")
    return _conn_out(services.do_update_connection_secrets(p, connection_id, body.secrets))


@router.get("/rooms", response={200: list[RoomOut], **ERRORS})
@paginate(KeysetPagination)
def list_rooms(request: HttpRequest, connection_id: Id | None = None, unmapped: bool = False) -> Any:
    p = require(request, "connectors.read")
    return selectors.rooms(p.tenant_id, connection_id=connection_id, unmapped=unmapped)


@router.post("/rooms/{room_id}/map", response={200: RoomOut, **ERRORS})
@idempotent
def map_room(request: HttpRequest, room_id: Id, body: MapIn) -> Any:
    p = require(request, "connectors.write")
    services.do_map_room(p, room_id, body.community_id, robot_key=body.robot_key)
    room = selectors.rooms(p.tenant_id).select_related("connection").get(pk=room_id)
    if room.connection.platform == "telegram":  # the bot's admin rights there, for the health page
        services.do_check_rights_quietly(room.connection_id)
    return room


@router.get("/outbox", response={200: list[ActionOut], **ERRORS})
@paginate(KeysetPagination)
def list_outbox(request: HttpRequest, status: str | None = None, platform: str | None = None) -> Any:
    p = require(request, "connectors.read")
    return selectors.outbox(p.tenant_id, status=status, platform=platform)


@router.post("/outbox/{action_id}/retry", response={200: ActionOut, **ERRORS})
@idempotent
def retry_action(request: HttpRequest, action_id: Id, body: NoteIn | None = None) -> Any:
    p = require(request, "connectors.write")
    return services.do_retry_action(p, action_id, reason=body.note if body else "")


@router.post("/outbox/{action_id}/cancel", response={200: ActionOut, **ERRORS})
@idempotent
def cancel_action(request: HttpRequest, action_id: Id, body: NoteIn | None = None) -> Any:
    p = require(request, "connectors.write")
    return services.do_cancel_action(p, action_id, reason=body.note if body else "")


@router.get("/human-tasks", response={200: list[TaskOut], **ERRORS})
@paginate(KeysetPagination)
def list_tasks(request: HttpRequest, status: str | None = "open") -> Any:
    p = require(request, "connectors.read")
    return selectors.human_tasks(p.tenant_id, status=status or None)


@router.post("/human-tasks/{task_id}/complete", response={200: TaskOut, **ERRORS})
@idempotent
def complete_task(request: HttpRequest, task_id: Id, body: NoteIn | None = None) -> Any:
    p = require(request, "connectors.write")
    return services.do_complete_human_task(p, task_id, note=body.note if body else "")


@router.post("/connections/{connection_id}/qr-configs", response={201: QrOut, **ERRORS})
@idempotent
def create_qr(request: HttpRequest, connection_id: Id, body: QrIn) -> Any:
    p = require(request, "connectors.write")
    if selectors.connection(p.tenant_id, connection_id) is None:
        raise NotFound(_("连接不存在"))
    qr = services.do_create_qr_config(p, connection_id, kind=body.kind, state=body.state, remark=body.remark,
                                      chat_ids=body.chat_ids, users=body.users)
    return 201, qr
