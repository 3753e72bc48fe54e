"""Writers of the engagement app (``do_*``) and rule checks (``check_*``).

Contracts for other apps:

* :func:`register_standing_check` — moderation registers ``fn(tenant_id, member_id) -> str | None``
  (``None`` = clean, else the reason); role recommendations skip members with a bad standing.
* :func:`register_cash_wallet` — the fission ledger registers a :class:`Wallet` for cash red packets.
* :func:`handle_activity` — the activity consumer (registered in ``apps.py``).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Count, Exists, F, OuterRef, Q, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.activity.models import ActivityEvent
from shequn.communities.models import ChatGroup, Community, Membership, RoleAssignment
from shequn.core.errors import Conflict, Forbidden, Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.models import LifecycleStage, Member

from . import fairness, redpacket, scoring
from .models import (
    Badge,
    CheckIn,
    CheckInStats,
    ContentDelivery,
    ContentItem,
    ContentSchedule,
    Decision,
    HealthAlert,
    LadderSuggestion,
    Lottery,
    LotteryEntry,
    LotteryPrize,
    LotteryWinner,
    MemberBadge,
    MemberScore,
    PointsAccount,
    PointsEntry,
    RedPacket,
    RedPacketClaim,
    ReplyTrack,
    RoleRecommendation,
)
from .selectors import engagement_config, responder_member_ids, tenant_time_zone
from .streaks import compute_streak, day_bounds, local_day

if TYPE_CHECKING:
    from shequn.connectors.models import OutboxAction

log = logging.getLogger(__name__)


def check_member(tenant_id: int, member_id: int) -> Member:
    m = Member.objects.filter(tenant_id=tenant_id, pk=member_id).first()
    if m is None:
        raise NotFound(_("会员不存在"), details={"field": "member_id"})
    return m


# =====================================================================================================
# Engagement score (set-based SQL; the same formula as shequn.engagement.scoring)
# =====================================================================================================


def _sql_dialect() -> str:
    return "pg" if connection.vendor == "postgresql" else "sqlite"


def _utc_offset_minutes(tz_name: str, at: dt.datetime) -> int:
    off = at.astimezone(ZoneInfo(tz_name)).utcoffset() or dt.timedelta(0)
    return int(off.total_seconds() // 60)


def _score_sql(
    tenant_id: int, *, today: dt.date, tz_name: str, now: dt.datetime, weights: dict[str, int],
    thresholds: list[float], member_ids: Sequence[int] | None,
) -> tuple[str, list[Any]]:
    """One INSERT … SELECT … ON CONFLICT that recomputes MemberScore rows from the activity stream.

    Three nested aggregations: events → (member, local day) points → (member, month) Σx and Σx² →
    member score = Σ decay^m × mean / (1 + sd). PostgreSQL converts to the local day exactly
    (``AT TIME ZONE``); SQLite shifts by the zone's current UTC offset (exact for zones without DST)."""
    d = _sql_dialect()
    params: list[Any] = []
    if d == "pg":
        day_expr = "CAST((e.occurred_at AT TIME ZONE %s) AS date)"
        day_params: list[Any] = [tz_name]
        raw_kind = "(e.payload ->> 'raw_kind')"
        ym = "(CAST(EXTRACT(YEAR FROM day) AS integer) * 12 + CAST(EXTRACT(MONTH FROM day) AS integer))"
        sqrt = "SQRT"
        now_param: Any = now
    else:
        day_expr = f"date(e.occurred_at, '{_utc_offset_minutes(tz_name, now):+d} minutes')"
        day_params = []
        raw_kind = "json_extract(e.payload, '$.raw_kind')"
        ym = "(CAST(substr(day, 1, 4) AS integer) * 12 + CAST(substr(day, 6, 2) AS integer))"
        sqrt = "SQRT"
        now_param = now.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    whens = []
    for kind, w in sorted(weights.items()):
        if kind in ("topic", "other", "like") or kind not in _EVENT_KINDS:
            continue
        whens.append(f"WHEN '{kind}' THEN {int(w)}")
    topic_w, other_w = int(weights.get("topic", 0)), int(weights.get("other", 0))
    weight_expr = (
        f"CASE WHEN e.kind = 'other' THEN (CASE WHEN {raw_kind} = 'topic' THEN {topic_w} ELSE {other_w} END) "
        f"ELSE (CASE e.kind {' '.join(whens) or 'WHEN NULL THEN 0'} ELSE 0 END) END"
    )
    spoke_expr = "CASE WHEN e.kind IN ('message', 'reply') THEN 1 ELSE 0 END"
    today_ym = today.year * 12 + today.month
    days_case = " ".join(f"WHEN {m} THEN {scoring.days_in_month(m, today)}.0" for m in range(scoring.WINDOW_MONTHS))
    decay_case = " ".join(f"WHEN {m} THEN {scoring.DECAY ** m!r}" for m in range(scoring.WINDOW_MONTHS))
    level_expr = " + ".join(f"(CASE WHEN score >= {float(t)!r} THEN 1 ELSE 0 END)" for t in thresholds) or "0"
    start, _unused = day_bounds(scoring.window_start(today), tz_name)
    end = day_bounds(today, tz_name)[1]
    member_filter = ""
    # full recompute on SQLite: a sequential scan + sort beats 10M index lookups into the table
    table_hint = " NOT INDEXED" if d == "sqlite" and member_ids is None else ""
    if member_ids is not None:
        member_filter = f" AND e.member_id IN ({', '.join(['%s'] * len(member_ids))})"
    # every interpolated piece is built here from ints, floats and a fixed kind whitelist; values are params
    sql = f"""
        INSERT INTO engagement_memberscore (tenant_id, member_id, score, level, last_spoke_day, last_active_day,
                                            computed_at)
        SELECT %s, member_id, score, {level_expr}, last_spoke, last_day, %s FROM (
            SELECT member_id, SUM(
                       (CASE mi {decay_case} ELSE 0 END) * (s / dd) /
                       (1 + {sqrt}(CASE WHEN ss / dd - (s / dd) * (s / dd) > 0
                                        THEN ss / dd - (s / dd) * (s / dd) ELSE 0 END))
                   ) AS score,
                   MAX(last_spoke) AS last_spoke, MAX(last_day) AS last_day
            FROM (
                SELECT member_id, mi, CAST(SUM(pts) AS double precision) AS s,
                       CAST(SUM(pts * pts) AS double precision) AS ss,
                       (CASE mi {days_case} ELSE 30.0 END) AS dd,
                       MAX(CASE WHEN spoke > 0 THEN day END) AS last_spoke, MAX(day) AS last_day
                FROM (
                    SELECT member_id, day, pts, spoke, {today_ym} - {ym} AS mi FROM (
                        SELECT e.member_id AS member_id, {day_expr} AS day,
                               SUM({weight_expr}) AS pts, SUM({spoke_expr}) AS spoke
                        FROM activity_activityevent e{table_hint}
                        WHERE e.tenant_id = %s AND e.member_id IS NOT NULL
                          AND e.occurred_at >= %s AND e.occurred_at < %s{member_filter}
                        GROUP BY 1, 2
                    ) daily
                ) daily_m
                GROUP BY member_id, mi
            ) monthly
            GROUP BY member_id
        ) scored
        WHERE true
        ON CONFLICT (member_id) DO UPDATE SET score = excluded.score, level = excluded.level,
            last_spoke_day = excluded.last_spoke_day, last_active_day = excluded.last_active_day,
            computed_at = excluded.computed_at
    """  # noqa: S608
    if d == "sqlite":
        sql = sql.replace("double precision", "REAL")
        start_p: Any = start.replace(tzinfo=None).isoformat(sep=" ")
        end_p: Any = end.replace(tzinfo=None).isoformat(sep=" ")
    else:
        start_p, end_p = start, end
    params = [tenant_id, now_param, *day_params, tenant_id, start_p, end_p]
    if member_ids is not None:
        params.extend(int(m) for m in member_ids)
    return sql, params


