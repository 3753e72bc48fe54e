"""Community health: figures per group and community, the rules that watch them, and the notices that
reach staff.

* **Figures** (:func:`health_figures`, window of ``days`` local days): members (open memberships),
  active rate (average daily active members ÷ members, from the rollups), silent share (members with
  no activity anywhere in the window ÷ members), response rate (member messages the reply queue
  tracked in the window that got a staff answer ÷ those not marked "needs no answer") and the median
  first response, ad rate (messages judged ``ad`` by moderation ÷ messages), joins, leaves and their
  balance. They are stored per group and per community for the windows offered, 7, 30 and 90 days
  (:class:`HealthFigures`, :func:`do_refresh_figures` every 5 minutes) and read from there; a target
  with no fresh row is computed live (:func:`live_health_figures`); another window is refused.
* **Rules** (:func:`firing`): the rollup rules of ``selectors.health_alerts`` (dead group, going
  quiet, leave wave, sales drop) plus **ad wave** (``ad_wave_threshold`` or more ad verdicts in one
  group within ``ad_wave_minutes``) and **unanswered backlog** (``backlog_threshold`` or more member
  messages in one group waiting longer than ``backlog_minutes`` for a staff answer).
* **Notices** (:class:`HealthNotice`, :func:`do_evaluate` is the one writer): one open notice per
  rule × target; it is kept (``last_seen_at``) while the rule fires and resolved when it stops. A new
  notice goes out on the registered channels (``register_notice_channel``; ``shequn/wiring.py``
  declares the webhook feed and the outbox message to staff) inside the notice's transaction, so a
  rolled-back evaluation sends nothing and a committed notice is always announced.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from shequn.communities.models import ChatGroup, Community, Membership
from shequn.core.errors import Invalid
from shequn.engagement.models import ReplyTrack
from shequn.moderation.models import Violation

from . import selectors
from .models import DailyRollup, HealthFigures, HealthNotice, HealthSettings
from .selectors import Alert

RULE_LABELS = {
    "dead_group": gettext_lazy("群沉寂"), "going_quiet": gettext_lazy("群变冷"), "leave_wave": gettext_lazy("退群潮"),
    "sales_drop": gettext_lazy("销售下滑"), "ad_wave": gettext_lazy("广告潮"),
    "unanswered_backlog": gettext_lazy("待回复积压"),
}
RULES = tuple(RULE_LABELS)

#: the settings fields staff may change, with their bounds
SETTING_BOUNDS = {"ad_wave_minutes": (5, 1440), "ad_wave_threshold": (1, 10_000), "backlog_minutes": (1, 10_080),
                  "backlog_threshold": (1, 10_000), "quiet_min_before": (1, 100_000)}
SETTING_FLAGS = ("notify_console", "notify_owner", "notify_webhook")

Channel = Callable[[HealthNotice, HealthSettings], None]
_CHANNELS: dict[str, Channel] = {}
#: whether a tenant's settings switch a channel on (a channel not listed here is always on)
_CHANNEL_SWITCH: dict[str, Callable[[HealthSettings], bool]] = {
    "webhook": lambda s: s.notify_webhook,
    "staff": lambda s: s.notify_owner or bool(s.staff_group_id),
}


def register_notice_channel(name: str, channel: Channel) -> None:
    """Called by ``shequn/wiring.py``: ``channel(notice, settings)`` runs in the transaction that opens
    a notice (it must only write rows — an outbox action, a webhook event — never call out)."""
    _CHANNELS[name] = channel


# -- settings ---------------------------------------------------------------------------------------

def get_settings(tenant_id: int) -> HealthSettings:
    """The tenant's settings, or the defaults (unsaved) when it has none."""
    return HealthSettings.objects.filter(tenant_id=tenant_id).first() or HealthSettings(tenant_id=tenant_id)


def check_settings(tenant_id: int, values: dict[str, Any]) -> dict[str, Any]:
    """Validate a change of settings: known fields, integers in bounds, an existing group of the tenant."""
    clean: dict[str, Any] = {}
    for name, value in values.items():
        if name in SETTING_BOUNDS:
            lo, hi = SETTING_BOUNDS[name]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise Invalid(_("%(f)s 应为 %(lo)s 到 %(hi)s 之间的整数") % {"f": name, "lo": lo, "hi": hi},
                              details={"field": name})
        elif name in SETTING_FLAGS:
            if not isinstance(value, bool):
                raise Invalid(_("%(f)s 应为布尔值") % {"f": name}, details={"field": name})
        elif name == "staff_group_id":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise Invalid(_("员工群无效"), details={"field": name})
            if value and not ChatGroup.objects.filter(tenant_id=tenant_id, pk=value).exists():
                raise Invalid(_("员工群不存在"), details={"field": name})
        else:
            raise Invalid(_("未知的设置: %(f)s") % {"f": name}, details={"field": name})
        clean[name] = value
    return clean


