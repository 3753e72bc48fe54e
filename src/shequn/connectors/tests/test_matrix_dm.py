"""SOP that delivers on Matrix by direct message, against a real Synapse: a day-0 item for a member
who agreed to messages goes to the bot's direct room with them (``m.direct``, made once and reused),
the member is invited to it as a direct chat and reads the message there; members who did not agree
get it in the community room, addressed by name."""

from __future__ import annotations

import datetime as dt
import urllib.parse
import uuid
from typing import Any

import pytest
from django.utils import timezone

from shequn.connectors.models import OutboxAction
from shequn.connectors.services import do_deliver_due, do_matrix_sync, do_request_action
from shequn.engagement.models import ContentDelivery, ContentItem, ContentSchedule
from shequn.engagement.services import do_run_content_schedules
from shequn.members.models import Member

from .matrix_client import User

pytestmark = [pytest.mark.synapse, pytest.mark.django_db(transaction=False)]


def test_day0_item_reaches_a_consenting_matrix_member_by_direct_message(
        matrix_world: dict[str, Any], synapse: Any, tenant: Any) -> None:
    w = matrix_world
    alice, room, bot = w["alice"], w["room"], w["bot"]
    item = ContentItem.objects.create(tenant=tenant, title="SOP", body="第 1 天: 先看群规")
    s = ContentSchedule.objects.create(tenant=tenant, content=item, community=w["community"], kind="sequence",
                                       day_offset=0, respect_quiet_hours=False)
    ContentSchedule.objects.filter(pk=s.pk).update(created_at=timezone.now() - dt.timedelta(days=1))
    carol = User(synapse.base_url, synapse.register(f"carol{uuid.uuid4().hex[:6]}"))
    alice.call("POST", f"/rooms/{urllib.parse.quote(room)}/invite", {"user_id": carol.user_id})
    carol.join(room)
    do_matrix_sync(w["conn"].pk)
    Member.objects.filter(identities__external_id=carol.user_id).update(consent_marketing=True)

    do_run_content_schedules(tenant.pk, now=timezone.now() + dt.timedelta(minutes=1))
    assert do_deliver_due().done == 3, list(OutboxAction.objects.values("kind", "status", "last_error"))
    dm = OutboxAction.objects.get(source="engagement.sop", group__isnull=True)
    assert dm.payload["dm"] is True and ContentDelivery.objects.get(direct=True).member_id == dm.target_member_id

    # carol is invited to a direct room, recorded in the bot's m.direct; she accepts and reads it
    as_bot = User(synapse.base_url, bot)
    direct = as_bot.call("GET", f"/user/{urllib.parse.quote(bot['user_id'])}/account_data/m.direct")
    dm_room = direct[carol.user_id][0]
    assert as_bot.state(dm_room, "m.room.member", carol.user_id)["is_direct"] is True
    carol.join(dm_room)
    assert carol.event(dm_room, dm.result["event_id"])["content"]["body"] == "第 1 天: 先看群规"

    # the next direct message reuses the room
    again = do_request_action(tenant.pk, kind="send", group_id=None, platform="matrix", idempotency_key="dm:2",
                              target_member_id=dm.target_member_id, payload={"text": "第 2 天", "dm": True})
    assert do_deliver_due().done == 1
    again.refresh_from_db()
    assert carol.event(dm_room, again.result["event_id"])["content"]["body"] == "第 2 天"