_EVENT_KINDS = frozenset(scoring.DEFAULT_WEIGHTS) - {"topic", "like"}


def do_recompute_scores(
    tenant_id: int, *, member_ids: Sequence[int] | None = None, now: dt.datetime | None = None,
    lifecycle: bool = True,
) -> int:
    """Recompute engagement scores (all members, or just ``member_ids``) and then lifecycle stages.

    Idempotent: a rerun gives the same rows. Members with no scoring activity in the window drop to 0.
    Returns the number of members scored."""
    now = now or timezone.now()
    cfg = engagement_config(tenant_id)
    tz = tenant_time_zone(tenant_id)
    today = local_day(now, tz)
    weights = {k: int(v) for k, v in cfg["weights"].items()}
    thresholds = [float(t) for t in cfg["level_thresholds"]]
    scored = 0
    with transaction.atomic():
        chunks: Iterable[Sequence[int] | None] = (
            [member_ids[i : i + 900] for i in range(0, len(member_ids), 900)] if member_ids is not None else [None]
        )
        for chunk in chunks:
            if chunk is not None and not chunk:
                continue
            sql, params = _score_sql(tenant_id, today=today, tz_name=tz, now=now, weights=weights,
                                     thresholds=thresholds, member_ids=chunk)
            with connection.cursor() as cur:
                cur.execute(sql, params)
                scored += max(cur.rowcount, 0)
        # then zero the rows the upsert did not touch (no scoring activity left in the window): each row
        # is written once, not reset and then rewritten
        reset = MemberScore.objects.filter(tenant_id=tenant_id).exclude(computed_at=now)
        if member_ids is not None:
            reset = reset.filter(member_id__in=member_ids)
        reset.update(score=0, level=0, computed_at=now)
        if lifecycle:
            do_update_lifecycle(tenant_id, member_ids=member_ids, now=now, _cfg=cfg, _tz=tz)
    return scored


def do_update_lifecycle(tenant_id: int, *, member_ids: Sequence[int] | None = None,
                        now: dt.datetime | None = None, _cfg: dict[str, Any] | None = None,
                        _tz: str | None = None) -> int:
    """Set ``Member.lifecycle_stage`` (a queryset update) from first/last activity and speaking; return
    how many members changed stage.

    new: first seen < new_days ago · churned: left every community, or silent > dormant_days ·
    dormant: last seen lurking_days..dormant_days ago · active: spoke within active_days ·
    lurking: otherwise (seen recently but silent)."""
    now = now or timezone.now()
    cfg = (_cfg or engagement_config(tenant_id))["lifecycle"]
    tz = _tz or tenant_time_zone(tenant_id)
    today = local_day(now, tz)
    active_day = today - dt.timedelta(days=int(cfg["active_days"]))
    spoke_recently = MemberScore.objects.filter(member_id=OuterRef("pk"), last_spoke_day__gt=active_day)
    had_membership = Membership.objects.filter(member_id=OuterRef("pk"))
    open_membership = Membership.objects.filter(member_id=OuterRef("pk"), left_at__isnull=True)
    qs = Member.objects.filter(tenant_id=tenant_id, merged_into__isnull=True)
    if member_ids is not None:
        qs = qs.filter(pk__in=list(member_ids))
    stage = Case(
        When(first_seen_at__gte=now - dt.timedelta(days=int(cfg["new_days"])), then=Value(LifecycleStage.NEW)),
        When(Q(Exists(had_membership)) & ~Q(Exists(open_membership)), then=Value(LifecycleStage.CHURNED)),
        When(Q(last_active_at__isnull=True) | Q(last_active_at__lt=now - dt.timedelta(days=int(cfg["dormant_days"]))),
             then=Value(LifecycleStage.CHURNED)),
        When(last_active_at__lt=now - dt.timedelta(days=int(cfg["lurking_days"])), then=Value(LifecycleStage.DORMANT)),
        When(Exists(spoke_recently), then=Value(LifecycleStage.ACTIVE)),
        default=Value(LifecycleStage.LURKING),
    )
    # only the members whose stage changes are written (most do not, batch after batch)
    return qs.filter(~Q(lifecycle_stage=stage)).update(lifecycle_stage=stage)


# =====================================================================================================
# Relationship ladder
# =====================================================================================================


def _purchase_facts(tenant_id: int, member_ids: Iterable[int] | None) -> dict[int, dict[str, int]]:
    facts: dict[int, dict[str, int]] = defaultdict(lambda: {"purchases": 0, "spent_fen": 0, "invites": 0})
    qs = ActivityEvent.objects.filter(tenant_id=tenant_id, kind__in=["purchase", "invite"], member_id__isnull=False)
    if member_ids is not None:
        qs = qs.filter(member_id__in=list(member_ids))
    for member_id, kind, payload in qs.values_list("member_id", "kind", "payload").iterator():
        f = facts[member_id]
        if kind == "purchase":
            f["purchases"] += 1
            amount = payload.get("amount_fen", 0) if isinstance(payload, dict) else 0
            f["spent_fen"] += int(amount) if isinstance(amount, int) else 0
        else:
            f["invites"] += 1
    return facts


def do_suggest_ladder(tenant_id: int, *, member_ids: Iterable[int] | None = None) -> int:
    """Create (or refresh) one pending suggestion per member whose facts meet a higher rung."""
    rules: dict[str, dict[str, int]] = engagement_config(tenant_id)["ladder"]
    facts = _purchase_facts(tenant_id, member_ids)
    if not facts:
        return 0
    levels = dict(MemberScore.objects.filter(tenant_id=tenant_id, member_id__in=list(facts))
                  .values_list("member_id", "level"))
    current = dict(Member.objects.filter(tenant_id=tenant_id, pk__in=list(facts))
                   .values_list("pk", "relationship_level"))
    made = 0
    for member_id, f in facts.items():
        if member_id not in current:
            continue
        evidence: dict[str, Any] = {**f, "level": levels.get(member_id, 0)}
        target = 0
        for rung in sorted(rules, key=int):
            r = rules[rung]
            if (evidence["purchases"] >= r.get("min_purchases", 0) and evidence["level"] >= r.get("min_level", 0)
                    and evidence["invites"] >= r.get("min_invites", 0)
                    and evidence["spent_fen"] >= r.get("min_spent_fen", 0)):
                target = int(rung)
        if target <= current[member_id]:
            continue
        evidence["rule"] = rules[str(target)]
        with transaction.atomic():
            updated = LadderSuggestion.objects.filter(
                tenant_id=tenant_id, member_id=member_id, status=Decision.PENDING
            ).update(to_level=target, from_level=current[member_id], evidence=evidence)
            if not updated:
                LadderSuggestion.objects.create(tenant_id=tenant_id, member_id=member_id,
                                                from_level=current[member_id], to_level=target, evidence=evidence)
        made += 1
    return made


def do_decide_ladder(principal: Principal, suggestion_id: int, *, accept: bool, reason: str = "") -> LadderSuggestion:
    """Operator confirms (or dismisses) a ladder suggestion; accepting sets ``Member.relationship_level``."""
    with transaction.atomic():
        s = (LadderSuggestion.objects.select_for_update()
             .filter(tenant_id=principal.tenant_id, pk=suggestion_id).first())
        if s is None:
            raise NotFound(_("建议不存在"), details={"field": "suggestion_id"})
        if s.status != Decision.PENDING:
            raise Conflict(_("该建议已处理"))
        s.status = Decision.ACCEPTED if accept else Decision.DISMISSED
        s.decided_at = timezone.now()
        s.decided_by = principal.label
        s.save(update_fields=["status", "decided_at", "decided_by"])
        if accept:
            Member.objects.filter(tenant_id=principal.tenant_id, pk=s.member_id).update(relationship_level=s.to_level)
        do_audit(principal, "engagement.ladder." + ("accept" if accept else "dismiss"), "member", str(s.member_id),
                 reason=reason, data={"from": s.from_level, "to": s.to_level, "evidence": s.evidence})
    return s


