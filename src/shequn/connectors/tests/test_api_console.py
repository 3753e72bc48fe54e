"""REST API and console pages of the connectors: secrets never come back, tenants don't leak, dead
letters can be retried, human tasks completed, rooms mapped; the Matrix appservice push."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from shequn.activity.models import ActivityEvent
from shequn.communities.models import ChatGroup, Community
from shequn.connectors.models import Connection, HumanTask, OutboxAction, Room
from shequn.connectors.services import do_create_connection, do_discover_room, do_request_action
from shequn.core.permissions import Principal
from shequn.core.services import do_create_api_key, do_create_operator


@pytest.fixture
def key(system: Any) -> str:
    return do_create_api_key(system, name="ops", scopes=["connectors.write"])[1]


@pytest.fixture
def other_key(other_tenant: Any) -> str:
    return do_create_api_key(Principal.system(other_tenant.pk), name="x", scopes=["*"])[1]


def call(client: Client, method: str, path: str, key: str, body: Any = None) -> Any:
    return getattr(client, method)(f"/api/v1/connectors{path}", data=json.dumps(body) if body is not None else None,
                                   content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")


def test_connection_api_never_returns_secrets(client: Client, key: str, other_key: str, tg_api: Any) -> None:
    resp = call(client, "post", "/connections", key, {
        "platform": "telegram", "name": "群助手", "config": {"api_base": tg_api.url},
        "secrets": {"bot_token": "123:SECRETSECRETSECRET",
                                                            "webhook_secret": "abcDEF_123-xyz"}})
    assert resp.status_code == 201, resp.content
    assert b"SECRETSECRET" not in resp.content and b"abcDEF" not in resp.content
    assert resp.json()["secret_hints"]["bot_token"] == "••••CRET"
    listed = call(client, "get", "/connections", key)
    assert listed.status_code == 200 and listed.json()[0]["health"]["outbox_backlog"] == 0
    assert b"SECRETSECRET" not in listed.content
    assert call(client, "get", "/connections", other_key).json() == []
    bad = call(client, "post", "/connections", key, {"platform": "wecom", "name": "x", "secrets": {}})
    assert bad.status_code == 422 and bad.json()["details"]["field"] == "config.corp_id"


def test_outbox_retry_and_human_tasks_api(client: Client, tenant: Any, system: Any, key: str, other_key: str) -> None:
    community = Community.objects.create(tenant=tenant, name="c")
    g = ChatGroup.objects.create(tenant=tenant, community=community, platform="wecom", external_id="wr1", name="g")
    dead = do_request_action(tenant.pk, kind="send", group_id=g.pk, idempotency_key="s", payload={"text": "x"})
    OutboxAction.objects.filter(pk=dead.pk).update(status="dead", attempts=8, last_error="HTTP 502")
    kick = do_request_action(tenant.pk, kind="kick", group_id=g.pk, idempotency_key="k", target_external_id="wm")
    page = call(client, "get", "/outbox?status=dead", key).json()
    assert [a["id"] for a in page["items"]] == [dead.pk]
    assert call(client, "post", f"/outbox/{dead.pk}/retry", other_key).status_code == 404
    r = call(client, "post", f"/outbox/{dead.pk}/retry", key, {"note": "平台恢复"})
    assert r.status_code == 200 and r.json()["status"] == "pending" and r.json()["attempts"] == 0
    assert call(client, "post", f"/outbox/{dead.pk}/retry", key).status_code == 409
    tasks = call(client, "get", "/human-tasks", key).json()["items"]
    assert len(tasks) == 1 and tasks[0]["action_id"] == kick.pk
    done = call(client, "post", f"/human-tasks/{tasks[0]['id']}/complete", key, {"note": "已移出"})
    assert done.status_code == 200 and done.json()["status"] == "done"
    kick.refresh_from_db()
    assert kick.status == "done"


def test_room_map_api(client: Client, tenant: Any, system: Any, key: str) -> None:
    conn = do_create_connection(system, platform="telegram", name="b", config={},
                                secret_values={"bot_token": "1:x" * 5, "webhook_secret": "s"}, verify=False)
    room = do_discover_room(conn, "-100", name="新群")
    community = Community.objects.create(tenant=tenant, name="c")
    assert call(client, "get", "/rooms?unmapped=true", key).json()["items"][0]["id"] == room.pk
    r = call(client, "post", f"/rooms/{room.pk}/map", key, {"community_id": community.pk})
    assert r.status_code == 200 and r.json()["group_id"]
    assert ChatGroup.objects.get(pk=r.json()["group_id"]).community_id == community.pk


def test_console_pages(client: Client, tenant: Any, system: Any, tg_api: Any) -> None:
    do_create_operator(tenant=tenant, username="ops", password="pw-12345678")
    client.login(username="ops", password="pw-12345678")
    conn = do_create_connection(system, platform="matrix", name="m",
                                config={"homeserver": "http://127.0.0.1:1", "user_id": "@b:x"},
                                secret_values={"access_token": "syt_verysecrettoken"}, verify=False)
    room = do_discover_room(conn, "!r:x", name="房间")
    community = Community.objects.create(tenant=tenant, name="c")
    g = ChatGroup.objects.create(tenant=tenant, community=community, platform="wecom", external_id="wr", name="g")
    a = do_request_action(tenant.pk, kind="kick", group_id=g.pk, idempotency_key="k", target_external_id="wm")
    for url in ("/console/connectors/connection/", f"/console/connectors/connection/{conn.pk}/change/",
                "/console/connectors/connection/add/", "/console/connectors/room/",
                "/console/connectors/outboxaction/", "/console/connectors/humantask/",
                "/console/connectors/inboundevent/", "/console/connectors/qrconfig/"):
        resp = client.get(url)
        assert resp.status_code == 200, url
        assert b"syt_verysecrettoken" not in resp.content
    # map a room from the console
    resp = client.post(f"/console/connectors/room/{room.pk}/change/", {"community": community.pk, "robot_key": ""})
    assert resp.status_code == 302
    assert Room.objects.get(pk=room.pk).group is not None
    # mark a human task done
    task = HumanTask.objects.get(action=a)
    resp = client.post("/console/connectors/humantask/", {"action": "mark_done", "_selected_action": [task.pk]})
    assert resp.status_code == 302
    task.refresh_from_db()
    assert task.status == "done"
    # connect a platform from the console
    resp = client.post("/console/connectors/connection/add/", {
        "platform": "telegram", "name": "新机器人", "is_active": "on", "bot_token": "42:AAAAAAAAAAAAAAAA",
        "api_base": tg_api.url,
        "webhook_secret": "sec_ret"})
    assert resp.status_code == 302, resp.content[:2000]
    new = Connection.objects.get(name="新机器人")
    assert new.secret_hints["bot_token"] == "••••AAAA" and "AAAAAAAA" not in new.secrets_encrypted


def test_matrix_appservice_push(client: Client, tenant: Any, system: Any) -> None:
    community = Community.objects.create(tenant=tenant, name="c")
    conn = do_create_connection(system, platform="matrix", name="as", default_community_id=community.pk,
                                config={"homeserver": "http://127.0.0.1:1", "user_id": "@bot:x"},
                                secret_values={"access_token": "tok", "hs_token": "hs-secret-token"}, verify=False)
    do_discover_room(conn, "!room:x", name="r")
    ev = {"type": "m.room.message", "event_id": "$e1", "room_id": "!room:x", "sender": "@alice:x",
          "origin_server_ts": 1763870400000, "content": {"msgtype": "m.text", "body": "hi"}}
    url = f"/hooks/matrix/{conn.hook_key}/_matrix/app/v1/transactions/t1"
    bad = client.put(url, data=json.dumps({"events": [ev]}), content_type="application/json",
                     HTTP_AUTHORIZATION="Bearer nope")
    assert bad.status_code == 403 and not ActivityEvent.objects.exists()
    for _ in range(2):  # the homeserver retries a transaction: stored once
        ok = client.put(url, data=json.dumps({"events": [ev]}), content_type="application/json",
                        HTTP_AUTHORIZATION="Bearer hs-secret-token")
        assert ok.status_code == 200
    assert ActivityEvent.objects.get(platform_event_id="$e1").payload["text"] == "hi"
    assert client.put(url, data=b"{", content_type="application/json",
                      HTTP_AUTHORIZATION="Bearer hs-secret-token").status_code == 400


def test_connections_are_switched_off_and_deleted_through_the_api(client: Client, tenant: Any, key: str,
                                                                   other_key: str, tg_api: Any) -> None:
    created = call(client, "post", "/connections", key, {
        "platform": "telegram", "name": "bot", "config": {"api_base": tg_api.url},
        "secrets": {"bot_token": "1:x", "webhook_secret": "s"}}).json()
    cid = created["id"]
    assert call(client, "post", f"/connections/{cid}/deactivate", other_key).status_code == 404
    off = call(client, "post", f"/connections/{cid}/deactivate", key, {"note": "换机器人"})
    assert off.status_code == 200 and off.json()["is_active"] is False
    assert call(client, "post", f"/connections/{cid}/activate", key).json()["is_active"] is True
    assert call(client, "delete", f"/connections/{cid}", other_key).status_code == 404
    assert call(client, "delete", f"/connections/{cid}", key).json() == {"id": cid, "deleted": True}
    assert not Connection.objects.filter(pk=cid).exists()


def test_a_matrix_connection_to_an_unreachable_homeserver_is_refused(client: Client, key: str) -> None:
    resp = call(client, "post", "/connections", key, {
        "platform": "matrix", "name": "m", "config": {"homeserver": "http://127.0.0.1:9", "user_id": "@b:x"},
        "secrets": {"access_token": "tok"}})
    assert resp.status_code == 422 and resp.json()["details"]["field"] == "config.homeserver"
    assert not Connection.objects.filter(name="m").exists()
