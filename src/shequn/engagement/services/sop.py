"""The content SOP: scheduled content (fixed, recurring, join-relative sequences) queued through the
connector outbox once per (schedule, occurrence, target), quiet hours, the sales cool-down, and the
posts' 24 h results. The calendar readers live in :mod:`shequn.engagement.selectors`."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.utils import timezone

from shequn.activity.models import ActivityEvent
from shequn.communities.models import ChatGroup, Membership
from shequn.connectors.services import do_request_action
from shequn.members.models import Identity

from ..models import ContentDelivery, ContentItem, ContentSchedule
from ..selectors import engagement_config, quiet_hours, schedule_occurrences, shift_out_of_quiet, tenant_time_zone


def render_content(item: ContentItem, platform: str) -> dict[str, Any]:
    """Per-platform payload for a ``send`` action. ``platform_overrides[platform]`` replaces the body."""
    body = str((item.platform_overrides or {}).get(platform) or item.body)
    if item.kind == ContentItem.Kind.LINK:
        if platform == "wecom":
            return {"msgtype": "link", "title": item.title, "desc": body, "url": item.url, "image_url": item.image_url}
        return {"text": f"{item.title}\n{body}\n{item.url}".strip()}
    if item.kind == ContentItem.Kind.IMAGE:
        return {"msgtype": "image", "image_url": item.image_url, "text": body}
    if item.kind == ContentItem.Kind.MARKDOWN:
        if platform == "telegram":
            return {"text": body, "parse_mode": "Markdown"}
        if platform == "wecom":
            return {"msgtype": "markdown", "text": body}
        if platform == "matrix":
            return {"text": body, "format": "org.matrix.custom.html.markdown"}
        return {"text": body}
    return {"text": body}


LOOKBACK = dt.timedelta(days=2)


def do_run_content_schedules(tenant_id: int, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Queue every due occurrence (fixed, recurring, join-relative sequences) through the outbox.

    Idempotent: each (schedule, occurrence, target) has one :class:`ContentDelivery` key that is also
    the outbox idempotency key, so reruns (every few minutes, over a 2-day look-back) send once.
    Quiet hours push a send to their end. Sales content is held back (``skipped_cooldown``) from
    members who joined less than ``no_sell_days`` ago, and from groups of communities younger than that."""
    now = now or timezone.now()
    cfg = engagement_config(tenant_id)
    tz = tenant_time_zone(tenant_id)
    quiet = quiet_hours(tenant_id)
    no_sell = dt.timedelta(days=int(cfg["no_sell_days"]))
    counts = {"queued": 0, "skipped_cooldown": 0}
    schedules = ContentSchedule.objects.filter(tenant_id=tenant_id, active=True).select_related("content", "community")
    for s in schedules:
        since = max(s.created_at - dt.timedelta(minutes=1), now - LOOKBACK)
        if s.kind == ContentSchedule.Kind.SEQUENCE:
            _run_sequence(s, since, now, tz, quiet=quiet, no_sell=no_sell, counts=counts)
            continue
        groups = _schedule_groups(s)
        for planned in schedule_occurrences(s, since, now, tz):
            effective = shift_out_of_quiet(planned, quiet, tz) if s.respect_quiet_hours else planned
            if effective > now:
                continue
            for g in groups:
                comm_created = s.community.created_at if s.community else g.community.created_at
                cooldown = s.content.is_sales and comm_created > planned - no_sell
                _deliver(s, planned, effective, group=g, member_id=None, cooldown=cooldown, counts=counts)
        ContentSchedule.objects.filter(pk=s.pk).update(last_run_at=now)
    return counts


def _schedule_groups(s: ContentSchedule) -> list[ChatGroup]:
    if s.group_id is not None:
        return list(ChatGroup.objects.filter(tenant_id=s.tenant_id, pk=s.group_id).select_related("community"))
    if s.community_id is not None:
        return list(ChatGroup.objects.filter(tenant_id=s.tenant_id, community_id=s.community_id, is_active=True)
                    .select_related("community"))
    return []