# =====================================================================================================
# Role recommendations
# =====================================================================================================

StandingCheck = Callable[[int, int], "str | None"]
_STANDING_CHECKS: list[StandingCheck] = []


def register_standing_check(fn: StandingCheck) -> None:
    """Moderation fills this: ``fn(tenant_id, member_id)`` returns ``None`` when the member's record is
    clean, else a short reason. With no checks registered everyone is clean."""
    if fn not in _STANDING_CHECKS:
        _STANDING_CHECKS.append(fn)


def unregister_standing_check(fn: StandingCheck) -> None:
    if fn in _STANDING_CHECKS:
        _STANDING_CHECKS.remove(fn)


def check_standing(tenant_id: int, member_id: int) -> str | None:
    for fn in _STANDING_CHECKS:
        problem = fn(tenant_id, member_id)
        if problem:
            return problem
    return None


def check_good_standing(tenant_id: int, member_id: int, what: str) -> None:
    """Refuse (403 ``bad_standing``) a member whose record is not clean, naming the reason the
    registered standing check gave (moderation: banned, muted, a recent strike)."""
    problem = check_standing(tenant_id, member_id)
    if problem:
        raise Forbidden(_("%(reason)s, 暂时不能%(what)s") % {"reason": problem, "what": what},
                        code="bad_standing", details={"field": "member_id", "reason": problem})


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
    standing: dict[int, str | None] = {}
    made: list[RoleRecommendation] = []
    eligible = [m for m, s in stats.items() if len(s["days"]) >= int(cfg["min_active_days"])]
    for role, formula in formulas.items():
        ranked = sorted(((formula(stats[m]), m) for m in eligible if m not in holders[role]), reverse=True)
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


# =====================================================================================================
# Reply-to-everyone queue
# =====================================================================================================


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
    from shequn.connectors.services import do_request_action

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


# =====================================================================================================
# Points ledger
# =====================================================================================================


def _ensure_account(tenant_id: int, member_id: int) -> None:
    if not PointsAccount.objects.filter(tenant_id=tenant_id, member_id=member_id).exists():
        try:
            with transaction.atomic():
                PointsAccount.objects.create(tenant_id=tenant_id, member_id=member_id)
        except IntegrityError:
            pass  # created concurrently


def _existing_entry(tenant_id: int, key: str) -> PointsEntry | None:
    return PointsEntry.objects.filter(tenant_id=tenant_id, idempotency_key=key).first()


def do_points_earn(tenant_id: int, member_id: int, amount: int, *, kind: str, idempotency_key: str,
                   reason: str = "") -> PointsEntry:
    """Credit points. Locking: one conditional ``UPDATE … SET balance = balance + x`` on the member's
    account row (row lock until commit) and the entry insert, together in a savepoint; the unique
    idempotency key makes a repeat return the first entry and roll back its own increment."""
    if amount <= 0:
        raise Invalid(_("积分数量必须为正数"), details={"field": "amount"})
    check_member(tenant_id, member_id)
    if (found := _existing_entry(tenant_id, idempotency_key)) is not None:
        return found
    _ensure_account(tenant_id, member_id)
    try:
        with transaction.atomic():
            PointsAccount.objects.filter(tenant_id=tenant_id, member_id=member_id).update(
                balance=F("balance") + amount, earned_total=F("earned_total") + amount)
            balance = PointsAccount.objects.filter(tenant_id=tenant_id, member_id=member_id).values_list(
                "balance", flat=True).get()
            return PointsEntry.objects.create(tenant_id=tenant_id, member_id=member_id, delta=amount,
                                              balance_after=balance, kind=kind, reason=reason[:200],
                                              idempotency_key=idempotency_key)
    except IntegrityError:
        found = _existing_entry(tenant_id, idempotency_key)
        if found is None:
            raise
        return found


class RewardTask(Protocol):
    """What engagement reads of a referrals ``FissionTask`` (engagement never imports referrals)."""

    pk: Any
    name: str
    reward_value: int


def grant_fission_points(tenant_id: int, member_id: int, task: RewardTask) -> None:
    """Referrals' ``points`` fission reward (registered with ``register_reward_hook`` in
    ``EngagementConfig.ready``): credits ``task.reward_value`` points, once per task and member
    (idempotency key ``fission:<task>:<member>``, the key referrals uses for the cash reward)."""
    if task.reward_value > 0:
        do_points_earn(tenant_id, member_id, int(task.reward_value), kind="fission",
                       idempotency_key=f"fission:{task.pk}:{member_id}", reason=str(task.name)[:200])


def do_points_earn_many(tenant_id: int, items: Sequence[tuple[int, int, str, str]]) -> int:
    """Credit many ``(member_id, amount, kind, idempotency_key)`` at once (the activity consumer's path).

    Locking: per member one ``UPDATE … SET balance = balance + Σ`` (row lock until commit), members in
    ascending id order; entries are bulk-inserted with their running ``balance_after``. Keys already
    used are skipped; if a concurrent writer claims one of the keys first, the savepoint rolls back
    and the items are retried one by one through :func:`do_points_earn`. Returns entries written."""
    fresh = [it for it in items if it[1] > 0]
    if not fresh:
        return 0
    keys = [it[3] for it in fresh]
    used = set(PointsEntry.objects.filter(tenant_id=tenant_id, idempotency_key__in=keys)
               .values_list("idempotency_key", flat=True))
    seen: set[str] = set()
    todo = []
    for it in fresh:
        if it[3] not in used and it[3] not in seen:
            seen.add(it[3])
            todo.append(it)
    if not todo:
        return 0
    member_ids = sorted({it[0] for it in todo})
    have = set(PointsAccount.objects.filter(tenant_id=tenant_id, member_id__in=member_ids)
               .values_list("member_id", flat=True))
    missing = [m for m in member_ids if m not in have]
    if missing:
        PointsAccount.objects.bulk_create([PointsAccount(tenant_id=tenant_id, member_id=m) for m in missing],
                                          ignore_conflicts=True)
    by_member: dict[int, list[tuple[int, int, str, str]]] = defaultdict(list)
    for it in todo:
        by_member[it[0]].append(it)
    try:
        with transaction.atomic():
            for m in member_ids:
                total = sum(it[1] for it in by_member[m])
                PointsAccount.objects.filter(tenant_id=tenant_id, member_id=m).update(
                    balance=F("balance") + total, earned_total=F("earned_total") + total)
            balances = dict(PointsAccount.objects.filter(tenant_id=tenant_id, member_id__in=member_ids)
                            .values_list("member_id", "balance"))
            rows = []
            for m in member_ids:
                running = balances[m] - sum(it[1] for it in by_member[m])
                for _m, amount, kind, key in by_member[m]:
                    running += amount
                    rows.append(PointsEntry(tenant_id=tenant_id, member_id=m, delta=amount, balance_after=running,
                                            kind=kind, idempotency_key=key))
            PointsEntry.objects.bulk_create(rows, batch_size=500)
            return len(rows)
    except IntegrityError:
        for m, amount, kind, key in todo:
            do_points_earn(tenant_id, m, amount, kind=kind, idempotency_key=key)
        return len(todo)


