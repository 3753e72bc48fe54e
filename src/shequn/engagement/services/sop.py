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
from shequn.connectors.capabilities import can_direct_message
from shequn.connectors.services import do_request_action
from shequn.members.audiences import audience_members
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
    """Queue every due occurrence (fixed, recurring, join-relative sequences, segment-targeted items)
    through the outbox.

    Idempotent: each (schedule, occurrence, target) has one :class:`ContentDelivery` key that is also
    the outbox idempotency key, so reruns (every few minutes, over a 2-day look-back) send once.
    Quiet hours push a send to their end. Sales content is held back (``skipped_cooldown``) from
    members who joined less than ``no_sell_days`` ago, and from groups of communities younger than that.

    Member-targeted content (a day-N sequence, or a schedule with a segment) reaches each member by a
    direct message where the platform allows it and the member agreed to messages
    (``consent_marketing``), otherwise in the member's group, addressed by name — never as a group-less
    send that a group platform would reject. A member in no group who cannot be messaged directly is
    recorded ``no_route``."""
    now = now or timezone.now()
    cfg = engagement_config(tenant_id)
    tz = tenant_time_zone(tenant_id)
    quiet = quiet_hours(tenant_id)
    no_sell = dt.timedelta(days=int(cfg["no_sell_days"]))
    counts = {"queued": 0, "skipped_cooldown": 0, "no_route": 0}
    schedules = ContentSchedule.objects.filter(tenant_id=tenant_id, active=True).select_related("content", "community")
    for s in schedules:
        since = max(s.created_at - dt.timedelta(minutes=1), now - LOOKBACK)
        if s.kind == ContentSchedule.Kind.SEQUENCE:
            _run_sequence(s, since, now, tz, quiet=quiet, no_sell=no_sell, counts=counts)
            ContentSchedule.objects.filter(pk=s.pk).update(last_run_at=now)
            continue
        segmented = bool(s.segment_stage or s.segment_tag_id or s.audience_id)
        groups = [] if segmented else _schedule_groups(s)
        for planned in schedule_occurrences(s, since, now, tz):
            effective = shift_out_of_quiet(planned, quiet, tz) if s.respect_quiet_hours else planned
            if effective > now:
                continue
            if segmented:
                _deliver_to_members(s, planned, effective, _segment_memberships(s), no_sell=no_sell, counts=counts)
                continue
            for g in groups:
                comm_created = s.community.created_at if s.community else g.community.created_at
                cooldown = s.content.is_sales and comm_created > planned - no_sell
                _deliver(s, planned, effective, target=f"g{g.pk}", group=g, member_id=None, cooldown=cooldown,
                         counts=counts)
        ContentSchedule.objects.filter(pk=s.pk).update(last_run_at=now)
    return counts


def _schedule_groups(s: ContentSchedule) -> list[ChatGroup]:
    if s.group_id is not None:
        return list(ChatGroup.objects.filter(tenant_id=s.tenant_id, pk=s.group_id).select_related("community"))
    if s.community_id is not None:
        return list(ChatGroup.objects.filter(tenant_id=s.tenant_id, community_id=s.community_id, is_active=True)
                    .select_related("community"))
    return []


def _segment_memberships(s: ContentSchedule) -> list[Membership]:
    """Open memberships of the schedule's community (or group) whose member is in the segment."""
    qs = Membership.objects.filter(tenant_id=s.tenant_id, left_at__isnull=True)
    if s.group_id is not None:
        qs = qs.filter(group_id=s.group_id)
    elif s.community_id is not None:
        qs = qs.filter(community_id=s.community_id)
    else:
        return []
    if s.segment_stage:
        qs = qs.filter(member__lifecycle_stage=s.segment_stage)
    if s.segment_tag_id is not None:
        qs = qs.filter(member__member_tags__tag_id=s.segment_tag_id)
    if s.audience_id:
        qs = qs.filter(member_id__in=sorted(audience_members(s.tenant_id, s.audience_id)))
    seen: set[int] = set()
    out = []
    for m in qs.select_related("group", "member").order_by("member_id", "-group_id", "pk"):
        if m.member_id not in seen:  # one membership per member (a group one when there is)
            seen.add(m.member_id)
            out.append(m)
    return out


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
    for m in qs.select_related("group", "member"):
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
        _deliver_to_members(s, planned, effective, [m], no_sell=no_sell, counts=counts)


