"""Tenant-isolation probes of the engagement API (see ``shequn.api.tests.test_isolation``).

Objects in the state where the caller's own call succeeds: an open lottery, a funded red packet with
shares left, an unanswered member message in the reply queue (made by ingesting it)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from shequn.activity.services import do_ingest
from shequn.communities.models import ChatGroup
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.engagement.models import Lottery, LotteryEntry, PointsAccount, RedPacket, RedPacketClaim, ReplyTrack
from shequn.engagement.services import (
    do_close_lottery,
    do_create_badge,
    do_create_content_item,
    do_create_content_schedule,
    do_create_lottery,
    do_create_red_packet,
    do_points_earn,
)

P = "/api/v1/engagement"


def _own_member(ids: dict[str, int]) -> dict[str, int]:
    return {"member_id": ids["member_id"]}


PROBES: dict[tuple[str, str], Any] = {
    ("get", f"{P}/members/{{member_id}}/points"): None,
    ("get", f"{P}/members/{{member_id}}/points/history"): None,
    ("get", f"{P}/members/{{member_id}}/score"): None,
    ("get", f"{P}/lotteries/{{lottery_id}}"): None,
    ("post", f"{P}/lotteries/{{lottery_id}}/entries"): lambda ids: {"member_id": ids["member_id"], "tickets": 1},
    ("post", f"{P}/red-packets/{{packet_id}}/claims"): _own_member,
    ("post", f"{P}/reply-queue/{{track_id}}/reply"): {"text": "收到, 马上处理"},
    ("post", f"{P}/reply-queue/{{track_id}}/no-reply"): None,
    ("post", f"{P}/content-schedules/{{schedule_id}}/pause"): None,
    ("post", f"{P}/content-schedules/{{schedule_id}}/resume"): None,
    ("post", f"{P}/lotteries/{{lottery_id}}/close"): None,
    ("post", f"{P}/lotteries/{{lottery_id}}/cancel"): None,
    ("post", f"{P}/lotteries/{{lottery_id}}/draw"): None,
    ("patch", f"{P}/lotteries/{{lottery_id}}"): {"title": "改名"},
    ("patch", f"{P}/red-packets/{{packet_id}}"): {"title": "新年快乐"},
    ("post", f"{P}/red-packets/{{packet_id}}/end"): None,
    ("patch", f"{P}/badges/{{badge_id}}"): {"threshold": 9},
    ("patch", f"{P}/content-items/{{item_id}}"): {"title": "欢迎 (改)"},
    ("patch", f"{P}/content-schedules/{{schedule_id}}"): {"day_offset": 2},
}
PARAMS = {("post", f"{P}/lotteries/{{lottery_id}}/draw"): {"lottery_id": "closed_lottery_id"}}


def build_ids(tenant: Tenant, ids: dict[str, int]) -> dict[str, int]:
    p = Principal.system(tenant.pk)
    now = timezone.now()
    do_points_earn(tenant.pk, ids["member_id"], 50, kind="adjust", idempotency_key="iso-points", reason="iso")
    lot = do_create_lottery(p, title="周末抽奖", closes_at=now + dt.timedelta(days=1),
                            draw_at=now + dt.timedelta(days=2), prizes=[("香薰", 1)])
    packet = do_create_red_packet(p, total=100, count=3, title="红包")
    item = do_create_content_item(p, title="欢迎", body="欢迎加入")
    schedule = do_create_content_schedule(p, content_id=item.pk, kind="sequence", community_id=ids["community_id"],
                                          time_of_day=dt.time(9, 0), day_offset=1)
    closed = do_create_lottery(p, title="已截止", closes_at=now + dt.timedelta(seconds=30),
                               draw_at=now + dt.timedelta(seconds=30), prizes=[("香薰", 1)])
    do_close_lottery(tenant.pk, closed.pk, now=now + dt.timedelta(minutes=1))
    group = ChatGroup.objects.get(pk=ids["group_id"])
    res = do_ingest(tenant.pk, [{
        "platform": group.platform, "event_id": f"iso-question-{tenant.pk}", "kind": "message",
        "member_id": ids["spare_member_id"], "group": group.external_id, "occurred_at": now.isoformat(),
        "payload": {"text": "请问周六几点集合?"},
    }])
    assert res.stored == 1, res
    track = ReplyTrack.objects.get(tenant=tenant, event_id=res.event_ids[0])
    badge = do_create_badge(p, code="iso-badge", name="连签", rule="streak", threshold=7)
    return {"schedule_id": schedule.pk, "item_id": item.pk, "badge_id": badge.pk,
            "closed_lottery_id": closed.pk, "lottery_id": lot.pk, "packet_id": packet.pk, "track_id": track.pk}


def snapshot(tenant: Tenant) -> dict[str, Any]:
    return {
        "points": list(PointsAccount.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "balance")),
        "lotteries": list(Lottery.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "status")),
        "entries": LotteryEntry.objects.filter(tenant=tenant).count(),
        "packets": list(RedPacket.objects.filter(tenant=tenant).order_by("pk")
                        .values_list("pk", "remaining_amount", "remaining_count")),
        "claims": RedPacketClaim.objects.filter(tenant=tenant).count(),
        "tracks": list(ReplyTrack.objects.filter(tenant=tenant).order_by("pk")
                       .values_list("pk", "answered_at", "reply_action_id")),
    }


def _foreign_member(own: dict[str, int], foreign: dict[str, int]) -> dict[str, int]:
    return {"member_id": foreign["member_id"]}


MIXED = {
    ("post", f"{P}/lotteries/{{lottery_id}}/entries"): _foreign_member,
    ("post", f"{P}/red-packets/{{packet_id}}/claims"): _foreign_member,
}