def do_points_spend(tenant_id: int, member_id: int, amount: int, *, kind: str, idempotency_key: str,
                    reason: str = "") -> PointsEntry:
    """Debit points; never below zero. Locking: ``UPDATE … SET balance = balance − x WHERE balance >= x``
    (PostgreSQL re-checks the condition on the latest row version after waiting for the row lock, so
    concurrent spends cannot overdraw); 0 rows → :class:`Conflict` "积分不足". The CHECK constraint
    ``balance >= 0`` is the backstop. Idempotent on ``idempotency_key`` like :func:`do_points_earn`."""
    if amount <= 0:
        raise Invalid(_("积分数量必须为正数"), details={"field": "amount"})
    check_member(tenant_id, member_id)
    if (found := _existing_entry(tenant_id, idempotency_key)) is not None:
        return found
    _ensure_account(tenant_id, member_id)
    try:
        with transaction.atomic():
            n = PointsAccount.objects.filter(tenant_id=tenant_id, member_id=member_id, balance__gte=amount).update(
                balance=F("balance") - amount, spent_total=F("spent_total") + amount)
            if n != 1:
                raise Conflict(_("积分不足"), code="insufficient_points", details={"field": "amount"})
            balance = PointsAccount.objects.filter(tenant_id=tenant_id, member_id=member_id).values_list(
                "balance", flat=True).get()
            return PointsEntry.objects.create(tenant_id=tenant_id, member_id=member_id, delta=-amount,
                                              balance_after=balance, kind=kind, reason=reason[:200],
                                              idempotency_key=idempotency_key)
    except IntegrityError:
        found = _existing_entry(tenant_id, idempotency_key)
        if found is None:
            raise
        return found


def do_points_adjust(principal: Principal, member_id: int, amount: int, *, reason: str) -> PointsEntry:
    """An operator's manual grant (amount > 0) or deduction (< 0), audited."""
    if not reason.strip():
        raise Invalid(_("请填写调整原因"), details={"field": "reason"})
    key = f"adjust:{secrets.token_hex(8)}"
    with transaction.atomic():
        if amount > 0:
            entry = do_points_earn(principal.tenant_id, member_id, amount, kind="adjust", idempotency_key=key,
                                   reason=reason)
        elif amount < 0:
            entry = do_points_spend(principal.tenant_id, member_id, -amount, kind="adjust", idempotency_key=key,
                                    reason=reason)
        else:
            raise Invalid(_("积分数量不能为 0"), details={"field": "amount"})
        do_audit(principal, "engagement.points.adjust", "member", str(member_id), reason=reason,
                 data={"amount": amount})
    return entry


# =====================================================================================================
# Check-ins, streaks, make-up cards, badges
# =====================================================================================================


@dataclass(frozen=True)
class CheckInResult:
    created: bool
    day: dt.date
    current_streak: int
    longest_streak: int
    total_days: int
    points: int


def _lock_stats(tenant_id: int, member_id: int) -> CheckInStats:
    try:
        with transaction.atomic():
            CheckInStats.objects.get_or_create(tenant_id=tenant_id, member_id=member_id)
    except IntegrityError:
        pass
    return CheckInStats.objects.select_for_update().get(tenant_id=tenant_id, member_id=member_id)


def _refresh_streak(tenant_id: int, stats: CheckInStats, today: dt.date) -> None:
    days = CheckIn.objects.filter(tenant_id=tenant_id, member_id=stats.member_id).values_list("day", flat=True)
    st = compute_streak(days, today)
    stats.current_streak, stats.longest_streak, stats.total_days, stats.last_day = (
        st.current, st.longest, st.total, st.last_day)
    stats.save(update_fields=["current_streak", "longest_streak", "total_days", "last_day"])


def do_check_in(tenant_id: int, member_id: int, *, at: dt.datetime | None = None, source: str = "api") -> CheckInResult:
    """Daily check-in on the member's local day (tenant time zone). A second check-in the same day is
    a no-op returning the streak. Earns ``points + min(streak − 1, bonus_cap) × streak_bonus``.

    Locking: the member's :class:`CheckInStats` row (``select_for_update``) serialises a member's
    check-ins; ``(member, day)`` is unique; points use the ledger's own rule."""
    at = at or timezone.now()
    check_member(tenant_id, member_id)
    cfg = engagement_config(tenant_id)["checkin"]
    tz = tenant_time_zone(tenant_id)
    day = local_day(at, tz)
    with transaction.atomic():
        stats = _lock_stats(tenant_id, member_id)
        created = not CheckIn.objects.filter(tenant_id=tenant_id, member_id=member_id, day=day).exists()
        points = 0
        if created:
            CheckIn.objects.create(tenant_id=tenant_id, member_id=member_id, day=day, source=source)
        _refresh_streak(tenant_id, stats, day)  # the streak as of this check-in's day
        if created:
            bonus = min(stats.current_streak - 1, int(cfg["bonus_cap"])) * int(cfg["streak_bonus"])
            points = int(cfg["points"]) + bonus
            if points > 0:
                do_points_earn(tenant_id, member_id, points, kind="checkin",
                               idempotency_key=f"checkin:{member_id}:{day.isoformat()}",
                               reason=_("签到 (连续 %(n)d 天)") % {"n": stats.current_streak})
            do_award_badges(tenant_id, member_id)
    return CheckInResult(created, day, stats.current_streak, stats.longest_streak, stats.total_days, points)


def do_grant_makeup_cards(principal: Principal, member_id: int, count: int, *, reason: str = "") -> int:
    if count <= 0:
        raise Invalid(_("数量必须为正数"), details={"field": "count"})
    check_member(principal.tenant_id, member_id)
    with transaction.atomic():
        stats = _lock_stats(principal.tenant_id, member_id)
        CheckInStats.objects.filter(pk=stats.pk).update(makeup_cards=F("makeup_cards") + count)
        do_audit(principal, "engagement.makeup.grant", "member", str(member_id), reason=reason, data={"count": count})
        return stats.makeup_cards + count


def do_buy_makeup_card(tenant_id: int, member_id: int, *, idempotency_key: str) -> int:
    """Spend points for one make-up card (``checkin.makeup_card_cost``)."""
    cost = int(engagement_config(tenant_id)["checkin"]["makeup_card_cost"])
    with transaction.atomic():
        stats = _lock_stats(tenant_id, member_id)
        if _existing_entry(tenant_id, idempotency_key) is None:
            do_points_spend(tenant_id, member_id, cost, kind="makeup_card", idempotency_key=idempotency_key,
                            reason=_("兑换补签卡"))
            CheckInStats.objects.filter(pk=stats.pk).update(makeup_cards=F("makeup_cards") + 1)
        stats.refresh_from_db()
        return stats.makeup_cards


def do_use_makeup_card(
    tenant_id: int, member_id: int, day: dt.date, *, now: dt.datetime | None = None
) -> CheckInResult:
    """Fill a missed day within ``makeup_window_days`` with a make-up card (no points)."""
    now = now or timezone.now()
    cfg = engagement_config(tenant_id)["checkin"]
    today = local_day(now, tenant_time_zone(tenant_id))
    if not (today - dt.timedelta(days=int(cfg["makeup_window_days"])) <= day < today):
        raise Invalid(_("只能补签最近 %(n)d 天内的日期") % {"n": int(cfg["makeup_window_days"])},
                      details={"field": "day"})
    check_member(tenant_id, member_id)
    with transaction.atomic():
        stats = _lock_stats(tenant_id, member_id)
        if CheckIn.objects.filter(tenant_id=tenant_id, member_id=member_id, day=day).exists():
            raise Conflict(_("这一天已经签到过了"), details={"field": "day"})
        if CheckInStats.objects.filter(pk=stats.pk, makeup_cards__gte=1).update(
                makeup_cards=F("makeup_cards") - 1) != 1:
            raise Conflict(_("没有补签卡"), code="no_makeup_card")
        CheckIn.objects.create(tenant_id=tenant_id, member_id=member_id, day=day, source=CheckIn.Source.MAKEUP)
        stats.refresh_from_db()
        _refresh_streak(tenant_id, stats, today)
        do_award_badges(tenant_id, member_id)
    return CheckInResult(True, day, stats.current_streak, stats.longest_streak, stats.total_days, 0)


