"""Issue #19 on Telegram, in process against the stateful Bot API fake: a timed mute is
``restrictChatMember`` with ``until_date`` (recorded with its end), shown on the console's member and
violation pages with the time left, and lifted early in one click (an immediate unmute; no unmute is
scheduled on Telegram, whose mutes end by themselves). The warning names the member with a mention."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from shequn.communities.models import Community
from shequn.connectors.models import OutboxAction
from shequn.connectors.services import do_create_connection, do_deliver_due, do_poll_telegram
from shequn.core.services import do_create_operator
from shequn.moderation.models import Strike, Violation
from shequn.moderation.selectors import running_mutes
from shequn.moderation.services import do_save_policy

from .telegram_fake import FakeTelegram

AD = "加微信 vx123 领红包"
BOB = {"id": 5202, "is_bot": False, "first_name": "阿强", "username": "aqiang"}


def _deliver_until(done: Any, timeout: float = 15) -> None:
    """Deliver rounds until ``done()`` (Telegram's 1 message/s per chat spaces the actions out)."""
    end = time.monotonic() + timeout
    while not done() and time.monotonic() < end:
        do_deliver_due()
        time.sleep(0.2)
    assert done()


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def test_a_telegram_mute_runs_until_date_shows_its_time_left_and_lifts_in_one_click(
        tenant: Any, system: Any, telegram: FakeTelegram, client: Client) -> None:
    community = Community.objects.create(tenant=tenant, name="护肤群")
    do_save_policy(system, community.pk, warn_limit=1, mute_hours=2)  # the first ad: warn + a 2 h mute
    telegram.add_chat(-100201, "护肤交流群")
    conn = do_create_connection(system, platform="telegram", name="bot", default_community_id=community.pk,
                                config={"api_base": telegram.url, "mode": "polling"},
                                secret_values={"bot_token": telegram.token, "webhook_secret": "s3cret"})
    ad = telegram.post(-100201, BOB, AD)
    start = time.time()
    do_poll_telegram(conn.pk, drop_webhook=True)  # stored, ingested, judged (immediate task backend)
    _deliver_until(lambda: telegram.restricted and telegram.sent and ad in telegram.deleted)

    assert ad in telegram.deleted
    (restrict,) = telegram.restricted
    assert restrict["permissions"]["can_send_messages"] is False
    assert abs(restrict["until_date"] - (start + 7200)) < 60
    v = Violation.objects.get(event__platform_event_id=ad)
    assert v.ladder_step == "mute"
    mute = OutboxAction.objects.get(idempotency_key=f"mod:{v.pk}:mute")
    assert mute.status == "done"
    assert abs(dt.datetime.fromisoformat(mute.result["until"]).timestamp() - restrict["until_date"]) < 2
    # Telegram ends the mute itself: no unmute is scheduled in the outbox
    assert not OutboxAction.objects.filter(kind="unmute").exists()
    # the warning names the member: a tg://user mention (Telegram turns it into a text_mention)
    (warn,) = telegram.sent
    assert warn["parse_mode"] == "HTML" and warn["text"].startswith(f'<a href="tg://user?id={BOB["id"]}">阿强</a>: ')
    assert "1/1" in warn["text"]

    (strike,) = running_mutes(tenant.pk, member_id=v.member_id)
    lift_url = reverse("admin:moderation_strike_lift_row", args=[strike.pk])
    do_create_operator(tenant=tenant, username="ops", password="pw-12345678")
    client.login(username="ops", password="pw-12345678")
    member_page = client.get(f"/console/members/member/{v.member_id}/change/").content.decode()
    assert "禁言中" in member_page and lift_url in member_page
    assert "1\xa0小时" in member_page or "1 小时" in member_page  # the time left (≈ 2 h, shown as 1 h 59 min)
    violation_page = client.get(f"/console/moderation/violation/{v.pk}/change/").content.decode()
    assert lift_url in violation_page and "剩余" in violation_page

    # one click: the mute ends now and the member is unmuted at once
    member_url = f"/console/members/member/{v.member_id}/change/"
    assert client.get(lift_url, HTTP_REFERER=member_url).status_code == 200  # the confirmation page
    assert running_mutes(tenant.pk, member_id=v.member_id).exists()
    resp = client.post(lift_url, {"next": member_url})
    assert resp.status_code == 302 and resp["Location"] == member_url
    strike.refresh_from_db()
    assert strike.until is not None and strike.until <= timezone.now() and strike.revoked_at is None
    _deliver_until(lambda: len(telegram.restricted) == 2)
    unmute = telegram.restricted[-1]
    assert len(telegram.restricted) == 2 and unmute["user_id"] == str(BOB["id"])
    assert unmute["permissions"]["can_send_messages"] is True
    assert not running_mutes(tenant.pk, member_id=v.member_id).exists()
    assert lift_url not in client.get(f"/console/members/member/{v.member_id}/change/").content.decode()
    assert Strike.objects.filter(violation=v, kind="mute").count() == 1  # lifting is mercy: the strike stays