def do_save_settings(tenant_id: int, values: dict[str, Any]) -> HealthSettings:
    clean = check_settings(tenant_id, values)
    with transaction.atomic():
        row, _created = HealthSettings.objects.get_or_create(tenant_id=tenant_id)
        for name, value in clean.items():
            setattr(row, name, value)
        row.save()
    return row


# -- figures ----------------------------------------------------------------------------------------

def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


#: the windows (days) whose figures ``do_refresh_figures`` stores — the only ones the console page
#: (a choice) and ``GET /analytics/health`` (422 naming ``days``) offer: computed live, any other window
#: scanned every open membership per request (0.2–0.35 s at 100k members), and per-day partial rows
#: cannot be summed into distinct member counts, a silent share or a median
STORED_WINDOWS = (7, 30, 90)
#: stored rows older than this are ignored (the refresh runs every 5 minutes; three missed runs in a
#: row mean the task is failing, and the figures are then computed live rather than shown stale)
STALE_AFTER = dt.timedelta(minutes=15)
_COUNTS = ("members", "silent", "active_member_days", "questions", "answered", "median_first_response_s",
           "messages", "ads", "joins", "leaves")


def _targets(tenant_id: int, by: str) -> dict[int, tuple[str, int]]:
    """Target id → (name, community id): the active groups, or the communities not archived."""
    if by == "group":
        return {g: (n, c) for g, n, c in ChatGroup.objects.filter(tenant_id=tenant_id, is_active=True)
                .values_list("pk", "name", "community_id")}
    return {c: (n, c) for c, n in Community.objects.filter(tenant_id=tenant_id)
            .exclude(stage=Community.Stage.ARCHIVED).values_list("pk", "name")}


def _counts(tenant_id: int, by: str, ids: list[int], days: int, now: dt.datetime) -> dict[int, dict[str, Any]]:
    """The counts behind the figures of each target in ``ids`` over the ``days`` local days up to
    ``now`` (what :class:`HealthFigures` stores): open memberships (distinct members) and the silent
    ones among them, member-days active and the flows from the rollups, ads, reply-queue rows and the
    median first response."""
    key = "group_id" if by == "group" else "community_id"
    end = now.astimezone(ZoneInfo(selectors.tenant_tz(tenant_id))).date()
    start = end - dt.timedelta(days=days - 1)
    since = now - dt.timedelta(days=days)
    within = {f"{key}__in": ids}

    open_ms = Membership.objects.filter(tenant_id=tenant_id, left_at__isnull=True, **within)
    quiet = Q(member__last_active_at__isnull=True) | Q(member__last_active_at__lt=since)
    members = {r[key]: (r["n"], r["silent"]) for r in open_ms.values(key).annotate(
        n=Count("member_id", distinct=True), silent=Count("member_id", filter=quiet, distinct=True))}

    flow: dict[int, dict[str, int]] = defaultdict(lambda: {"active": 0, "messages": 0, "joins": 0, "leaves": 0})
    for r in (DailyRollup.objects.filter(tenant_id=tenant_id, day__gte=start, day__lte=end, **within)
              .values(key)
              .annotate(active=Sum("active_members"), messages=Sum("messages"), joins=Sum("joins"),
                        leaves=Sum("leaves"))):
        flow[r[key]] = {k: int(r[k] or 0) for k in ("active", "messages", "joins", "leaves")}

    ads = dict(Violation.objects.filter(tenant_id=tenant_id, verdict="ad", occurred_at__gte=since, **within)
               .values_list(key).annotate(n=Count("pk")))

    replies: dict[int, list[float]] = defaultdict(list)
    asked: dict[int, int] = defaultdict(int)
    for target, at, answered in (ReplyTrack.objects.filter(tenant_id=tenant_id, occurred_at__gte=since,
                                                           no_reply_at__isnull=True, **within)
                                 .values_list(key, "occurred_at", "answered_at")):
        asked[target] += 1
        if answered is not None:
            replies[target].append(max(0.0, (answered - at).total_seconds()))

    out = {}
    for target in ids:
        n, silent = members.get(target, (0, 0))
        f = flow[target]
        waits = replies.get(target, [])
        out[target] = {
            "members": n, "silent": silent, "active_member_days": f["active"], "questions": asked.get(target, 0),
            "answered": len(waits),
            "median_first_response_s": round(statistics.median(waits), 1) if waits else None,
            "messages": f["messages"], "ads": int(ads.get(target, 0)), "joins": f["joins"], "leaves": f["leaves"],
        }
    return out