def _direct_route(tenant_id: int, m: Membership) -> tuple[str, str] | None:
    """(platform, the member's id there) for a direct message, when the platform allows one and the
    member agreed to messages; the platform of the member's group first."""
    if not m.member.consent_marketing:
        return None
    idents = list(Identity.objects.filter(tenant_id=tenant_id, member_id=m.member_id)
                  .order_by("-verified", "pk").values_list("platform", "external_id"))
    home = m.group.platform if m.group is not None else ""
    idents.sort(key=lambda i: i[0] != home)
    for platform, ext in idents:
        if ext and can_direct_message(platform):
            return platform, ext
    return None


def _deliver_to_members(s: ContentSchedule, planned: dt.datetime, effective: dt.datetime,
                        memberships: list[Membership], *, no_sell: dt.timedelta, counts: dict[str, int]) -> None:
    """Member-targeted content: a direct message each where possible, else one post per group naming
    the group's targeted members; members in the no-sell cooldown are skipped."""
    by_group: dict[int, tuple[ChatGroup, list[Membership]]] = {}
    for m in memberships:
        if s.content.is_sales and m.joined_at > planned - no_sell:
            _deliver(s, planned, effective, target=f"m{m.member_id}", group=None, member_id=m.member_id,
                     cooldown=True, counts=counts)
            continue
        route = _direct_route(s.tenant_id, m)
        if route is not None:
            platform, ext = route
            payload = {**render_content(s.content, platform), "dm": True}
            _deliver(s, planned, effective, target=f"m{m.member_id}", group=None, member_id=m.member_id,
                     cooldown=False, counts=counts, platform=platform, external_id=ext, payload=payload)
        elif m.group is not None and m.group.is_active:
            by_group.setdefault(m.group_id or 0, (m.group, []))[1].append(m)
        else:
            _deliver(s, planned, effective, target=f"m{m.member_id}", group=None, member_id=m.member_id,
                     cooldown=False, counts=counts, no_route=True)
    for group, ms in by_group.values():
        names = [m.member.display_name for m in ms]
        payload = _addressed(render_content(s.content, group.platform), names)
        if len(ms) == 1:  # a day-N message to one member: keyed by the member, as before
            _deliver(s, planned, effective, target=f"m{ms[0].member_id}", group=group, member_id=ms[0].member_id,
                     cooldown=False, counts=counts, payload=payload)
        else:
            _deliver(s, planned, effective, target=f"g{group.pk}", group=group, member_id=None, cooldown=False,
                     counts=counts, payload=payload)


def _addressed(payload: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The payload with the members' names in front (``@小红 @小兰``), so a group post reads as theirs."""
    mention = " ".join(f"@{n}" for n in names if n)
    out = dict(payload)
    if mention:
        for field in ("text", "desc"):
            if isinstance(out.get(field), str):
                out[field] = f"{mention}\n{out[field]}"
                break
        else:
            out["text"] = mention
        out["mention_names"] = names
    return out


def _deliver(s: ContentSchedule, planned: dt.datetime, effective: dt.datetime, *, target: str,
             group: ChatGroup | None, member_id: int | None, cooldown: bool, counts: dict[str, int],
             platform: str | None = None, external_id: str = "", payload: dict[str, Any] | None = None,
             no_route: bool = False) -> None:
    key = f"sop:{s.pk}:{planned.astimezone(dt.UTC).strftime('%Y%m%dT%H%M')}:{target}"
    if ContentDelivery.objects.filter(tenant_id=s.tenant_id, key=key).exists():
        return
    with transaction.atomic():
        delivery = ContentDelivery(tenant_id=s.tenant_id, schedule=s, key=key, group=group, member_id=member_id,
                                   occurrence_at=planned)
        if cooldown:
            delivery.status = ContentDelivery.Status.SKIPPED_COOLDOWN
            counts["skipped_cooldown"] += 1
        elif no_route:
            delivery.status = ContentDelivery.Status.NO_ROUTE
            counts["no_route"] += 1
        else:
            if group is not None:
                action = do_request_action(s.tenant_id, kind="send", group_id=group.pk, idempotency_key=key,
                                           target_member_id=member_id,
                                           payload=payload or render_content(s.content, group.platform),
                                           source="engagement.sop")
            else:
                assert platform is not None
                action = do_request_action(s.tenant_id, kind="send", group_id=None, platform=platform,
                                           idempotency_key=key, target_member_id=member_id,
                                           target_external_id=external_id,
                                           payload=payload or render_content(s.content, platform),
                                           source="engagement.sop")
                delivery.direct = True
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
