"""Tenant-isolation probes of the connectors API (see ``shequn.api.tests.test_isolation``).

Every object is made in the state where the caller's own call succeeds: a dead action to retry, a
pending one to cancel, an open human task, an unmapped room, a WeCom connection whose API is a local
fake server (QR configs call it)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from shequn.communities.models import Community
from shequn.communities.services import do_add_group
from shequn.connectors.models import Connection, HumanTask, OutboxAction, QrConfig, Room
from shequn.connectors.services import do_create_connection, do_discover_room, do_request_action
from shequn.core.models import Tenant
from shequn.core.permissions import Principal

from .fake_server import FakeServer

P = "/api/v1/connectors"

PROBES: dict[tuple[str, str], Any] = {
    ("post", f"{P}/connections/{{connection_id}}/secrets"): {"secrets": {"bot_token": "42:CHANGEDCHANGEDCHANGED"}},
    ("post", f"{P}/rooms/{{room_id}}/map"): lambda ids: {"community_id": ids["community_id"]},
    ("post", f"{P}/outbox/{{action_id}}/retry"): {"note": "重试"},
    ("post", f"{P}/outbox/{{action_id}}/cancel"): {"note": "取消"},
    ("post", f"{P}/human-tasks/{{task_id}}/complete"): {"note": "已处理"},
    ("post", f"{P}/connections/{{connection_id}}/qr-configs"):
        {"kind": "join_way", "state": "iso", "chat_ids": ["wrIsolation"]},
    ("post", f"{P}/connections/{{connection_id}}/deactivate"): {"note": "停用"},
    ("post", f"{P}/connections/{{connection_id}}/activate"): {"note": "启用"},
    ("delete", f"{P}/connections/{{connection_id}}"): None,
}
# one parameter name, different objects: QR configs need a WeCom connection
PARAMS = {
    ("post", f"{P}/outbox/{{action_id}}/retry"): {"action_id": "dead_action_id"},
    ("post", f"{P}/outbox/{{action_id}}/cancel"): {"action_id": "pending_action_id"},
    ("post", f"{P}/connections/{{connection_id}}/qr-configs"): {"connection_id": "wecom_connection_id"},
    ("delete", f"{P}/connections/{{connection_id}}"): {"connection_id": "spare_connection_id"},
    # referrals' fission tasks also use {task_id}; this one is a human task
    ("post", f"{P}/human-tasks/{{task_id}}/complete"): {"task_id": "human_task_id"},
}

_servers: list[FakeServer] = []
_lock = threading.Lock()


def _wecom_answer(name: str, fields: dict[str, str]) -> tuple[int, Any]:
    if name == "getMe":  # the same server plays the Telegram Bot API (a probe changes the bot token)
        return 200, {"ok": True, "result": {"id": 42, "is_bot": True, "first_name": "iso"}}
    if name == "get_follow_user_list":
        return 200, {"errcode": 0, "errmsg": "ok", "follow_user": ["zhangsan"]}
    if name == "gettoken":
        return 200, {"errcode": 0, "errmsg": "ok", "access_token": "ACCESS", "expires_in": 7200}
    if name == "add_join_way":
        return 200, {"errcode": 0, "errmsg": "ok", "config_id": uuid.uuid4().hex}
    if name == "get_join_way":
        return 200, {"errcode": 0, "errmsg": "ok", "join_way": {"qr_code": "https://wework.qpic.cn/wwpic/iso/0"}}
    return 404, {"errcode": 404, "errmsg": "unknown"}


def _wecom_server() -> FakeServer:
    """One local fake WeCom API for the test process (a daemon thread on 127.0.0.1)."""
    with _lock:
        if not _servers:
            _servers.append(FakeServer(_wecom_answer).__enter__())
        return _servers[0]


def build_ids(tenant: Tenant, ids: dict[str, int]) -> dict[str, int]:
    p = Principal.system(tenant.pk)
    tg = do_create_connection(p, platform="telegram", name="群助手", config={"api_base": _wecom_server().url},
                              secret_values={"bot_token": "1:" + "x" * 30, "webhook_secret": "s3cret"})
    wecom = do_create_connection(p, platform="wecom", name="企微",
                                 config={"corp_id": "wwiso", "api_base": _wecom_server().url + "/cgi-bin/"},
                                 # a fresh secret: the token cache key includes it
                                 secret_values={"corp_secret": uuid.uuid4().hex, "callback_token": "t",
                                                "encoding_aes_key": "k" * 43})
    spare = do_create_connection(p, platform="telegram", name="备用", config={"api_base": _wecom_server().url},
                                 secret_values={"bot_token": "2:" + "y" * 30, "webhook_secret": "s3cret2"})
    room = do_discover_room(tg, f"-100{tenant.pk}999", name="新发现的群")
    community = Community.objects.get(pk=ids["community_id"])
    wr = do_add_group(p, community, platform="wecom", external_id=f"wr-iso-{tenant.pk}", name="企微群")
    dead = do_request_action(tenant.pk, kind="send", group_id=ids["group_id"], idempotency_key="iso-dead",
                             payload={"text": "x"})
    OutboxAction.objects.filter(pk=dead.pk).update(status=OutboxAction.Status.DEAD, attempts=8,
                                                   last_error="HTTP 502")
    pending = do_request_action(tenant.pk, kind="send", group_id=ids["group_id"], idempotency_key="iso-pending",
                                payload={"text": "y"})
    kick = do_request_action(tenant.pk, kind="kick", group_id=wr.pk, idempotency_key="iso-kick",
                             target_external_id="wmIso")
    task = HumanTask.objects.get(tenant=tenant, action=kick)
    return {"connection_id": tg.pk, "wecom_connection_id": wecom.pk, "spare_connection_id": spare.pk,
            "room_id": room.pk,
            "dead_action_id": dead.pk, "pending_action_id": pending.pk, "human_task_id": task.pk}


def snapshot(tenant: Tenant) -> dict[str, Any]:
    return {
        "connections": list(Connection.objects.filter(tenant=tenant).order_by("pk")
                            .values_list("pk", "secrets_encrypted", "secret_hints", "is_active")),
        "rooms": list(Room.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "group_id")),
        "actions": list(OutboxAction.objects.filter(tenant=tenant).order_by("pk")
                        .values_list("pk", "status", "attempts")),
        "tasks": list(HumanTask.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "status")),
        "qr": QrConfig.objects.filter(tenant=tenant).count(),
    }

MIXED = {
    ("post", f"{P}/rooms/{{room_id}}/map"): lambda own, foreign: {"community_id": foreign["community_id"]},
}