def _run_sequence(s: ContentSchedule, since: dt.datetime, now: dt.datetime, tz: str, *,
                  quiet: tuple[dt.time, dt.time] | None, no_sell: dt.timedelta, counts: dict[str, int]) -> None:
    """Day-N messages: day 0 at join (time_of_day None) or the member's join day + N at time_of_day."""
    if s.community_id is None:
        return
    offset = dt.timedelta(days=s.day_offset)
    lo = since - offset - dt.timedelta(days=2)
    qs = Membership.objects.filter(tenant_id=s.tenant_id, community_id=s.community_id, left_at__isnull=True,
                                   joined_at__gt=lo, joined_at__lte=now - offset + dt.timedelta(days=1))
    if s.group_id is not None:
        qs = qs.filter(group_id=s.group_id)
    zone = ZoneInfo(tz)
    for m in qs.select_related("group"):
        if s.time_of_day is None:
            planned = m.joined_at + offset
        else:
            day = m.joined_at.astimezone(zone).date() + offset
            planned = dt.datetime.combine(day, s.time_of_day, tzinfo=zone).astimezone(dt.UTC)
        if planned < since - dt.timedelta(days=1) or planned > now:
            continue
        effective = shift_out_of_quiet(planned, quiet, tz) if s.respect_quiet_hours else planned
        if effective > now:
            continue
        cooldown = s.content.is_sales and m.joined_at > planned - no_sell
        _deliver(s, planned, effective, group=None, member_id=m.member_id, cooldown=cooldown, counts=counts,
                 platform_group=m.group)


def _deliver(s: ContentSchedule, planned: dt.datetime, effective: dt.datetime, *, group: ChatGroup | None,
             member_id: int | None, cooldown: bool, counts: dict[str, int],
             platform_group: ChatGroup | None = None) -> None:
    target = f"g{group.pk}" if group is not None else f"m{member_id}"
    key = f"sop:{s.pk}:{planned.astimezone(dt.UTC).strftime('%Y%m%dT%H%M')}:{target}"
    if ContentDelivery.objects.filter(tenant_id=s.tenant_id, key=key).exists():
        return
    with transaction.atomic():
        delivery = ContentDelivery(tenant_id=s.tenant_id, schedule=s, key=key, group=group, member_id=member_id,
                                   occurrence_at=planned)
        if cooldown:
            delivery.status = ContentDelivery.Status.SKIPPED_COOLDOWN
            counts["skipped_cooldown"] += 1
        else:
            if group is not None:
                action = do_request_action(s.tenant_id, kind="send", group_id=group.pk, idempotency_key=key,
                                           payload=render_content(s.content, group.platform), source="engagement.sop")
            else:
                ident = (Identity.objects.filter(tenant_id=s.tenant_id, member_id=member_id or 0)
                         .order_by("-verified", "pk").first())
                platform = platform_group.platform if platform_group else (ident.platform if ident else None)
                if platform is None:
                    return
                ext = ident.external_id if ident and ident.platform == platform else ""
                action = do_request_action(s.tenant_id, kind="send", group_id=None, platform=platform,
                                           idempotency_key=key, target_member_id=member_id, target_external_id=ext,
                                           payload=render_content(s.content, platform), source="engagement.sop")
            delivery.action_id = action.pk
            delivery.sent_at = effective
            counts["queued"] += 1
        try:
            with transaction.atomic():
                delivery.save()
        except IntegrityError:
            return


def do_collect_post_results(tenant_id: int, *, now: dt.datetime | None = None) -> int:
    """Fill replies and reactions within 24 h of each group post once the 24 h have passed."""
    now = now or timezone.now()
    n = 0
    for d in ContentDelivery.objects.filter(tenant_id=tenant_id, status=ContentDelivery.Status.QUEUED,
                                            group__isnull=False, replies__isnull=True,
                                            sent_at__lte=now - dt.timedelta(hours=24)):
        assert d.sent_at is not None
        window = ActivityEvent.objects.filter(tenant_id=tenant_id, group_id=d.group_id, occurred_at__gte=d.sent_at,
                                              occurred_at__lt=d.sent_at + dt.timedelta(hours=24))
        d.replies = window.filter(kind__in=["reply", "message"]).count()
        d.reactions = window.filter(kind="reaction").count()
        d.save(update_fields=["replies", "reactions"])
        n += 1
    return n
