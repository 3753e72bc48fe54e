"""Welcome on join: each community's welcome message (per platform), posted to the group a member
joined, through the connector outbox.

* **Window.** A platform may accept a welcome only shortly after the join (WeCom: 20 s,
  ``welcome_window`` in :mod:`shequn.connectors.capabilities`). A join past its window — or, on
  platforms without one, older than :data:`MAX_AGE` (history replayed by a first sync, a room mapped
  late) — is recorded ``late`` and not welcomed.
* **Batching.** When many join at once a group gets one message naming them all: a join is first a
  ``pending`` :class:`~shequn.engagement.models.WelcomeJoin`; a group is flushed at once when its last
  welcome is older than ``batch_seconds``, otherwise when that interval ends or the oldest join's
  window is about to close, whichever is first (a task enqueued with ``run_after``; the every-minute
  sweep as the safety net).
  The outbox's per-group token buckets add the platform's own pace on top.
* **Once.** One row per join event (unique), one outbox action per flushed batch (idempotency key
  ``welcome:<group>:<first join>``); rows are flipped from pending under a row lock, so concurrent
  flushes send once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.tasks import task
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.activity.models import ActivityEvent
from shequn.communities.models import ChatGroup, Community, Membership
from shequn.connectors.capabilities import profile
from shequn.connectors.services import do_request_action
from shequn.core.errors import Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.models import Member

from ..models import WelcomeJoin, WelcomeMessage

#: joins older than this are history, not arrivals (platforms without a welcome window)
MAX_AGE = dt.timedelta(minutes=10)
#: a welcome is queued this long before the platform's window closes, for the outbox's round trip
WINDOW_MARGIN = dt.timedelta(seconds=5)
#: names in one welcome message; more joins make more messages
MAX_NAMES = 20
VARIABLES = ("name", "inviter", "community", "rules_link", "portal_link")


def public_base_url() -> str:
    return str(getattr(settings, "SHEQUN", {}).get("PUBLIC_BASE_URL") or "http://127.0.0.1:8000").rstrip("/")


# --- configuration ------------------------------------------------------------------------------------

def check_welcome_body(body: str) -> str:
    """The template must be non-empty and use only the known ``{variables}``."""
    body = (body or "").strip()
    if not body:
        raise Invalid(_("欢迎语不能为空"), details={"field": "body"})
    if len(body) > 1500:
        raise Invalid(_("欢迎语最多 1500 字"), details={"field": "body"})
    try:
        body.format(**dict.fromkeys(VARIABLES, ""))
    except (KeyError, IndexError, ValueError) as exc:
        raise Invalid(_("欢迎语里有未知的变量 %(v)s, 可用: {name} {inviter} {community} {rules_link} {portal_link}")
                      % {"v": str(exc)}, details={"field": "body"}) from exc
    return body


def do_save_welcome(principal: Principal, community_id: int, *, platform: str = "", body: str,
                    batch_seconds: int = 30, active: bool = True) -> WelcomeMessage:
    """Create or change the welcome of one community on one platform (``""`` = every platform)."""
    if platform not in WelcomeMessage.Platform.values:
        raise Invalid(_("未知的平台: %(p)s") % {"p": platform}, details={"field": "platform"})
    body = check_welcome_body(body)
    if not 0 <= int(batch_seconds) <= 3600:
        raise Invalid(_("合并间隔应在 0 到 3600 秒之间"), details={"field": "batch_seconds"})
    if not Community.objects.filter(tenant_id=principal.tenant_id, pk=community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "community_id"})
    with transaction.atomic():
        w, created = WelcomeMessage.objects.select_for_update().get_or_create(
            tenant_id=principal.tenant_id, community_id=community_id, platform=platform,
            defaults={"body": body, "batch_seconds": batch_seconds, "active": active})
        if not created:
            w.body, w.batch_seconds, w.active = body, batch_seconds, active
            w.save(update_fields=["body", "batch_seconds", "active", "updated_at"])
        do_audit(principal, "engagement.welcome.save", "welcome", str(w.pk),
                 data={"community": community_id, "platform": platform, "active": active})
    return w


def welcome_for(tenant_id: int, community_id: int, platform: str) -> WelcomeMessage | None:
    """The active welcome of a community for a platform: its own, else the every-platform one."""
    rows = {w.platform: w for w in WelcomeMessage.objects.filter(
        tenant_id=tenant_id, community_id=community_id, platform__in=[platform, ""], active=True)}
    return rows.get(platform) or rows.get("")


def render_welcome(welcome: WelcomeMessage, community: Community, names: Sequence[str],
                   inviters: Sequence[str]) -> str:
    base = public_base_url()
    slug = community.tenant.slug
    portal = f"{base}/portal/{slug}/"
    values = {"name": "、".join(names), "inviter": "、".join(dict.fromkeys(i for i in inviters if i)),
              "community": community.name, "rules_link": f"{portal}c/{community.pk}/#rules",
              "portal_link": portal}
    return welcome.body.format(**values).strip()


# --- joins → pending rows → outbox --------------------------------------------------------------------

def deadline(joined_at: dt.datetime, platform: str) -> dt.datetime:
    """The last moment a welcome for this join may be queued."""
    prof = profile(platform)
    window = prof.welcome_window if prof is not None else None
    return joined_at + (window - WINDOW_MARGIN if window is not None else MAX_AGE)


def on_joins(tenant_id: int, events: Sequence[ActivityEvent], *, now: dt.datetime | None = None) -> int:
    """Engagement's consumer hook for ``join`` events: record each join of a group whose community has
    a welcome, then flush the groups that may post now. Returns the number of joins recorded."""
    now = now or timezone.now()
    joins = [e for e in events if e.kind == "join" and e.member_id is not None and e.group_id is not None]
    if not joins:
        return 0
    groups = {g.pk: g for g in ChatGroup.objects.filter(tenant_id=tenant_id, pk__in={e.group_id for e in joins})}
    rows = []
    for e in joins:
        g = groups.get(e.group_id or 0)
        if g is None or e.member_id is None:
            continue
        w = welcome_for(tenant_id, g.community_id, g.platform)
        if w is None:
            continue
        late = now > deadline(e.occurred_at, g.platform)
        rows.append(WelcomeJoin(tenant_id=tenant_id, welcome=w, group=g, member_id=e.member_id, event_id=e.pk,
                                joined_at=e.occurred_at,
                                status=WelcomeJoin.Status.LATE if late else WelcomeJoin.Status.PENDING))
    if not rows:
        return 0
    WelcomeJoin.objects.bulk_create(rows, ignore_conflicts=True)  # a replayed batch records nothing new
    for gid in sorted({r.group_id for r in rows if r.status == WelcomeJoin.Status.PENDING}):
        due = do_flush_welcomes(tenant_id, gid, now=now)
        if due is not None:
            transaction.on_commit(partial(_schedule_flush, tenant_id, gid, due))
    return len(rows)


def do_flush_welcomes(tenant_id: int, group_id: int, *, now: dt.datetime | None = None) -> dt.datetime | None:
    """Welcome a group's pending joins in one message (chunks of :data:`MAX_NAMES`) if the group may
    post now; joins past their window become ``late``. Returns when to try again, or ``None``."""
    now = now or timezone.now()
    group = ChatGroup.objects.select_related("community__tenant").filter(tenant_id=tenant_id, pk=group_id).first()
    if group is None:
        return None
    with transaction.atomic():
        pending = list(WelcomeJoin.objects.select_for_update().filter(
            tenant_id=tenant_id, group_id=group_id, status=WelcomeJoin.Status.PENDING).order_by("pk"))
        if not pending:
            return None
        late = [j.pk for j in pending if now > deadline(j.joined_at, group.platform)]
        if late:
            WelcomeJoin.objects.filter(pk__in=late).update(status=WelcomeJoin.Status.LATE)
            pending = [j for j in pending if j.pk not in set(late)]
        if not pending:
            return None
        welcome = pending[0].welcome
        last = (WelcomeJoin.objects.filter(tenant_id=tenant_id, group_id=group_id, status=WelcomeJoin.Status.QUEUED)
                .aggregate(m=Max("queued_at"))["m"])
        next_slot = last + dt.timedelta(seconds=welcome.batch_seconds) if last is not None else now
        due = min(next_slot, *(deadline(j.joined_at, group.platform) for j in pending))
        if due > now:
            return due  # wait for the interval to end (or the window to be nearly over), collecting joins
        names = dict(Member.objects.filter(tenant_id=tenant_id, pk__in={j.member_id for j in pending})
                     .values_list("pk", "display_name"))
        inviter_ids = dict(Membership.objects.filter(
            tenant_id=tenant_id, group_id=group_id, member_id__in=list(names), left_at__isnull=True,
            inviter__isnull=False).values_list("member_id", "inviter_id"))
        inviter_names = dict(Member.objects.filter(tenant_id=tenant_id, pk__in=set(inviter_ids.values()))
                             .values_list("pk", "display_name"))
        for i in range(0, len(pending), MAX_NAMES):
            chunk = pending[i:i + MAX_NAMES]
            text = render_welcome(welcome, group.community,
                                  [names.get(j.member_id, "") or _("新朋友") for j in chunk],
                                  [inviter_names.get(inviter_ids.get(j.member_id, 0), "") for j in chunk])
            payload: dict[str, Any] = {"text": text, "welcome": [j.member_id for j in chunk]}
            action = do_request_action(tenant_id, kind="send", group_id=group_id,
                                       idempotency_key=f"welcome:{group_id}:{chunk[0].pk}",
                                       payload=payload, source="engagement.welcome")
            WelcomeJoin.objects.filter(pk__in=[j.pk for j in chunk]).update(
                status=WelcomeJoin.Status.QUEUED, action_id=action.pk, queued_at=now)
    return None


def do_flush_due_welcomes(*, now: dt.datetime | None = None) -> int:
    """The sweep (every minute): flush every group with pending joins. Returns groups flushed."""
    now = now or timezone.now()
    pairs = set(WelcomeJoin.objects.filter(status=WelcomeJoin.Status.PENDING).values_list("tenant_id", "group_id"))
    for tenant_id, group_id in sorted(pairs):
        do_flush_welcomes(tenant_id, group_id, now=now)
    return len(pairs)


@task(queue_name="engines")
def flush_welcomes(tenant_id: int, group_id: int) -> None:
    """Flush one group's pending welcomes when its batching interval ends (enqueued by :func:`on_joins`)."""
    due = do_flush_welcomes(tenant_id, group_id)
    if due is not None:
        _schedule_flush(tenant_id, group_id, due)


def _schedule_flush(tenant_id: int, group_id: int, due: dt.datetime) -> None:
    """Run :func:`flush_welcomes` at ``due`` where the task backend can defer (the database backend);
    elsewhere the every-minute sweep flushes."""
    if flush_welcomes.get_backend().supports_defer:
        flush_welcomes.using(run_after=due).enqueue(tenant_id, group_id)
