from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from shequn.activity.models import ActivityEvent
from shequn.communities.models import ChatGroup, Community, Membership
from shequn.connectors.services import do_create_connection
from shequn.connectors.tests import telegram_payloads as P
from shequn.connectors.tests.fake_server import FakeServer
from shequn.members.models import Identity, Member

_ids = itertools.count(1)


@pytest.fixture
def community(tenant):
    c = Community.objects.create(tenant=tenant, name="车友会")
    Community.objects.filter(pk=c.pk).update(created_at=timezone.now() - dt.timedelta(days=400))
    c.refresh_from_db()
    return c


@pytest.fixture
def group(tenant, community):
    return ChatGroup.objects.create(tenant=tenant, community=community, platform="telegram", external_id="-100",
                                    name="车友 1 群")


@pytest.fixture
def make_member(tenant, community, group):
    def make(name="会员", *, joined_days_ago=100, last_active=None, tenant_obj=None, join=True, now=None):
        t = tenant_obj or tenant
        now = now or timezone.now()
        m = Member.objects.create(tenant=t, display_name=name, first_seen_at=now - dt.timedelta(days=joined_days_ago),
                                  last_active_at=last_active)
        Identity.objects.create(tenant=t, member=m, platform="telegram", external_id=f"u{m.pk}", verified=True)
        if join and t == tenant:
            Membership.objects.create(tenant=t, member=m, community=community, group=group,
                                      joined_at=now - dt.timedelta(days=joined_days_ago))
        return m

    return make


@pytest.fixture
def event(tenant, community, group):
    def make(member, kind, when, payload=None, *, comm=True):
        return ActivityEvent.objects.create(
            tenant=tenant, member=member, community=community if comm else None, group=group if comm else None,
            platform="telegram", platform_event_id=f"e{next(_ids)}", kind=kind, occurred_at=when,
            received_at=when, payload=payload or {})

    return make


# --- a Telegram connection against the local Bot API fake (welcome and SOP delivery tests) ----------

SECRET = "hook-Secret_123"


@pytest.fixture
def tg_api() -> Iterator[FakeServer]:
    def default(name: str, fields: dict[str, str]) -> tuple[int, Any]:
        if name in ("sendMessage", "sendPhoto"):
            return 200, P.SENT
        return 200, P.TRUE

    with FakeServer(default) as server:
        yield server


@pytest.fixture
def tg(tenant: Any, system: Any, tg_api: FakeServer, settings: Any) -> dict[str, Any]:
    settings.SHEQUN = {**settings.SHEQUN, "PUBLIC_BASE_URL": "https://qun.example.cn"}
    community = Community.objects.create(tenant=tenant, name="护肤群")
    conn = do_create_connection(system, platform="telegram", name="bot", default_community_id=community.pk,
                                config={"api_base": tg_api.url},
                                secret_values={"bot_token": "123456:TESTTOKENabcdef", "webhook_secret": SECRET},
                                verify=False)  # this fake speaks sendMessage, not getMe
    client = Client()
    tg_post_raw(client, conn, P.MESSAGE)  # the bot sees the chat: the room is discovered and mapped
    return {"conn": conn, "community": community, "client": client,
            "group": ChatGroup.objects.get(platform="telegram", external_id=str(P.CHAT["id"]))}


def tg_post_raw(client: Client, conn: Any, update: Any) -> None:
    r = client.post(f"/hooks/telegram/{conn.hook_key}/", data=json.dumps(update), content_type="application/json",
                    HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=SECRET)
    assert r.status_code == 200, r.content


def tg_join(update_id: int, user_id: int, name: str, when: dt.datetime) -> dict[str, Any]:
    user = {"id": user_id, "is_bot": False, "first_name": name}
    return {"update_id": update_id, "chat_member": {
        "chat": P.CHAT, "from": user, "date": int(when.timestamp()),
        "old_chat_member": {"status": "left", "user": user}, "new_chat_member": {"status": "member", "user": user}}}


def tg_post(tg: dict[str, Any], update: dict[str, Any]) -> None:
    tg_post_raw(tg["client"], tg["conn"], update)
