"""Role recommendations (advocate, customer service, content creator) from the interaction graph;
an operator accepts (a :class:`RoleAssignment` is created) or dismisses them, both audited."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.activity.models import ActivityEvent
from shequn.communities.models import Community, RoleAssignment
from shequn.core.errors import Conflict, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from ..models import Decision, RoleRecommendation
from ..selectors import engagement_config, tenant_time_zone
from .standing import check_standing

#: how long a dismissed recommendation keeps the same member out of the same role's recommendations
DISMISS_QUIET = dt.timedelta(days=30)


def do_recommend_roles_all(tenant_id: int, *, now: dt.datetime | None = None) -> int:
    """The scheduled run: recommend roles in every community of the tenant. Returns recommendations."""
    n = 0
    for community_id in Community.objects.filter(tenant_id=tenant_id).values_list("pk", flat=True):
        n += len(do_recommend_roles(tenant_id, community_id, now=now))
    return n


def _target_member(payload: Any, event_owner: dict[Any, int]) -> int | None:
    if not isinstance(payload, dict):
        return None
    for key in ("reply_to_member_id", "target_member_id"):
        v = payload.get(key)
        if isinstance(v, int):
            return v
    for key in ("reply_to_event_id", "target_event_id"):
        v = payload.get(key)
        if v is not None and v in event_owner:
            return event_owner[v]
    return None


def do_recommend_roles(
    tenant_id: int, community_id: int, *, now: dt.datetime | None = None
) -> list[RoleRecommendation]:
    """Score members of a community for advocate, customer service and content creator from the last
    ``window_days`` of activity: active days, active hours ("online time"), replies given and received
    (the interaction graph), reactions their content gets, topics; members whose standing check fails
    or who already hold the role are skipped. Pending recommendations are refreshed."""
    now = now or timezone.now()
    if not Community.objects.filter(tenant_id=tenant_id, pk=community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "community_id"})
    cfg = engagement_config(tenant_id)["roles"]
    tz = tenant_time_zone(tenant_id)
    since = now - dt.timedelta(days=int(cfg["window_days"]))
    rows = list(ActivityEvent.objects.filter(
        tenant_id=tenant_id, community_id=community_id, occurred_at__gte=since, occurred_at__lte=now,
        member_id__isnull=False,
    ).values_list("pk", "platform_event_id", "member_id", "kind", "occurred_at", "payload"))
    owner: dict[Any, int] = {}
    for pk, peid, member_id, _k, _t, _p in rows:
        owner[pk] = member_id
        owner[peid] = member_id
    stats: dict[int, dict[str, Any]] = defaultdict(lambda: {
        "messages": 0, "days": set(), "hours": set(), "replies_given": 0, "replies_received": 0,
        "reactions_received": 0, "topics": 0, "partners": set(),
    })
    for _pk, _peid, member_id, kind, when, payload in rows:
        s = stats[member_id]
        local = when.astimezone(ZoneInfo(tz))
        if kind in ("message", "reply") or (kind == "other" and isinstance(payload, dict)
                                             and payload.get("raw_kind") == "topic"):
            s["messages"] += 1
            s["days"].add(local.date())
            s["hours"].add(local.hour)
            if kind == "other":
                s["topics"] += 1
        target = _target_member(payload, owner) if kind in ("reply", "reaction", "message") else None
        if target is not None and target != member_id:
            t = stats[target]
            if kind == "reaction":
                t["reactions_received"] += 1
            else:
                s["replies_given"] += 1
                t["replies_received"] += 1
                s["partners"].add(target)
                t["partners"].add(member_id)
    holders: dict[str, set[int]] = defaultdict(set)
    for member_id, role in RoleAssignment.objects.filter(tenant_id=tenant_id, community_id=community_id).filter(
        Q(until__isnull=True) | Q(until__gt=now)
    ).values_list("member_id", "role"):
        holders[role].add(member_id)
    formulas: dict[str, Callable[[dict[str, Any]], float]] = {
        "advocate": lambda s: (2 * len(s["days"]) + s["replies_received"] + s["reactions_received"]
                               + 2 * len(s["partners"])),
        "cs": lambda s: 3 * s["replies_given"] + 2 * len(s["hours"]) + 2 * len(s["partners"]),
        "content": lambda s: 3 * s["reactions_received"] + 4 * s["topics"] + s["replies_received"],
    }
    # an operator's "no" stands for DISMISS_QUIET: the scheduled run does not ask again at once
    dismissed = set(RoleRecommendation.objects.filter(
        tenant_id=tenant_id, community_id=community_id, status=Decision.DISMISSED,
        decided_at__gte=now - DISMISS_QUIET).values_list("member_id", "role"))
    standing: dict[int, str | None] = {}
    made: list[RoleRecommendation] = []
    eligible = [m for m, s in stats.items() if len(s["days"]) >= int(cfg["min_active_days"])]
    for role, formula in formulas.items():
        ranked = sorted(((formula(stats[m]), m) for m in eligible
                         if m not in holders[role] and (m, role) not in dismissed), reverse=True)
        picked = 0
        for score, member_id in ranked:
            if picked >= int(cfg["top_n"]) or score <= 0:
                break
            if member_id not in standing:
                standing[member_id] = check_standing(tenant_id, member_id)
            if standing[member_id]:
                continue
            s = stats[member_id]
            reasons = [
                _("近 %(n)d 天中有 %(d)d 天发言, 共 %(m)d 条") % {"n": int(cfg["window_days"]), "d": len(s["days"]),
                                                              "m": s["messages"]},
                _("覆盖 %(h)d 个不同时段 (在线时间)") % {"h": len(s["hours"])},
                _("回复他人 %(g)d 次, 被回复 %(r)d 次, 互动对象 %(p)d 人") % {
                    "g": s["replies_given"], "r": s["replies_received"], "p": len(s["partners"])},
                _("内容获得 %(x)d 个表情回应, 发起话题 %(t)d 个") % {"x": s["reactions_received"], "t": s["topics"]},
                _("无违规记录"),
            ]
            with transaction.atomic():
                rec = RoleRecommendation.objects.filter(
                    tenant_id=tenant_id, community_id=community_id, member_id=member_id, role=role,
                    status=Decision.PENDING,
                ).first()
                if rec is None:
                    rec = RoleRecommendation.objects.create(
                        tenant_id=tenant_id, community_id=community_id, member_id=member_id, role=role, score=score,
                        reasons=reasons)
                else:
                    rec.score, rec.reasons = score, reasons
                    rec.save(update_fields=["score", "reasons"])
            made.append(rec)
            picked += 1
    return made


def do_decide_role(
    principal: Principal, recommendation_id: int, *, accept: bool, reason: str = ""
) -> RoleRecommendation:
    """Accepting creates the :class:`RoleAssignment`; both outcomes are audited."""
    with transaction.atomic():
        rec = (RoleRecommendation.objects.select_for_update()
               .filter(tenant_id=principal.tenant_id, pk=recommendation_id).first())
        if rec is None:
            raise NotFound(_("推荐不存在"), details={"field": "recommendation_id"})
        if rec.status != Decision.PENDING:
            raise Conflict(_("该推荐已处理"))
        now = timezone.now()
        rec.status = Decision.ACCEPTED if accept else Decision.DISMISSED
        rec.decided_at, rec.decided_by = now, principal.label
        rec.save(update_fields=["status", "decided_at", "decided_by"])
        if accept:
            RoleAssignment.objects.create(tenant_id=principal.tenant_id, community_id=rec.community_id,
                                          member_id=rec.member_id, role=rec.role, since=now,
                                          assigned_by=principal.label[:120])
        do_audit(principal, "engagement.role." + ("accept" if accept else "dismiss"), "member", str(rec.member_id),
                 reason=reason, data={"community_id": rec.community_id, "role": rec.role, "reasons": rec.reasons})
    return rec