def do_award_badges(tenant_id: int, member_id: int) -> list[str]:
    """Award every badge whose rule the member now meets (idempotent; badges are never taken back)."""
    badges = list(Badge.objects.filter(tenant_id=tenant_id))
    if not badges:
        return []
    stats = CheckInStats.objects.filter(tenant_id=tenant_id, member_id=member_id).first()
    score = MemberScore.objects.filter(tenant_id=tenant_id, member_id=member_id).first()
    acc = PointsAccount.objects.filter(tenant_id=tenant_id, member_id=member_id).first()
    metric: dict[str, int] = {
        Badge.Rule.STREAK: stats.longest_streak if stats else 0,
        Badge.Rule.CHECKIN_TOTAL: stats.total_days if stats else 0,
        Badge.Rule.LEVEL: score.level if score else 0,
        Badge.Rule.POINTS_EARNED: acc.earned_total if acc else 0,
    }
    earned = [b for b in badges if metric.get(b.rule, 0) >= b.threshold]
    MemberBadge.objects.bulk_create([MemberBadge(tenant_id=tenant_id, member_id=member_id, badge=b) for b in earned],
                                    ignore_conflicts=True)
    return [b.code for b in earned]


# =====================================================================================================
# Lotteries (commit–reveal, see shequn.engagement.fairness)
# =====================================================================================================

_RULE_KEYS = {"community_id", "min_level", "joined_before", "min_streak", "purchased_since", "require_purchase"}


def _announce(tenant_id: int, group_id: int | None, key: str, text: str, source: str) -> OutboxAction | None:
    if group_id is None:
        return None
    from shequn.connectors.services import do_request_action

    return do_request_action(tenant_id, kind="send", group_id=group_id, idempotency_key=key,
                             payload={"text": text}, source=source)


def check_lottery_rules(rules: dict[str, Any]) -> dict[str, Any]:
    """Validate entry rules; unknown keys and bad values name the field."""
    if not isinstance(rules, dict):
        raise Invalid(_("参与条件必须是对象"), details={"field": "rules"})
    unknown = set(rules) - _RULE_KEYS
    if unknown:
        raise Invalid(_("未知的参与条件: %(k)s") % {"k": ", ".join(sorted(unknown))}, details={"field": "rules"})
    for key in ("community_id", "min_level", "min_streak"):
        if key in rules and (not isinstance(rules[key], int) or rules[key] < 0):
            raise Invalid(_("%(k)s 必须是非负整数") % {"k": key}, details={"field": f"rules.{key}"})
    for key in ("joined_before", "purchased_since"):
        if key in rules:
            try:
                dt.date.fromisoformat(str(rules[key]))
            except ValueError as exc:
                raise Invalid(_("%(k)s 必须是日期 YYYY-MM-DD") % {"k": key}, details={"field": f"rules.{key}"}) from exc
    return rules


def do_create_lottery(
    principal: Principal, *, title: str, closes_at: dt.datetime, draw_at: dt.datetime,
    prizes: Sequence[tuple[str, int]], rules: dict[str, Any] | None = None, entry_cost_points: int = 0,
    max_tickets: int = 1, community_id: int | None = None, group_id: int | None = None, beacon: str = "",
) -> Lottery:
    """Create a lottery and publish its seed commitment (SHA-256 of a fresh 32-byte secret seed)."""
    now = timezone.now()
    if not title.strip():
        raise Invalid(_("请填写标题"), details={"field": "title"})
    if closes_at <= now:
        raise Invalid(_("截止时间必须晚于现在"), details={"field": "closes_at"})
    if draw_at < closes_at:
        raise Invalid(_("开奖时间不能早于截止时间"), details={"field": "draw_at"})
    if not prizes:
        raise Invalid(_("至少需要一个奖品"), details={"field": "prizes"})
    for i, (name, stock) in enumerate(prizes):
        if not str(name).strip() or int(stock) < 1:
            raise Invalid(_("第 %(i)d 个奖品: 需要名称且数量至少为 1") % {"i": i + 1},
                          details={"field": f"prizes[{i}]"})
    if max_tickets < 1:
        raise Invalid(_("每人最多注数至少为 1"), details={"field": "max_tickets"})
    rules = check_lottery_rules(rules or {})
    tid = principal.tenant_id
    if community_id is not None and not Community.objects.filter(tenant_id=tid, pk=community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "community_id"})
    if group_id is not None and not ChatGroup.objects.filter(tenant_id=tid, pk=group_id).exists():
        raise NotFound(_("群不存在"), details={"field": "group_id"})
    seed = secrets.token_hex(32)
    with transaction.atomic():
        lot = Lottery.objects.create(
            tenant_id=tid, title=title.strip(), community_id=community_id, group_id=group_id, rules=rules,
            entry_cost_points=entry_cost_points, max_tickets=max_tickets, closes_at=closes_at, draw_at=draw_at,
            seed_hex=seed, seed_commitment=fairness.seed_commitment(seed), beacon=beacon, created_by=principal.label,
        )
        LotteryPrize.objects.bulk_create([
            LotteryPrize(tenant_id=tid, lottery=lot, rank=i + 1, name=str(n).strip(), stock=int(s))
            for i, (n, s) in enumerate(prizes)
        ])
        do_audit(principal, "engagement.lottery.create", "lottery", str(lot.pk),
                 data={"seed_commitment": lot.seed_commitment, "rules": rules})
    return lot


def check_lottery_entry(lottery: Lottery, member_id: int, *, now: dt.datetime) -> None:
    """Raise :class:`Invalid` naming the first entry rule the member fails."""
    tid = lottery.tenant_id
    rules = lottery.rules or {}
    community_id = rules.get("community_id") or lottery.community_id
    if community_id and not Membership.objects.filter(tenant_id=tid, member_id=member_id, community_id=community_id,
                                                      left_at__isnull=True).exists():
        raise Invalid(_("仅限本社群成员参与"), code="rule_community", details={"field": "rules.community_id"})
    if rules.get("min_level"):
        level = MemberScore.objects.filter(tenant_id=tid, member_id=member_id).values_list("level", flat=True).first()
        if (level or 0) < int(rules["min_level"]):
            raise Invalid(_("活跃等级需达到 %(n)d 级") % {"n": rules["min_level"]}, code="rule_level",
                          details={"field": "rules.min_level"})
    if rules.get("joined_before"):
        cutoff = day_bounds(dt.date.fromisoformat(rules["joined_before"]), tenant_time_zone(tid))[0]
        joined = Membership.objects.filter(tenant_id=tid, member_id=member_id, joined_at__lt=cutoff)
        if community_id:
            joined = joined.filter(community_id=community_id)
        if not joined.exists():
            raise Invalid(_("需在 %(d)s 之前入群") % {"d": rules["joined_before"]}, code="rule_joined",
                          details={"field": "rules.joined_before"})
    if rules.get("min_streak"):
        stats = CheckInStats.objects.filter(tenant_id=tid, member_id=member_id).first()
        today = local_day(now, tenant_time_zone(tid))
        fresh = stats is not None and stats.last_day is not None and stats.last_day >= today - dt.timedelta(days=1)
        live = stats.current_streak if stats is not None and fresh else 0
        if live < int(rules["min_streak"]):
            raise Invalid(_("需连续签到 %(n)d 天") % {"n": rules["min_streak"]}, code="rule_streak",
                          details={"field": "rules.min_streak"})
    if rules.get("require_purchase") or rules.get("purchased_since"):
        q = ActivityEvent.objects.filter(tenant_id=tid, member_id=member_id, kind="purchase")
        if rules.get("purchased_since"):
            q = q.filter(occurred_at__gte=day_bounds(dt.date.fromisoformat(rules["purchased_since"]),
                                                     tenant_time_zone(tid))[0])
        if not q.exists():
            raise Invalid(_("需有购买记录"), code="rule_purchase", details={"field": "rules.purchased_since"})


