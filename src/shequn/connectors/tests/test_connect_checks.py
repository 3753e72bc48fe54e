"""Issue #19, connecting validates on Telegram and WeCom too: a bogus Telegram token or WeCom corp
id / secret is refused with the field named and nothing stored; the Telegram bot's admin rights in
each chat (getChatMember for the bot, kept current by my_chat_member updates) are on the
connection's health page with the plain fix. Against local fakes of the documented APIs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from shequn.communities.models import Community
from shequn.connectors import selectors
from shequn.connectors.models import Connection
from shequn.connectors.services import do_check_telegram_rights, do_create_connection, do_poll_telegram
from shequn.core.errors import Invalid
from shequn.core.services import do_create_api_key, do_create_operator

from .fake_server import FakeServer
from .telegram_fake import FakeTelegram

WEBHOOK_SECRET = "hook_secret-1"


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def _connect_tg(system: Any, fake: FakeTelegram, token: str | None = None, **config: Any) -> Connection:
    return do_create_connection(system, platform="telegram", name=f"bot-{uuid.uuid4().hex[:6]}",
                                config={"api_base": fake.url, "mode": "polling", **config},
                                secret_values={"bot_token": token or fake.token, "webhook_secret": WEBHOOK_SECRET})


def test_a_bogus_telegram_token_is_refused_naming_the_field(tenant: Any, system: Any, telegram: FakeTelegram,
                                                             client: Client) -> None:
    with pytest.raises(Invalid) as exc:
        _connect_tg(system, telegram, token="123456:BOGUS-token")
    assert exc.value.details["field"] == "secrets.bot_token" and "bot_token" in exc.value.message
    with pytest.raises(Invalid) as exc:
        _connect_tg(system, telegram, api_base="http://127.0.0.1:9")  # nothing listens there
    assert exc.value.details["field"] == "config.api_base"
    assert not Connection.objects.exists()
    # the API: 422 naming the field, nothing stored
    key = do_create_api_key(system, name="k", scopes=["*"])[1]
    resp = client.post("/api/v1/connectors/connections", data=json.dumps({
        "platform": "telegram", "name": "bogus", "config": {"api_base": telegram.url},
        "secrets": {"bot_token": "1:nope", "webhook_secret": "s"}}), content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}")
    assert resp.status_code == 422 and resp.json()["details"]["field"] == "secrets.bot_token"
    assert not Connection.objects.exists()
    # a real token is accepted and the bot's identity filled in
    conn = _connect_tg(system, telegram)
    assert conn.config["bot_id"] == 7000001 and conn.config["bot_username"] == "shequn_test_bot"


def test_bot_rights_per_chat_are_on_the_health_page_with_the_fix(tenant: Any, system: Any, telegram: FakeTelegram,
                                                                 client: Client) -> None:
    community = Community.objects.create(tenant=tenant, name="护肤社群")
    telegram.add_chat(-1001, "好群")
    telegram.add_chat(-1002, "只能邀请的群", rights={"can_invite_users": True})
    telegram.add_chat(-1003, "没设管理员的群", admin=False)
    conn = _connect_tg(system, telegram)
    Connection.objects.filter(pk=conn.pk).update(default_community=community)
    conn.refresh_from_db()
    do_poll_telegram(conn.pk, timeout=0, drop_webhook=True)  # the my_chat_member updates: rooms + rights
    problems = {p["room"]: p for p in selectors.health(conn)["problems"]}
    assert set(problems) == {"-1002", "-1003"}
    assert problems["-1002"]["missing"] == ["can_delete_messages", "can_restrict_members"]
    assert problems["-1002"]["fix"] == "在群 只能邀请的群 中把机器人设为管理员并授予删除消息、封禁成员权限"
    assert problems["-1003"]["status"] == "member" and "邀请成员" in problems["-1003"]["fix"]
    # the owner promotes the bot; getChatMember (the periodic / on-map check) clears the problem
    telegram.rights["-1002"] = {"can_delete_messages": True, "can_restrict_members": True, "can_invite_users": True}
    assert do_check_telegram_rights(conn.pk) == {"-1001": [], "-1002": [], "-1003": [
        "can_delete_messages", "can_restrict_members", "can_invite_users"]}
    assert [p["room"] for p in selectors.health(conn)["problems"]] == ["-1003"]
    assert len([c for c in telegram.server.calls("getChatMember") if c["user_id"] == "7000001"]) == 3
    # the console's connection page shows the fix
    do_create_operator(tenant=tenant, username="ops", password="pw-12345678")
    client.login(username="ops", password="pw-12345678")
    page = client.get(f"/console/connectors/connection/{conn.pk}/change/")
    assert page.status_code == 200
    assert "在群 没设管理员的群 中把机器人设为管理员并授予删除消息、封禁成员、邀请成员权限" in page.content.decode()


# --- WeCom --------------------------------------------------------------------------------------------

CORP = "ww0123456789abcdef"
GOOD_SECRET = "good-secret-" + "x" * 20
NO_CONTACT_SECRET = "app-secret-without-customer-contact"


def _wecom_secrets(corp_secret: str) -> dict[str, str]:
    return {"corp_secret": corp_secret, "callback_token": "t", "encoding_aes_key": "k" * 43}


def _wecom_answer(name: str, fields: dict[str, str]) -> tuple[int, Any]:
    """WeCom's documented answers: gettoken (40013 invalid corpid, 40001 invalid secret) and
    externalcontact/get_follow_user_list (48002 api forbidden without the 客户联系 permission)."""
    if name == "gettoken":
        if fields.get("?corpid") != CORP:
            return 200, {"errcode": 40013, "errmsg": "invalid corpid"}
        if fields.get("?corpsecret") not in (GOOD_SECRET, NO_CONTACT_SECRET):
            return 200, {"errcode": 40001, "errmsg": "invalid credential"}
        token = "TOKEN-OK" if fields["?corpsecret"] == GOOD_SECRET else "TOKEN-APP"
        return 200, {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}
    if name == "get_follow_user_list":
        if fields.get("?access_token") != "TOKEN-OK":
            return 200, {"errcode": 48002, "errmsg": "api forbidden"}
        return 200, {"errcode": 0, "errmsg": "ok", "follow_user": ["zhangsan"]}
    return 404, {"errcode": 404, "errmsg": "unknown"}


@pytest.mark.parametrize(("corp", "secret", "field", "words"), [
    ("wwWRONG", GOOD_SECRET, "config.corp_id", "40013"),
    (CORP, "bogus", "secrets.corp_secret", "40001"),
    (CORP, NO_CONTACT_SECRET, "secrets.corp_secret", "客户联系"),
])
def test_wecom_credentials_are_checked_at_connect(tenant: Any, system: Any, corp: str, secret: str, field: str,
                                                  words: str) -> None:
    with FakeServer(_wecom_answer) as server:
        with pytest.raises(Invalid) as exc:
            do_create_connection(system, platform="wecom", name="企微",
                                 config={"corp_id": corp, "api_base": server.url + "/cgi-bin/"},
                                 secret_values=_wecom_secrets(secret))
        assert exc.value.details["field"] == field and words in exc.value.message
        assert not Connection.objects.exists()
        ok = do_create_connection(system, platform="wecom", name="企微", config={
            "corp_id": CORP, "api_base": server.url + "/cgi-bin/"},
            secret_values=_wecom_secrets(GOOD_SECRET))
        assert ok.pk and server.calls("get_follow_user_list")


def test_an_unreachable_wecom_api_is_refused(tenant: Any, system: Any) -> None:
    with pytest.raises(Invalid) as exc:
        do_create_connection(system, platform="wecom", name="企微",
                             config={"corp_id": CORP, "api_base": "http://127.0.0.1:9/cgi-bin/"},
                             secret_values=_wecom_secrets(GOOD_SECRET))
    assert exc.value.details["field"] == "config.api_base"
