"""The reply-to-everyone queue: members' messages become :class:`ReplyTrack` rows, responders'
messages answer them, and an operator can reply from the queue through the connector outbox."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.activity.models import ActivityEvent
from shequn.connectors.services import do_request_action
from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from ..models import ReplyTrack
from ..selectors import engagement_config, responder_member_ids


def _reply_targets(tenant_id: int, event: ActivityEvent) -> tuple[set[int], set[int]]:
    """(event pks, member ids) a responder's message answers: reply_to_event_id (our pk or the
    platform's message id), reply_to_member_id, mentions."""
    p = event.payload if isinstance(event.payload, dict) else {}
    event_ids: set[int] = set()
    members: set[int] = set()
    ref = p.get("reply_to_event_id")
    if isinstance(ref, int):
        event_ids.add(ref)
    elif isinstance(ref, str) and ref:
        pk = ActivityEvent.objects.filter(tenant_id=tenant_id, platform=event.platform,
                                          platform_event_id=ref).values_list("pk", flat=True).first()
        if pk is not None:
            event_ids.add(pk)
    if isinstance(p.get("reply_to_member_id"), int):
        members.add(p["reply_to_member_id"])
    mentions = p.get("mentions")
    if isinstance(mentions, list):
        members.update(m for m in mentions if isinstance(m, int))
    return event_ids, members


def _track_replies(tenant_id: int, events: Sequence[ActivityEvent]) -> None:
    """Members' messages become tracks (one bulk insert); then responders' messages, in time order,
    answer the tracks they reply to or mention (only tracks sent before the answer)."""
    responders: dict[int | None, set[int]] = {}
    keyword = str(engagement_config(tenant_id)["checkin"]["keyword"]).strip()
    new_tracks: list[ReplyTrack] = []
    answers: list[ActivityEvent] = []
    for e in sorted(events, key=lambda e: (e.occurred_at, e.pk)):
        if e.kind not in ("message", "reply") or e.member_id is None:
            continue
        if e.community_id not in responders:
            responders[e.community_id] = responder_member_ids(tenant_id, e.community_id, e.occurred_at)
        p = e.payload if isinstance(e.payload, dict) else {}
        if e.member_id in responders[e.community_id] or p.get("from_staff") is True:
            answers.append(e)
        else:
            raw = p.get("text")
            if keyword and isinstance(raw, str) and raw.strip() == keyword:
                continue  # a check-in, not a message waiting for an answer
            new_tracks.append(ReplyTrack(
                tenant_id=tenant_id, event_id=e.pk, community_id=e.community_id, group_id=e.group_id,
                member_id=e.member_id, platform_event_id=e.platform_event_id,
                excerpt=(raw if isinstance(raw, str) else "")[:200], occurred_at=e.occurred_at,
            ))
    if new_tracks:
        ReplyTrack.objects.bulk_create(new_tracks, batch_size=500, ignore_conflicts=True)
    for e in answers:
        event_ids, members = _reply_targets(tenant_id, e)
        if not event_ids and not members:
            continue
        cond = Q(event_id__in=event_ids) | Q(member_id__in=members, community_id=e.community_id)
        ReplyTrack.objects.filter(cond, tenant_id=tenant_id, answered_at__isnull=True,
                                  occurred_at__lte=e.occurred_at).update(
            answered_at=e.occurred_at, answered_by_id=e.member_id, answered_by_label="")


def do_reply_from_queue(principal: Principal, track_id: int, *, text: str) -> ReplyTrack:
    """One-click reply: queue a ``send`` through the connector outbox (quoting the member's message)
    and mark the message answered, in one transaction."""
    text = (text or "").strip()
    if not text:
        raise Invalid(_("回复内容不能为空"), details={"field": "text"})
    with transaction.atomic():
        track = ReplyTrack.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=track_id).first()
        if track is None:
            raise NotFound(_("消息不存在"), details={"field": "track_id"})
        if track.answered_at is not None:
            raise Conflict(_("这条消息已经有人回复了"))
        if track.group_id is None:
            raise Invalid(_("这条消息没有所在的群, 无法回复"), details={"field": "track_id"})
        action = do_request_action(
            principal.tenant_id, kind="send", group_id=track.group_id, idempotency_key=f"eng-reply:{track.pk}",
            target_member_id=track.member_id, message_external_id=track.platform_event_id,
            payload={"text": text, "reply_to_message_id": track.platform_event_id},
            source="engagement.reply_queue", reason=_("回复群成员消息"),
        )
        track.answered_at = timezone.now()
        track.answered_by_label = principal.label[:120]
        track.reply_action_id = action.pk
        track.save(update_fields=["answered_at", "answered_by_label", "reply_action_id"])
        do_audit(principal, "engagement.reply", "reply_track", str(track.pk), data={"action_id": action.pk})
    return track


def do_mark_no_reply_needed(principal: Principal, track_id: int) -> ReplyTrack:
    """Staff mark a member message as needing no answer (收到、谢谢): it leaves the queue and is not
    counted in the reply rate. A message already answered stays answered."""
    with transaction.atomic():
        track = ReplyTrack.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=track_id).first()
        if track is None:
            raise NotFound(_("消息不存在"), details={"field": "track_id"})
        if track.answered_at is not None:
            raise Conflict(_("这条消息已经有人回复了"))
        if track.no_reply_at is None:
            track.no_reply_at = timezone.now()
            track.no_reply_by = principal.label[:120]
            track.save(update_fields=["no_reply_at", "no_reply_by"])
            do_audit(principal, "engagement.reply.no_reply", "reply_track", str(track.pk))
    return track