def _figures(target: int, name: str, community_id: int, c: dict[str, Any], *, days: int,
             computed_at: dt.datetime) -> dict[str, Any]:
    """One row of figures from its counts (the same for stored and live rows)."""
    n = c["members"]
    return {
        "target_id": target, "community_id": community_id, "name": name, "members": n,
        "active_rate": _ratio(c["active_member_days"] / days, n), "silent_share": _ratio(c["silent"], n),
        "questions": c["questions"], "answered": c["answered"], "response_rate": _ratio(c["answered"], c["questions"]),
        "median_first_response_s": c["median_first_response_s"],
        "messages": c["messages"], "ads": c["ads"], "ad_rate": _ratio(c["ads"], c["messages"]),
        "joins": c["joins"], "leaves": c["leaves"], "balance": c["joins"] - c["leaves"], "computed_at": computed_at,
    }


def _check_by(by: str) -> None:
    if by not in ("group", "community"):
        raise Invalid(_("by 只能是 group 或 community"), details={"field": "by"})


def live_health_figures(tenant_id: int, *, by: str = "group", days: int = 7, now: dt.datetime | None = None
                        ) -> list[dict[str, Any]]:
    """The figures computed now from the source tables (scans every open membership of the tenant)."""
    _check_by(by)
    now = now or timezone.now()
    names = _targets(tenant_id, by)
    counts = _counts(tenant_id, by, list(names), days, now)
    return [_figures(t, name, c, counts[t], days=days, computed_at=now) for t, (name, c) in sorted(names.items())]


def health_figures(tenant_id: int, *, by: str = "group", days: int = 7, now: dt.datetime | None = None
                   ) -> list[dict[str, Any]]:
    """Per group (``by="group"``) or community: the health figures of the last ``days`` local days
    (see the module docstring for definitions), each with the ``computed_at`` it is as of. Rates are
    ``None`` where their base is zero. For a stored window the rows :func:`do_refresh_figures` wrote
    (at most :data:`STALE_AFTER` old) are read, and only targets without one (a new group, a fresh
    install, a failing refresh) are computed live. Only the stored windows are offered (another one is
    ``Invalid`` naming ``days``); an explicit ``now`` (the tests, a look at the past) is live, any window."""
    _check_by(by)
    if now is not None:
        return live_health_figures(tenant_id, by=by, days=days, now=now)
    if days not in STORED_WINDOWS:
        raise Invalid(_("days 只能是 %(choices)s") % {"choices": " / ".join(map(str, STORED_WINDOWS))},
                      details={"field": "days"})
    now = timezone.now()
    names = _targets(tenant_id, by)
    stored = {r.target_id: r for r in HealthFigures.objects.filter(
        tenant_id=tenant_id, level=by, days=days, target_id__in=list(names), computed_at__gte=now - STALE_AFTER)}
    missing = [t for t in names if t not in stored]
    live = _counts(tenant_id, by, missing, days, now) if missing else {}
    out = []
    for t, (name, community_id) in sorted(names.items()):
        row = stored.get(t)
        if row is not None:
            out.append(_figures(t, name, community_id, {k: getattr(row, k) for k in _COUNTS},
                                days=days, computed_at=row.computed_at))
        else:
            out.append(_figures(t, name, community_id, live[t], days=days, computed_at=now))
    return out


def do_refresh_figures(tenant_id: int, *, now: dt.datetime | None = None) -> int:
    """Recompute the tenant's :class:`HealthFigures` rows (every active group and live community, for
    each of :data:`STORED_WINDOWS`, as of ``now``) and replace them in one transaction, so a failed
    refresh leaves the previous rows; returns the number of rows. Run by
    ``analytics.tasks.refresh_health_figures`` every 5 minutes. Community rows are computed from the
    source tables like group rows, not summed from them: a member in two groups of a community is one
    member of it, and activity, ads and questions may belong to a community without a group."""
    now = now or timezone.now()
    rows = []
    for by in ("group", "community"):
        names = _targets(tenant_id, by)
        for days in STORED_WINDOWS:
            for t, c in _counts(tenant_id, by, sorted(names), days, now).items():
                rows.append(HealthFigures(tenant_id=tenant_id, level=by, target_id=t, community_id=names[t][1],
                                          days=days, computed_at=now, **c))
    try:
        with transaction.atomic():
            HealthFigures.objects.filter(tenant_id=tenant_id).delete()
            HealthFigures.objects.bulk_create(rows, batch_size=1000)
    except IntegrityError:
        return 0  # a concurrent refresh of the tenant inserted its rows first: they stand
    return len(rows)


# -- rules ------------------------------------------------------------------------------------------

def _group_names(tenant_id: int, ids: set[int]) -> dict[int, tuple[str, int]]:
    return {g["pk"]: (g["name"], g["community_id"]) for g in
            ChatGroup.objects.filter(tenant_id=tenant_id, pk__in=ids).values("pk", "name", "community_id")}


