"""Engagement's activity consumer (:func:`on_activity`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from django.db.models import Count
from django.utils import timezone

from shequn.activity.models import ActivityEvent

from ..models import CheckIn, PointsEntry
from ..selectors import engagement_config, tenant_time_zone
from ..streaks import day_bounds, local_day
from .checkins import do_check_in
from .points import do_points_earn_many
from .replies import _track_replies
from .scores import do_recompute_scores
from .welcome import on_joins


def on_activity(tenant_id: int, events: Sequence[ActivityEvent]) -> None:
    """Engagement's consumer: incremental scores + lifecycle for the batch's members, the reply queue,
    welcomes for joins (:mod:`.welcome`),
    chat check-ins (the keyword, or ``check_in`` events) and points for messages (daily cap), invites
    and purchases. Idempotent: scores are recomputed (not incremented), reply tracks are unique per
    event, points carry per-event idempotency keys, check-ins are unique per day. Set-based: a batch
    costs a handful of queries, not a few per event."""
    members = sorted({e.member_id for e in events if e.member_id is not None})
    if not members:
        return
    on_joins(tenant_id, events)
    do_recompute_scores(tenant_id, member_ids=members)
    _track_replies(tenant_id, events)
    cfg = engagement_config(tenant_id)
    keyword = str(cfg["checkin"]["keyword"]).strip()
    earn = cfg["earn"]
    per_msg, cap = int(earn["message"]), int(earn["message_daily_cap"])
    tz = tenant_time_zone(tenant_id)
    today_start, today_end = day_bounds(local_day(timezone.now(), tz), tz)
    earned_today: dict[int, int] = defaultdict(int)
    if per_msg > 0 and any(e.kind in ("message", "reply") for e in events):
        for m, n in (PointsEntry.objects.filter(tenant_id=tenant_id, member_id__in=members, kind="message",
                                                created_at__gte=today_start, created_at__lt=today_end)
                     .values_list("member_id").annotate(n=Count("pk")).values_list("member_id", "n")):
            earned_today[m] = n * per_msg
    items: list[tuple[int, int, str, str]] = []
    for e in events:
        if e.member_id is None:
            continue
        p = e.payload if isinstance(e.payload, dict) else {}
        raw_text = p.get("text")
        text = raw_text if isinstance(raw_text, str) else ""
        if e.kind == "check_in" or (e.kind == "message" and keyword and text.strip() == keyword):
            do_check_in(tenant_id, e.member_id, at=e.occurred_at, source=CheckIn.Source.CHAT)
            continue
        if e.kind in ("message", "reply") and per_msg > 0:
            if earned_today[e.member_id] + per_msg <= cap:
                earned_today[e.member_id] += per_msg
                items.append((e.member_id, per_msg, "message", f"event:{e.pk}"))
        elif e.kind == "invite" and int(earn["invite"]) > 0:
            items.append((e.member_id, int(earn["invite"]), "invite", f"event:{e.pk}"))
        elif e.kind == "purchase":
            amount = p.get("amount_fen")
            pts = (int(amount) // 100) * int(earn["purchase_per_yuan"]) if isinstance(amount, int) else 0
            if pts > 0:
                items.append((e.member_id, pts, "purchase", f"event:{e.pk}"))
    do_points_earn_many(tenant_id, items)
