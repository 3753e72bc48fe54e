"""Engagement scores (set-based SQL, the same formula as :mod:`shequn.engagement.scoring`), lifecycle
stages and the relationship ladder (suggestions an operator confirms)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Case, Exists, OuterRef, Q, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.activity.models import ActivityEvent
from shequn.communities.models import Membership
from shequn.core.errors import Conflict, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.models import LifecycleStage, Member

from .. import scoring
from ..models import Decision, LadderSuggestion, MemberScore
from ..selectors import engagement_config, tenant_time_zone
from ..streaks import day_bounds, local_day


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