def ad_wave(tenant_id: int, settings: HealthSettings, now: dt.datetime) -> list[Alert]:
    since = now - dt.timedelta(minutes=settings.ad_wave_minutes)
    rows = dict(Violation.objects.filter(tenant_id=tenant_id, verdict="ad", occurred_at__gte=since,
                                         occurred_at__lte=now, group__isnull=False)
                .values_list("group_id").annotate(n=Count("pk")))
    hits = {g: n for g, n in rows.items() if n >= settings.ad_wave_threshold}
    names = _group_names(tenant_id, set(hits))
    return [Alert("ad_wave", "red", names.get(g, ("", 0))[0],
                  _("近 %(m)s 分钟 %(n)s 条广告") % {"m": settings.ad_wave_minutes, "n": n},
                  names.get(g, ("", 0))[1], g) for g, n in sorted(hits.items())]


def unanswered_backlog(tenant_id: int, settings: HealthSettings, now: dt.datetime) -> list[Alert]:
    before = now - dt.timedelta(minutes=settings.backlog_minutes)
    rows = (ReplyTrack.objects.filter(tenant_id=tenant_id, answered_at__isnull=True, no_reply_at__isnull=True,
                                      occurred_at__lte=before, group__isnull=False)
            .values_list("group_id").annotate(n=Count("pk")))
    hits = {g: n for g, n in rows if n >= settings.backlog_threshold}
    names = _group_names(tenant_id, set(hits))
    return [Alert("unanswered_backlog", "amber", names.get(g, ("", 0))[0],
                  _("%(n)s 条成员消息超过 %(m)s 分钟无人回复") % {"n": n, "m": settings.backlog_minutes},
                  names.get(g, ("", 0))[1], g) for g, n in sorted(hits.items())]


def firing(tenant_id: int, *, now: dt.datetime | None = None, settings: HealthSettings | None = None
           ) -> list[Alert]:
    """Every rule that fires now, one alert per rule × target."""
    now = now or timezone.now()
    settings = settings or get_settings(tenant_id)
    end = now.astimezone(ZoneInfo(selectors.tenant_tz(tenant_id))).date()
    alerts = selectors.health_alerts(tenant_id, end=end, quiet_min_before=settings.quiet_min_before)
    return alerts + ad_wave(tenant_id, settings, now) + unanswered_backlog(tenant_id, settings, now)


# -- notices ----------------------------------------------------------------------------------------

def do_evaluate(tenant_id: int, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Open a notice for every rule × target that fires and has none open (announcing it on the
    channels), refresh the open ones that still fire, resolve the ones that stopped. Safe to run
    concurrently: the partial unique constraint keeps one open notice per rule × target."""
    now = now or timezone.now()
    settings = get_settings(tenant_id)
    fired = {(a.rule, a.community_id, a.group_id): a for a in firing(tenant_id, now=now, settings=settings)}
    open_now = {(n.rule, n.community_id, n.group_id): n for n in open_notices(tenant_id)}
    counts = {"opened": 0, "kept": 0, "resolved": 0}
    for key, alert in fired.items():
        notice = open_now.get(key)
        if notice is not None:
            HealthNotice.objects.filter(pk=notice.pk).update(last_seen_at=now, message=alert.message[:300],
                                                             severity=alert.level)
            counts["kept"] += 1
            continue
        try:
            with transaction.atomic():
                notice = HealthNotice.objects.create(
                    tenant_id=tenant_id, rule=alert.rule, severity=alert.level, community_id=alert.community_id,
                    group_id=alert.group_id, subject=alert.subject[:200], message=alert.message[:300],
                    opened_at=now, last_seen_at=now)
                for name, channel in _CHANNELS.items():
                    switch = _CHANNEL_SWITCH.get(name)
                    if switch is None or switch(settings):
                        channel(notice, settings)
        except IntegrityError:
            continue  # a concurrent evaluation opened it
        counts["opened"] += 1
    stale = [n.pk for key, n in open_now.items() if key not in fired]
    if stale:
        counts["resolved"] = HealthNotice.objects.filter(pk__in=stale, resolved_at__isnull=True).update(
            resolved_at=now)
    return counts


def open_notices(tenant_id: int) -> QuerySet[HealthNotice]:
    return HealthNotice.objects.filter(tenant_id=tenant_id, resolved_at__isnull=True)


def notices(tenant_id: int, *, state: str | None = None, rule: str | None = None) -> QuerySet[HealthNotice]:
    qs = HealthNotice.objects.filter(tenant_id=tenant_id)
    if state == "open":
        qs = qs.filter(resolved_at__isnull=True)
    elif state == "resolved":
        qs = qs.filter(resolved_at__isnull=False)
    if rule:
        qs = qs.filter(rule=rule)
    return qs


def open_count(tenant_id: int) -> int:
    """The console badge: open notices, when the tenant shows them in the console."""
    if not get_settings(tenant_id).notify_console:
        return 0
    return open_notices(tenant_id).count()