def do_enter_lottery(tenant_id: int, lottery_id: int, member_id: int, *, tickets: int = 1,
                     now: dt.datetime | None = None) -> LotteryEntry:
    """Enter (once per member) with ``tickets`` weight, paying ``entry_cost_points × tickets``.

    Locking: the lottery row (``select_for_update``) so no entry slips in after the snapshot is frozen,
    then the member's points account (conditional UPDATE)."""
    now = now or timezone.now()
    check_member(tenant_id, member_id)
    with transaction.atomic():
        lot = Lottery.objects.select_for_update().filter(tenant_id=tenant_id, pk=lottery_id).first()
        if lot is None:
            raise NotFound(_("抽奖不存在"), details={"field": "lottery_id"})
        if lot.status != Lottery.Status.OPEN or now >= lot.closes_at:
            raise Conflict(_("报名已截止"), code="lottery_closed")
        if not 1 <= tickets <= lot.max_tickets:
            raise Invalid(_("注数必须在 1 到 %(n)d 之间") % {"n": lot.max_tickets}, details={"field": "tickets"})
        if LotteryEntry.objects.filter(lottery=lot, member_id=member_id).exists():
            raise Conflict(_("已经报名了"), code="already_entered")
        check_good_standing(tenant_id, member_id, _("参加抽奖"))
        check_lottery_entry(lot, member_id, now=now)
        if lot.entry_cost_points:
            do_points_spend(tenant_id, member_id, lot.entry_cost_points * tickets, kind="lottery",
                            idempotency_key=f"lottery:{lot.pk}:{member_id}", reason=lot.title)
        return LotteryEntry.objects.create(tenant_id=tenant_id, lottery=lot, member_id=member_id, weight=tickets)


def _snapshot(lot: Lottery) -> dict[str, Any]:
    entrants = [{"id": f"m{m}", "weight": w}
                for m, w in LotteryEntry.objects.filter(lottery=lot).order_by("pk").values_list("member_id", "weight")]
    prizes = [{"id": f"p{p.pk}", "name": p.name, "stock": p.stock}
              for p in LotteryPrize.objects.filter(lottery=lot).order_by("rank", "pk")]
    return {"entrants": entrants, "prizes": prizes}


def do_close_lottery(tenant_id: int, lottery_id: int, *, now: dt.datetime | None = None) -> Lottery:
    """Freeze the entrant snapshot and publish ``SHA-256(snapshot, algorithm, seed commitment, beacon)``
    (also announced in the group) before anything about the seed is revealed."""
    now = now or timezone.now()
    with transaction.atomic():
        lot = Lottery.objects.select_for_update().filter(tenant_id=tenant_id, pk=lottery_id).first()
        if lot is None:
            raise NotFound(_("抽奖不存在"), details={"field": "lottery_id"})
        if lot.status != Lottery.Status.OPEN:
            return lot
        lot.snapshot = _snapshot(lot)
        lot.commitment = fairness.snapshot_commitment(lottery=str(lot.pk), snapshot=lot.snapshot,
                                                      seed_commitment=lot.seed_commitment, beacon=lot.beacon)
        lot.status, lot.closed_at = Lottery.Status.CLOSED, now
        lot.save(update_fields=["snapshot", "commitment", "status", "closed_at"])
        _announce(tenant_id, lot.group_id, f"lottery:{lot.pk}:commit",
                  _("【%(t)s】报名截止, 共 %(n)d 人参与。开奖承诺 SHA-256: %(c)s (开奖后公布种子, 可自行验证)")
                  % {"t": lot.title, "n": len(lot.snapshot["entrants"]), "c": lot.commitment}, "engagement.lottery")
    return lot


def _store_result(lot: Lottery, result: fairness.DrawResult) -> None:
    members = {f"m{m}": m for m in LotteryEntry.objects.filter(lottery=lot).values_list("member_id", flat=True)}
    prizes = {f"p{p}": p for p in LotteryPrize.objects.filter(lottery=lot).values_list("pk", flat=True)}
    existing = {w.member_id: w for w in LotteryWinner.objects.filter(lottery=lot)}
    rows = [*result.winners, *[r for r in result.rerolls if r["entrant"] is not None]]
    for w in rows:
        member_id = members[w["entrant"]]
        if member_id not in existing:
            existing[member_id] = LotteryWinner.objects.create(
                tenant_id=lot.tenant_id, lottery=lot, prize_id=prizes[w["prize"]], member_id=member_id,
                position=w["position"])
    lot.result = {"winners": result.winners, "rerolls": result.rerolls}


def do_draw_lottery(tenant_id: int, lottery_id: int, *, beacon_value: str = "",
                    now: dt.datetime | None = None) -> Lottery:
    """Reveal the seed and derive the winners (``fairness.draw``); announce them through the outbox."""
    now = now or timezone.now()
    with transaction.atomic():
        lot = Lottery.objects.select_for_update().filter(tenant_id=tenant_id, pk=lottery_id).first()
        if lot is None:
            raise NotFound(_("抽奖不存在"), details={"field": "lottery_id"})
        if lot.status == Lottery.Status.DRAWN:
            return lot
        if lot.status != Lottery.Status.CLOSED or lot.snapshot is None:
            raise Conflict(_("请先截止报名并公布承诺"), code="lottery_not_closed")
        if lot.beacon and not (beacon_value or lot.beacon_value):
            raise Invalid(_("需要公共随机源 %(b)s 的值") % {"b": lot.beacon}, details={"field": "beacon_value"})
        lot.beacon_value = beacon_value or lot.beacon_value
        result = fairness.draw(lot.snapshot, seed_hex=lot.seed_hex, commitment=lot.commitment,
                               beacon_value=lot.beacon_value)
        _store_result(lot, result)
        lot.status, lot.drawn_at = Lottery.Status.DRAWN, now
        lot.save(update_fields=["result", "status", "drawn_at", "beacon_value"])
        _announce_winners(lot, "winners", result.winners)
    return lot


def _announce_winners(lot: Lottery, suffix: str, rows: Sequence[dict[str, Any]]) -> None:
    if lot.group_id is None or not rows:
        return
    names = dict(Member.objects.filter(tenant_id=lot.tenant_id, pk__in=[
        int(r["entrant"][1:]) for r in rows if r.get("entrant")]).values_list("pk", "display_name"))
    prizes = {f"p{p.pk}": p.name for p in LotteryPrize.objects.filter(lottery=lot)}
    lines = [f"{prizes.get(r['prize'], '')}: {names.get(int(r['entrant'][1:]), r['entrant'])}"
             for r in rows if r.get("entrant")]
    _announce(lot.tenant_id, lot.group_id, f"lottery:{lot.pk}:{suffix}",
              _("【%(t)s】开奖结果\n%(lines)s\n种子: %(s)s") % {"t": lot.title, "lines": "\n".join(lines),
                                                          "s": lot.seed_hex}, "engagement.lottery")


