"""Community health: figures per group and community, the rules that watch them, and the notices that
reach staff.

* **Figures** (:func:`health_figures`, window of ``days`` local days): members (open memberships),
  active rate (average daily active members ÷ members, from the rollups), silent share (members with
  no activity anywhere in the window ÷ members), response rate (member messages the reply queue
  tracked in the window that got a staff answer ÷ those not marked "needs no answer") and the median
  first response, ad rate (messages judged ``ad`` by moderation ÷ messages), joins, leaves and their
  balance.
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
from .models import DailyRollup, HealthNotice, HealthSettings
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


def health_figures(tenant_id: int, *, by: str = "group", days: int = 7, now: dt.datetime | None = None
                   ) -> list[dict[str, Any]]:
    """Per group (``by="group"``) or community: the health figures of the last ``days`` local days
    (see the module docstring for definitions). Rates are ``None`` where their base is zero."""
    if by not in ("group", "community"):
        raise Invalid(_("by 只能是 group 或 community"), details={"field": "by"})
    now = now or timezone.now()
    key = "group_id" if by == "group" else "community_id"
    end = now.astimezone(ZoneInfo(selectors.tenant_tz(tenant_id))).date()
    start = end - dt.timedelta(days=days - 1)
    since = now - dt.timedelta(days=days)

    if by == "group":
        names = {g.pk: (g.name, g.community_id) for g in ChatGroup.objects.filter(tenant_id=tenant_id, is_active=True)}
    else:
        names = {c.pk: (c.name, c.pk) for c in Community.objects.filter(tenant_id=tenant_id)
                 .exclude(stage=Community.Stage.ARCHIVED)}
    open_ms = Membership.objects.filter(tenant_id=tenant_id, left_at__isnull=True, **{f"{key}__in": list(names)})
    quiet = Q(member__last_active_at__isnull=True) | Q(member__last_active_at__lt=since)
    members = {r[key]: (r["n"], r["silent"]) for r in open_ms.values(key).annotate(
        n=Count("member_id", distinct=True), silent=Count("member_id", filter=quiet, distinct=True))}

    flow: dict[int, dict[str, int]] = defaultdict(lambda: {"active": 0, "messages": 0, "joins": 0, "leaves": 0})
    for r in (DailyRollup.objects.filter(tenant_id=tenant_id, day__gte=start, day__lte=end)
              .exclude(**{key: 0}).values(key)
              .annotate(active=Sum("active_members"), messages=Sum("messages"), joins=Sum("joins"),
                        leaves=Sum("leaves"))):
        flow[r[key]] = {k: int(r[k] or 0) for k in ("active", "messages", "joins", "leaves")}

    ads = dict(Violation.objects.filter(tenant_id=tenant_id, verdict="ad", occurred_at__gte=since)
               .exclude(**{f"{key}__isnull": True}).values_list(key).annotate(n=Count("pk")))

    replies: dict[int, list[float]] = defaultdict(list)
    asked: dict[int, int] = defaultdict(int)
    for target, at, answered in (ReplyTrack.objects.filter(tenant_id=tenant_id, occurred_at__gte=since,
                                                           no_reply_at__isnull=True)
                                 .exclude(**{f"{key}__isnull": True})
                                 .values_list(key, "occurred_at", "answered_at")):
        asked[target] += 1
        if answered is not None:
            replies[target].append(max(0.0, (answered - at).total_seconds()))

    out = []
    for target, (name, community_id) in sorted(names.items()):
        n, silent = members.get(target, (0, 0))
        f = flow[target]
        answered = replies.get(target, [])
        out.append({
            "target_id": target, "community_id": community_id, "name": name, "members": n,
            "active_rate": _ratio(f["active"] / days, n), "silent_share": _ratio(silent, n),
            "questions": asked.get(target, 0), "answered": len(answered),
            "response_rate": _ratio(len(answered), asked.get(target, 0)),
            "median_first_response_s": round(statistics.median(answered), 1) if answered else None,
            "messages": f["messages"], "ads": int(ads.get(target, 0)),
            "ad_rate": _ratio(int(ads.get(target, 0)), f["messages"]),
            "joins": f["joins"], "leaves": f["leaves"], "balance": f["joins"] - f["leaves"],
        })
    return out


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