def do_reroll(principal: Principal, lottery_id: int, member_id: int, *, reason: str = "") -> LotteryWinner | None:
    """A winner forfeits; the next entrant of the same shuffle takes the prize (verifiable)."""
    with transaction.atomic():
        lot = Lottery.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=lottery_id).first()
        if lot is None:
            raise NotFound(_("抽奖不存在"), details={"field": "lottery_id"})
        if lot.status != Lottery.Status.DRAWN or lot.snapshot is None or lot.result is None:
            raise Conflict(_("尚未开奖"), code="lottery_not_drawn")
        winner = LotteryWinner.objects.filter(lottery=lot, member_id=member_id, status=LotteryWinner.Status.WON).first()
        if winner is None:
            raise NotFound(_("该会员不是有效中奖者"), details={"field": "member_id"})
        winner.status = LotteryWinner.Status.FORFEITED
        winner.save(update_fields=["status"])
        forfeited = [r["forfeited"] for r in lot.result.get("rerolls", [])] + [f"m{member_id}"]
        result = fairness.draw(lot.snapshot, seed_hex=lot.seed_hex, commitment=lot.commitment,
                               beacon_value=lot.beacon_value, forfeited=forfeited)
        _store_result(lot, result)
        lot.save(update_fields=["result"])
        new = result.rerolls[-1]
        _announce_winners(lot, f"reroll:{len(forfeited)}", [new])
        do_audit(principal, "engagement.lottery.reroll", "lottery", str(lot.pk), reason=reason,
                 data={"forfeited": member_id, "replacement": new})
        if new["entrant"] is None:
            return None
        return LotteryWinner.objects.get(lottery=lot, member_id=int(new["entrant"][1:]))


def do_run_due_lotteries(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Scheduled: close lotteries past ``closes_at``; draw closed ones past ``draw_at`` (those waiting
    for a public randomness value are left for an operator)."""
    now = now or timezone.now()
    closed = drawn = 0
    due = Lottery.objects.filter(status=Lottery.Status.OPEN, closes_at__lte=now).values_list("tenant_id", "pk")
    for tid, pk in due:
        do_close_lottery(tid, pk, now=now)
        closed += 1
    for tid, pk, beacon, value in Lottery.objects.filter(status=Lottery.Status.CLOSED, draw_at__lte=now).values_list(
            "tenant_id", "pk", "beacon", "beacon_value"):
        if beacon and not value:
            continue
        do_draw_lottery(tid, pk, now=now)
        drawn += 1
    return {"closed": closed, "drawn": drawn}


# =====================================================================================================
# Red packets
# =====================================================================================================


class Wallet(Protocol):
    """Where a red packet's value comes from and goes to. ``member_id=None`` is the organisation's own
    (marketing) account. Both calls run inside the caller's transaction and must be idempotent on
    ``idempotency_key``; ``debit`` raises :class:`Conflict` when funds are insufficient."""

    def debit(self, tenant_id: int, member_id: int | None, amount: int, *, idempotency_key: str,
              reason: str) -> None: ...

    def credit(self, tenant_id: int, member_id: int | None, amount: int, *, idempotency_key: str,
               reason: str) -> None: ...


class PointsWallet:
    """Points: the organisation mints (debit/credit of ``None`` are no-ops); members use the ledger."""

    def debit(self, tenant_id: int, member_id: int | None, amount: int, *, idempotency_key: str,
              reason: str) -> None:
        if member_id is not None:
            do_points_spend(tenant_id, member_id, amount, kind="redpacket", idempotency_key=idempotency_key,
                            reason=reason)

    def credit(self, tenant_id: int, member_id: int | None, amount: int, *, idempotency_key: str,
               reason: str) -> None:
        if member_id is not None:
            do_points_earn(tenant_id, member_id, amount, kind="redpacket", idempotency_key=idempotency_key,
                           reason=reason)


_WALLETS: dict[str, Wallet] = {"points": PointsWallet()}


def register_cash_wallet(wallet: Wallet) -> None:
    """The fission ledger (``shequn.ledger``) registers its cash wallet here (amounts in fen)."""
    _WALLETS["cash"] = wallet


def _wallet(currency: str) -> Wallet:
    w = _WALLETS.get(currency)
    if w is None:
        raise Invalid(_("现金红包尚未启用 (需要资金账本)"), code="cash_wallet_missing", details={"field": "currency"})
    return w


def do_create_red_packet(
    principal: Principal, *, total: int, count: int, currency: str = "points", mode: str = "random",
    expires_in: dt.timedelta = dt.timedelta(hours=24), sender_member_id: int | None = None,
    group_id: int | None = None, community_id: int | None = None, title: str = "恭喜发财",
) -> RedPacket:
    """Create a packet and fund it: the sender's (or the organisation's) wallet is debited ``total``
    up front; the unclaimed rest is refunded at expiry. Announced in the group through the outbox."""
    if currency not in RedPacket.Currency.values:
        raise Invalid(_("未知的币种"), details={"field": "currency"})
    if mode not in RedPacket.Mode.values:
        raise Invalid(_("未知的红包类型"), details={"field": "mode"})
    if count < 1 or count > 10_000:
        raise Invalid(_("红包个数必须在 1 到 10000 之间"), details={"field": "count"})
    if total < count:
        raise Invalid(_("总额不足: 每个红包至少 1 分/1 积分"), details={"field": "total"})
    if expires_in <= dt.timedelta(0):
        raise Invalid(_("有效期必须为正"), details={"field": "expires_in"})
    tid = principal.tenant_id
    if sender_member_id is not None:
        check_member(tid, sender_member_id)
    if group_id is not None:
        g = ChatGroup.objects.filter(tenant_id=tid, pk=group_id).first()
        if g is None:
            raise NotFound(_("群不存在"), details={"field": "group_id"})
        community_id = community_id or g.community_id
    wallet = _wallet(currency)
    with transaction.atomic():
        p = RedPacket.objects.create(
            tenant_id=tid, title=title[:120], community_id=community_id, group_id=group_id, currency=currency,
            mode=mode, total=total, count=count, remaining_amount=total, remaining_count=count,
            sender_id=sender_member_id, expires_at=timezone.now() + expires_in, created_by=principal.label,
        )
        wallet.debit(tid, sender_member_id, total, idempotency_key=f"redpacket:{p.pk}:fund", reason=p.title)
        _announce(tid, group_id, f"redpacket:{p.pk}:announce",
                  _("🧧 %(t)s — %(n)d 个红包, 快来领取!") % {"t": p.title, "n": count}, "engagement.redpacket")
        do_audit(principal, "engagement.redpacket.create", "red_packet", str(p.pk),
                 data={"total": total, "count": count, "currency": currency, "mode": mode})
    return p


def do_claim_red_packet(tenant_id: int, packet_id: int, member_id: int, *, now: dt.datetime | None = None,
                        randint: redpacket.RandInt | None = None) -> RedPacketClaim:
    """Claim one share. Locking: the packet row (``select_for_update``, fixed order: packet → the
    claimer's wallet row), so concurrent claims see the true remaining amount and count and can never
    exceed the packet; ``(packet, member)`` is unique (one claim per member)."""
    now = now or timezone.now()
    check_member(tenant_id, member_id)
    with transaction.atomic():
        p = RedPacket.objects.select_for_update().filter(tenant_id=tenant_id, pk=packet_id).first()
        if p is None:
            raise NotFound(_("红包不存在"), details={"field": "packet_id"})
        if RedPacketClaim.objects.filter(packet=p, member_id=member_id).exists():
            raise Conflict(_("已经领过这个红包了"), code="already_claimed")
        if p.status == RedPacket.Status.EXPIRED or now >= p.expires_at:
            raise Conflict(_("红包已过期"), code="expired")
        if p.remaining_count <= 0:
            raise Conflict(_("红包已被领完"), code="finished")
        if p.community_id and not Membership.objects.filter(
                tenant_id=tenant_id, member_id=member_id, community_id=p.community_id, left_at__isnull=True).exists():
            raise Invalid(_("仅限本社群成员领取"), code="not_member", details={"field": "member_id"})
        check_good_standing(tenant_id, member_id, _("领取红包"))
        if p.mode == RedPacket.Mode.RANDOM:
            amount = redpacket.next_share(p.remaining_amount, p.remaining_count,
                                          *([randint] if randint else []))
        else:
            amount = redpacket.fixed_share(p.remaining_amount, p.remaining_count)
        p.remaining_amount -= amount
        p.remaining_count -= 1
        if p.remaining_count == 0:
            p.status = RedPacket.Status.FINISHED
        p.save(update_fields=["remaining_amount", "remaining_count", "status"])
        claim = RedPacketClaim.objects.create(tenant_id=tenant_id, packet=p, member_id=member_id, amount=amount)
        _wallet(p.currency).credit(tenant_id, member_id, amount, idempotency_key=f"redpacket:{p.pk}:claim:{member_id}",
                                   reason=p.title)
    return claim


def do_expire_red_packets(*, now: dt.datetime | None = None) -> int:
    """Expire open packets past ``expires_at`` and refund the unclaimed rest to whoever funded them."""
    now = now or timezone.now()
    done = 0
    for tid, pk in RedPacket.objects.filter(status=RedPacket.Status.OPEN, expires_at__lte=now).values_list(
            "tenant_id", "pk"):
        with transaction.atomic():
            p = RedPacket.objects.select_for_update().get(pk=pk)
            if p.status != RedPacket.Status.OPEN:
                continue
            rest = p.remaining_amount
            if rest:
                _wallet(p.currency).credit(tid, p.sender_id, rest, idempotency_key=f"redpacket:{p.pk}:refund",
                                           reason=_("红包过期退回"))
            p.refunded, p.remaining_amount, p.remaining_count = rest, 0, 0
            p.status = RedPacket.Status.EXPIRED
            p.save(update_fields=["refunded", "remaining_amount", "remaining_count", "status"])
            done += 1
    return done


# =====================================================================================================
# Content SOP
# =====================================================================================================


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


def _quiet(tenant_id: int) -> tuple[dt.time, dt.time] | None:
    q = engagement_config(tenant_id).get("quiet_hours")
    if not q:
        return None
    return dt.time.fromisoformat(q[0]), dt.time.fromisoformat(q[1])


def shift_out_of_quiet(when: dt.datetime, quiet: tuple[dt.time, dt.time] | None, tz_name: str) -> dt.datetime:
    """Move a send time inside the quiet hours (e.g. 22:00–08:00, may wrap midnight) to their end."""
    if quiet is None:
        return when
    start, end = quiet
    local = when.astimezone(ZoneInfo(tz_name))
    t = local.time()
    if start == end:
        return when
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return when
    day = local.date() if (start < end or t < end) else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, end, tzinfo=ZoneInfo(tz_name)).astimezone(dt.UTC)


def schedule_occurrences(schedule: ContentSchedule, since: dt.datetime, until: dt.datetime,
                         tz_name: str) -> list[dt.datetime]:
    """Planned times in ``(since, until]`` of a fixed or recurring schedule (local wall-clock times)."""
    if schedule.kind == ContentSchedule.Kind.FIXED:
        return [schedule.run_at] if schedule.run_at and since < schedule.run_at <= until else []
    if schedule.kind != ContentSchedule.Kind.RECURRING or schedule.time_of_day is None:
        return []
    tz = ZoneInfo(tz_name)
    out = []
    day = since.astimezone(tz).date()
    last = until.astimezone(tz).date()
    weekdays = set(schedule.weekdays or [])
    while day <= last:
        if not weekdays or day.weekday() in weekdays:
            t = dt.datetime.combine(day, schedule.time_of_day, tzinfo=tz).astimezone(dt.UTC)
            if since < t <= until:
                out.append(t)
        day += dt.timedelta(days=1)
    return out


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
    quiet = _quiet(tenant_id)
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
    from shequn.connectors.services import do_request_action
    from shequn.members.models import Identity

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


def upcoming_occurrences(tenant_id: int, *, now: dt.datetime | None = None, days: int = 7) -> list[dict[str, Any]]:
    """The console calendar: planned group posts (fixed and recurring) in the next ``days`` days."""
    now = now or timezone.now()
    tz = tenant_time_zone(tenant_id)
    quiet = _quiet(tenant_id)
    out = []
    for s in ContentSchedule.objects.filter(tenant_id=tenant_id, active=True).select_related("content"):
        for planned in schedule_occurrences(s, now, now + dt.timedelta(days=days), tz):
            eff = shift_out_of_quiet(planned, quiet, tz) if s.respect_quiet_hours else planned
            out.append({"at": eff, "planned": planned, "schedule_id": s.pk, "content": s.content.title,
                        "is_sales": s.content.is_sales, "kind": s.kind})
    return sorted(out, key=lambda r: r["at"])


# =====================================================================================================
# Health alerts
# =====================================================================================================


def do_health_check(tenant_id: int, *, now: dt.datetime | None = None) -> int:
    """Dead groups (fewer than ``dead_group_min_messages`` member messages in ``dead_group_days``) and
    previously active members (level ≥ ``quiet_member_min_level``) silent for ``quiet_member_days``.
    One alert per key (community + local date / member + last active day)."""
    now = now or timezone.now()
    h = engagement_config(tenant_id)["health"]
    tz = tenant_time_zone(tenant_id)
    today = local_day(now, tz)
    made = 0
    since = now - dt.timedelta(days=int(h["dead_group_days"]))
    for c in Community.objects.filter(tenant_id=tenant_id).exclude(stage=Community.Stage.ARCHIVED):
        if c.created_at > since:
            continue
        n = ActivityEvent.objects.filter(tenant_id=tenant_id, community_id=c.pk, occurred_at__gte=since,
                                         kind__in=["message", "reply"]).count()
        if n < int(h["dead_group_min_messages"]):
            made += _alert(tenant_id, HealthAlert.Kind.DEAD_GROUP, f"dead:{c.pk}:{today.isoformat()}",
                           community_id=c.pk,
                           message=_("社群「%(c)s」近 %(d)d 天只有 %(n)d 条成员消息") % {
                               "c": c.name, "d": int(h["dead_group_days"]), "n": n},
                           data={"messages": n})
    quiet_day = today - dt.timedelta(days=int(h["quiet_member_days"]))
    for s in MemberScore.objects.filter(tenant_id=tenant_id, level__gte=int(h["quiet_member_min_level"]),
                                        last_active_day__lt=quiet_day).select_related("member"):
        made += _alert(tenant_id, HealthAlert.Kind.GOING_QUIET, f"quiet:{s.member_id}:{s.last_active_day}",
                       member_id=s.member_id,
                       message=_("活跃成员「%(m)s」(等级 %(l)d) 自 %(d)s 起没有动静") % {
                           "m": s.member.display_name, "l": s.level, "d": s.last_active_day},
                       data={"level": s.level})
    return made


def _alert(tenant_id: int, kind: str, key: str, *, message: str, data: dict[str, Any],
           community_id: int | None = None, member_id: int | None = None) -> int:
    if HealthAlert.objects.filter(tenant_id=tenant_id, key=key).exists():
        return 0
    try:
        with transaction.atomic():
            HealthAlert.objects.create(tenant_id=tenant_id, kind=kind, key=key, community_id=community_id,
                                       member_id=member_id, message=message[:300], data=data)
    except IntegrityError:
        return 0
    return 1


# =====================================================================================================
# The activity consumer
# =====================================================================================================


def handle_activity(tenant_id: int, events: Sequence[ActivityEvent]) -> None:
    """Engagement's consumer: incremental scores + lifecycle for the batch's members, the reply queue,
    chat check-ins (the keyword, or ``check_in`` events) and points for messages (daily cap), invites
    and purchases. Idempotent: scores are recomputed (not incremented), reply tracks are unique per
    event, points carry per-event idempotency keys, check-ins are unique per day. Set-based: a batch
    costs a handful of queries, not a few per event."""
    members = sorted({e.member_id for e in events if e.member_id is not None})
    if not members:
        return
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
