"""Segments (人群): RFM scores per member and saved rules over lifecycle × tags × roles × habits,
evaluated live; and what a segment is used for — a coupon grant, a tier invitation, the audience of
an SOP schedule (through the audience registry of members, filled in ``shequn.wiring``).

**RFM** (from the members' lifetime rows, ``MemberSummary`` — the sums of the member-day facts, so
of paid orders): among the tenant's buyers, R = days since the last paid order (fewer is better),
F = paid orders, M = paid GMV in fen; each is scored 1–5 by quintile (5 = the best fifth). Equal
values share a score. Members who never bought have no score and match no RFM condition. A score
is read as a comparison with the quintile cut points (:class:`RfmCuts`).

**Habits**: active hours = the local hour of the member's messages in the last 30 days (any message
in the window ``from``..``to`` inclusive, wrapping past midnight when ``from > to``); preferred group
= the group where the member sent the most messages in the last 30 days; purchase = a paid order line
of the product. Lifetime orders and active days come from the lifetime rows; the habits from
``MemberHabit`` (stored every 15 minutes) while fresh, else from the events.

Every blank field of a rule matches everyone; the filled ones are combined with AND, in one query
over the members. Membership is computed on each read, so a member's new tag or role moves them in
or out at once, and a new order or activity as soon as its day is refreshed."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import ExtractHour, Power
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.activity.models import ActivityEvent, EventKind
from shequn.commerce import services as commerce_services
from shequn.commerce.models import Coupon, CouponTemplate, OrderLine, Product, ProductKind, TierGrant
from shequn.communities.models import ChatGroup, CommunityRole, RoleAssignment
from shequn.core.errors import Conflict, Invalid, NotFound, ShequnError
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.models import LifecycleStage, Member, MemberTag, Tag

from .models import MemberHabit, MemberSummary, Segment
from .services import tenant_zone

HABIT_WINDOW = dt.timedelta(days=30)
MESSAGE_KINDS = (EventKind.MESSAGE, EventKind.REPLY)


# -- RFM ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rfm:
    recency_days: int
    orders: int
    gmv_fen: int
    r: int
    f: int
    m: int


#: the lifetime facts of a member, one row each (``MemberSummary``, the sums of the member-day facts)
_RFM_COLUMNS = ("last_order_day", "orders", "gmv_fen")


@dataclass(frozen=True)
class RfmCuts:
    """The quintile cut points of the tenant's buyers now. By quintile, a value ``v`` of ``n`` buyers
    scores ⌈5 · c(v) / n⌉ with ``c(v)`` = the buyers with a value ≤ v (the best value scores 5, equal
    values share a score). Sorted ascending, the smallest value scoring ≥ k is the one at position
    ⌊(k − 1) · n / 5⌋ (0-based): so a score is the number of cut points at or below the value, plus
    one, and "R ≥ 4" is "last order on or after the cut". Recency is the last order day (fewer days
    since it are better); days after today count as today, as ``max(0, today − last)`` does."""

    today: dt.date
    #: per column of :data:`_RFM_COLUMNS`, score (2..5) → the least value scoring at least that
    #: (empty: no buyer)
    cuts: Mapping[str, Mapping[int, Any]]

    def score(self, column: str, value: Any) -> int:
        """The score of ``value`` (needs the cut points of every score)."""
        return 1 + sum(1 for c in self.cuts[column].values() if value >= c)

    def rfm(self, last: dt.date, orders: int, gmv_fen: int) -> Rfm:
        last = min(last, self.today)
        return Rfm(max(0, (self.today - last).days), orders, gmv_fen, self.score("last_order_day", last),
                   self.score("orders", orders), self.score("gmv_fen", gmv_fen))


def _buyers(tenant_id: int) -> Any:
    return MemberSummary.objects.filter(tenant_id=tenant_id, orders__gt=0)


def rfm_cuts(tenant_id: int, *, today: dt.date | None = None, columns: Iterable[str] = _RFM_COLUMNS,
             scores: Iterable[int] = (2, 3, 4, 5)) -> RfmCuts:
    """The cut points of ``columns`` for ``scores`` (the others are left out): a count of the buyers,
    then one indexed ``ORDER BY … LIMIT 1 OFFSET`` per cut point."""
    today = today or timezone.now().astimezone(tenant_zone(tenant_id)).date()
    n = _buyers(tenant_id).count()
    wanted = sorted(set(scores))
    cuts: dict[str, dict[int, Any]] = {}
    lifetime = MemberSummary.objects.filter(tenant_id=tenant_id)
    # each a range of one index: a buyer is a row with a last order day (the R order) or orders > 0
    # (F); for M, the rows of members who never bought all have 0 GMV, the least there is, so the
    # buyers' i-th value is the (i + those rows)-th of every row
    ordered = {"last_order_day": (lifetime.filter(last_order_day__isnull=False), 0),
               "orders": (_buyers(tenant_id), 0)}
    if "gmv_fen" in columns and n:
        ordered["gmv_fen"] = (lifetime, lifetime.filter(orders=0).count())
    for column in columns:
        cuts[column] = {}
        for k in wanted if n else ():
            rows, skip = ordered[column]
            value = rows.order_by(column).values_list(column, flat=True)[skip + (k - 1) * n // 5]
            cuts[column][k] = min(value, today) if column == "last_order_day" else value
    return RfmCuts(today, cuts)


def rfm_scores(tenant_id: int, *, today: dt.date | None = None, member_ids: Any = None) -> dict[int, Rfm]:
    """The R, F, M and 1–5 scores of every buyer (or of the buyers among ``member_ids``, a set or a
    subquery of ids), from the members' lifetime rows and the cut points."""
    cuts = rfm_cuts(tenant_id, today=today)
    rows = _buyers(tenant_id)
    if member_ids is not None:
        rows = rows.filter(member_id__in=member_ids)
    return {mid: cuts.rfm(last, orders, gmv) for mid, last, orders, gmv in
            rows.values_list("member_id", *_RFM_COLUMNS).iterator(chunk_size=5000)}


# -- rules ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """The structured rule of a segment (blank = any)."""

    lifecycle_stage: str = ""
    tag_id: int | None = None
    role: str = ""
    min_recency: int | None = None
    min_frequency: int | None = None
    min_monetary: int | None = None
    min_orders: int | None = None
    max_orders: int | None = None
    min_active_days: int | None = None
    active_hour_from: int | None = None
    active_hour_to: int | None = None
    preferred_group_id: int | None = None
    purchased_product_id: int | None = None
    exclude_tier_code: str = ""

    @classmethod
    def of(cls, segment: Segment) -> Rule:
        return cls(**{f.name: getattr(segment, f.name) for f in fields(cls)})


RULE_FIELDS = tuple(f.name for f in fields(Rule))
_SCORES = ("min_recency", "min_frequency", "min_monetary")
_COUNTS = ("min_orders", "max_orders", "min_active_days")


def _int_or_none(raw: Any, name: str, lo: int, hi: int) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise Invalid(_("%(field)s 必须是整数") % {"field": name}, details={"field": name})
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise Invalid(_("%(field)s 必须是整数") % {"field": name}, details={"field": name}) from None
    if not lo <= value <= hi:
        raise Invalid(_("%(field)s 须在 %(lo)s 到 %(hi)s 之间") % {"field": name, "lo": lo, "hi": hi},
                      details={"field": name})
    return value


def check_rule(tenant_id: int, data: Mapping[str, Any]) -> Rule:
    """Validate a rule from a form or the API: unknown stage/role/tag/group/product of another tenant
    are refused naming the field."""
    unknown = set(data) - set(RULE_FIELDS)
    if unknown:
        name = sorted(unknown)[0]
        raise Invalid(_("未知字段 %(field)s") % {"field": name}, details={"field": name})
    stage = str(data.get("lifecycle_stage") or "")
    if stage and stage not in LifecycleStage.values:
        raise Invalid(_("生命周期不存在"), details={"field": "lifecycle_stage"})
    role = str(data.get("role") or "")
    if role and role not in CommunityRole.values:
        raise Invalid(_("角色不存在"), details={"field": "role"})
    values: dict[str, Any] = {"lifecycle_stage": stage, "role": role}
    for name in _SCORES:
        values[name] = _int_or_none(data.get(name), name, 1, 5)
    for name in _COUNTS:
        values[name] = _int_or_none(data.get(name), name, 0, 1_000_000)
    for name in ("active_hour_from", "active_hour_to"):
        values[name] = _int_or_none(data.get(name), name, 0, 23)
    if (values["active_hour_from"] is None) != (values["active_hour_to"] is None):
        missing = "active_hour_to" if values["active_hour_to"] is None else "active_hour_from"
        raise Invalid(_("活跃时段须同时填写起止"), details={"field": missing})
    if values["min_orders"] is not None and values["max_orders"] is not None \
            and values["min_orders"] > values["max_orders"]:
        raise Invalid(_("累计订单下限大于上限"), details={"field": "max_orders"})
    for name, model, extra in (("tag_id", Tag, {}), ("preferred_group_id", ChatGroup, {}),
                               ("purchased_product_id", Product, {})):
        value = _int_or_none(data.get(name), name, 1, 2**63 - 1)
        if value is not None and not model.objects.filter(tenant_id=tenant_id, pk=value, **extra).exists():
            raise Invalid(_("%(field)s 不存在") % {"field": name}, details={"field": name})
        values[name] = value
    code = str(data.get("exclude_tier_code") or "").strip()
    if len(code) > 32:
        raise Invalid(_("等级代码过长"), details={"field": "exclude_tier_code"})
    values["exclude_tier_code"] = code
    return Rule(**values)


def _members(tenant_id: int, rule: Rule) -> tuple[QuerySet[Member], bool]:
    """The members matching ``rule`` as one query — the lifetime conditions (orders, active days, RFM)
    are subqueries over the members' lifetime rows, the habits over the stored habits when they are
    fresh — and whether the habits are still to be applied (computed live from the events)."""
    members = Member.objects.filter(tenant_id=tenant_id, merged_into__isnull=True, erased_at__isnull=True)
    if rule.lifecycle_stage:
        members = members.filter(lifecycle_stage=rule.lifecycle_stage)
    if rule.tag_id:
        members = members.filter(pk__in=MemberTag.objects.filter(tenant_id=tenant_id, tag_id=rule.tag_id)
                                 .values("member_id"))
    if rule.role:
        now = timezone.now()
        members = members.filter(pk__in=RoleAssignment.objects.filter(
            tenant_id=tenant_id, role=rule.role).filter(Q(until__isnull=True) | Q(until__gt=now)).values("member_id"))
    if rule.purchased_product_id:
        members = members.filter(pk__in=OrderLine.objects.filter(
            tenant_id=tenant_id, product_id=rule.purchased_product_id, order__paid_at__isnull=False)
            .values("order__member_id"))
    if rule.exclude_tier_code:
        members = members.exclude(pk__in=TierGrant.objects.filter(
            tenant_id=tenant_id, status=TierGrant.Status.ACTIVE, product__tier_code=rule.exclude_tier_code)
            .values("member_id"))
    # the lifetime conditions as one filter of the member's row (one semi-join): a member without a
    # row has no order, no active day and no score, so fails every condition but an upper bound
    lifetime: dict[str, Any] = {}
    wanted = {c: getattr(rule, n) for c, n in zip(_RFM_COLUMNS, _SCORES, strict=True) if getattr(rule, n) is not None}
    if wanted:  # buyers only: members who never bought have no score
        cuts = rfm_cuts(tenant_id, columns=wanted, scores={k for k in wanted.values() if k > 1})
        lifetime["orders__gt"] = 0
        lifetime.update({f"{column}__gte": cuts.cuts[column][k] for column, k in wanted.items() if k > 1})
    if rule.min_orders:
        lifetime["orders__gte"] = rule.min_orders
    if rule.min_active_days:
        lifetime["active_days__gte"] = rule.min_active_days
    rows = MemberSummary.objects.filter(tenant_id=tenant_id)
    if lifetime:
        if rule.max_orders is not None:
            lifetime["orders__lte"] = rule.max_orders
        members = members.filter(pk__in=rows.filter(**lifetime).values("member_id"))
    elif rule.max_orders is not None:  # members without a row have 0 orders: they match
        members = members.exclude(pk__in=rows.filter(orders__gt=rule.max_orders).values("member_id"))
    if not _habits(rule):
        return members, False
    stored = _stored_habits(tenant_id)
    if stored is None:
        return members, True
    if rule.active_hour_from is not None and rule.active_hour_to is not None:
        mask = sum(1 << h for h in _hours(rule.active_hour_from, rule.active_hour_to))
        members = members.filter(pk__in=stored.annotate(hit=F("hours").bitand(mask)).filter(hit__gt=0)
                                 .values("member_id"))
    if rule.preferred_group_id:
        members = members.filter(pk__in=stored.filter(group_id=rule.preferred_group_id).values("member_id"))
    return members, False


def _habits(rule: Rule) -> bool:
    return (rule.active_hour_from is not None and rule.active_hour_to is not None) or bool(rule.preferred_group_id)


def segment_member_ids(tenant_id: int, rule: Rule) -> set[int]:
    """The members matching ``rule`` now (tenant-scoped; merged-away and erased members excluded)."""
    members, live = _members(tenant_id, rule)
    ids = set(members.values_list("pk", flat=True))
    if live and rule.active_hour_from is not None and rule.active_hour_to is not None:
        ids &= _active_at_hours(tenant_id, rule.active_hour_from, rule.active_hour_to)
    if live and rule.preferred_group_id:
        ids &= _preferring(tenant_id, rule.preferred_group_id)
    return ids


def segment_count(tenant_id: int, rule: Rule) -> int:
    """How many members match ``rule`` now: counted by the database (unless the habits are live)."""
    members, live = _members(tenant_id, rule)
    return len(segment_member_ids(tenant_id, rule)) if live else members.count()


# -- habits ---------------------------------------------------------------------------------------

#: stored habits older than this are not read (the refresh runs every 15 minutes; three missed runs
#: mean it is failing): the habits are then computed from the events, as before the first refresh
HABITS_STALE_AFTER = dt.timedelta(minutes=45)


def _messages(tenant_id: int, now: dt.datetime | None = None) -> Any:
    return ActivityEvent.objects.filter(tenant_id=tenant_id, kind__in=MESSAGE_KINDS, member_id__isnull=False,
                                        occurred_at__gte=(now or timezone.now()) - HABIT_WINDOW)


def _hours(start: int, end: int) -> list[int]:
    return list(range(start, end + 1)) if start <= end else [*range(start, 24), *range(0, end + 1)]


def _active_at_hours(tenant_id: int, start: int, end: int) -> set[int]:
    return set(_messages(tenant_id).annotate(h=ExtractHour("occurred_at", tzinfo=tenant_zone(tenant_id)))
               .filter(h__in=_hours(start, end)).values_list("member_id", flat=True).distinct())


def _preferring(tenant_id: int, group_id: int) -> set[int]:
    return {mid for mid, gid in _preferred_groups(tenant_id).items() if gid == group_id}


def _preferred_groups(tenant_id: int, now: dt.datetime | None = None) -> dict[int, int]:
    """Each member's group with the most messages in the window (ties: the smaller group id)."""
    counts = (_messages(tenant_id, now).filter(group_id__isnull=False).values("member_id", "group_id")
              .annotate(n=Count("pk")).order_by())
    sql, params = counts.query.sql_with_params()
    with connection.cursor() as cursor:  # the first of each member's groups by count: one grouped scan
        cursor.execute("SELECT member_id, group_id FROM (SELECT member_id, group_id, ROW_NUMBER() OVER ("  # noqa: S608 (the ORM's SQL, values bound)
                       f"PARTITION BY member_id ORDER BY n DESC, group_id) AS r FROM ({sql}) c) ranked WHERE r = 1",
                       params)
        return dict(cursor.fetchall())


def _stored_habits(tenant_id: int) -> QuerySet[MemberHabit] | None:
    """The tenant's stored habits, or None when there are none fresh. Each refresh writes a marker
    row (``member_id`` 0, no hour, no group), so a tenant without messages still has a fresh refresh."""
    since = timezone.now() - HABITS_STALE_AFTER
    rows = MemberHabit.objects.filter(tenant_id=tenant_id)
    return rows if rows.filter(member_id=0, computed_at__gte=since).exists() else None


def do_refresh_habits(tenant_id: int, *, now: dt.datetime | None = None) -> int:
    """Store every member's habits as of ``now`` (:class:`MemberHabit`: the local hours of their
    messages of the last 30 days as bits, and their preferred group — what the live conditions
    compute) and replace the tenant's rows in one transaction. Run by ``analytics.tasks.refresh_habits``
    every 15 minutes; returns the members with a row."""
    now = now or timezone.now()
    zone = tenant_zone(tenant_id)
    hours = dict(_messages(tenant_id, now).values("member_id").annotate(
        bits=Sum(Power(2, ExtractHour("occurred_at", tzinfo=zone)), distinct=True)).values_list("member_id", "bits"))
    groups = _preferred_groups(tenant_id, now)
    rows = [MemberHabit(tenant_id=tenant_id, member_id=0, hours=0, group_id=0, computed_at=now)]
    rows += [MemberHabit(tenant_id=tenant_id, member_id=mid, hours=int(hours.get(mid) or 0),
                         group_id=groups.get(mid, 0), computed_at=now) for mid in sorted(set(hours) | set(groups))]
    with transaction.atomic():
        MemberHabit.objects.filter(tenant_id=tenant_id).delete()
        MemberHabit.objects.bulk_create(rows, batch_size=5000)
    return len(rows) - 1


def segments(tenant_id: int) -> Any:
    return Segment.objects.filter(tenant_id=tenant_id).order_by("name", "pk")


def get_segment(tenant_id: int, segment_id: int) -> Segment:
    seg = Segment.objects.filter(tenant_id=tenant_id, pk=segment_id).first()
    if seg is None:
        raise NotFound(_("人群不存在"), details={"field": "segment_id"})
    return seg


def segment_members(tenant_id: int, segment_id: int, *, offset: int = 0, limit: int | None = None
                    ) -> list[dict[str, Any]]:
    """The members of a saved segment in id order with their RFM, for the list (a window of
    ``limit`` from ``offset``) and the export (all; phones masked)."""
    rule = Rule.of(get_segment(tenant_id, segment_id))
    end = None if limit is None else offset + limit
    columns = ("pk", "display_name", "phone", "lifecycle_stage")
    members, live = _members(tenant_id, rule)
    if live:
        ids = sorted(segment_member_ids(tenant_id, rule))[offset:end]
        rows = [r for i in range(0, len(ids), 1000) for r in Member.objects.filter(
            tenant_id=tenant_id, pk__in=ids[i:i + 1000]).order_by("pk").values_list(*columns)]
    else:
        rows = list(members.order_by("pk")[offset:end].values_list(*columns))
    scores = rfm_scores(tenant_id, member_ids=[r[0] for r in rows]) if len(rows) <= 1000 else rfm_scores(tenant_id)
    out = []
    for mid, name, phone, stage in rows:
        s = scores.get(mid)
        out.append({"member_id": mid, "display_name": name, "phone": mask_phone(phone),
                    "lifecycle_stage": str(LifecycleStage(stage).label) if stage in LifecycleStage.values else stage,
                    "orders": s.orders if s else 0, "gmv_yuan": f"{(s.gmv_fen if s else 0) / 100:.2f}",
                    "rfm": f"{s.r}{s.f}{s.m}" if s else ""})
    return out


def mask_phone(phone: str) -> str:
    """138****5678: the middle digits of a phone never leave in an export."""
    digits = phone or ""
    if len(digits) < 7:
        return "*" * len(digits)
    return f"{digits[:3]}****{digits[-4:]}"


# -- writers --------------------------------------------------------------------------------------

def check_segment(tenant_id: int, name: str, data: Mapping[str, Any], *, segment_id: int | None = None
                  ) -> tuple[str, Rule]:
    name = (name or "").strip()
    if not name or len(name) > 80:
        raise Invalid(_("请填写人群名称 (最多 80 字)"), details={"field": "name"})
    clash = Segment.objects.filter(tenant_id=tenant_id, name=name)
    if segment_id is not None:
        clash = clash.exclude(pk=segment_id)
    if clash.exists():
        raise Conflict(_("已有同名人群"), code="duplicate", details={"field": "name"})
    return name, check_rule(tenant_id, data)


@transaction.atomic
def do_save_segment(principal: Principal, name: str, data: Mapping[str, Any], *, segment_id: int | None = None
                    ) -> Segment:
    """Create a segment, or change the name and rule of ``segment_id``."""
    tid = principal.tenant_id
    name, rule = check_segment(tid, name, data, segment_id=segment_id)
    seg = get_segment(tid, segment_id) if segment_id is not None else Segment(tenant_id=tid)
    seg.name = name
    for key in RULE_FIELDS:
        setattr(seg, key, getattr(rule, key))
    seg.save()
    do_audit(principal, "analytics.segment.save", "Segment", seg.pk, data={"name": name})
    return seg


def do_delete_segment(principal: Principal, segment_id: int) -> None:
    seg = get_segment(principal.tenant_id, segment_id)
    do_audit(principal, "analytics.segment.delete", "Segment", seg.pk, data={"name": seg.name})
    seg.delete()


@dataclass
class GrantResult:
    granted: int = 0
    already: int = 0
    refused: Counter[str] | None = None


def do_grant_coupon_to_segment(principal: Principal, segment_id: int, template_id: int) -> GrantResult:
    """Grant one coupon of ``template_id`` to every member of the segment who holds none yet —
    idempotent: a second grant gives only to members who joined the segment since. Each grant goes
    through commerce's ``do_claim_coupon`` (validity, new-customer rule, per-member limit, stock) in
    its own savepoint; a refusal is counted by reason and skips that member."""
    tid = principal.tenant_id
    seg = get_segment(tid, segment_id)
    if not CouponTemplate.objects.filter(tenant_id=tid, pk=template_id, is_share=False).exists():
        raise NotFound(_("优惠券不存在"), details={"field": "template_id"})
    ids = segment_member_ids(tid, Rule.of(seg))
    holding = set(Coupon.objects.filter(tenant_id=tid, template_id=template_id, owner_id__in=ids)
                  .values_list("owner_id", flat=True))
    result = GrantResult(already=len(holding), refused=Counter())
    for mid in sorted(ids - holding):
        try:
            with transaction.atomic():
                commerce_services.do_claim_coupon(principal, template_id, member_id=mid)
            result.granted += 1
        except ShequnError as exc:
            assert result.refused is not None
            result.refused[exc.code] += 1
            if exc.code == "sold_out":
                break
    do_audit(principal, "analytics.segment.grant_coupon", "Segment", seg.pk,
             data={"template_id": template_id, "granted": result.granted})
    return result


def do_invite_segment_to_tier(principal: Principal, segment_id: int, product_id: int) -> int:
    """Invite every member of the segment to a paid tier (commerce's ``do_invite_to_tier``: one
    invitation per member and tier, so it is idempotent). Returns how many invitations are new."""
    seg = get_segment(principal.tenant_id, segment_id)
    if not Product.objects.filter(tenant_id=principal.tenant_id, pk=product_id, kind=ProductKind.TIER).exists():
        raise NotFound(_("付费等级不存在"), details={"field": "product_id"})
    ids = segment_member_ids(principal.tenant_id, Rule.of(seg))
    return commerce_services.do_invite_to_tier(principal, product_id, ids, source=f"{_('人群')}:{seg.name}")


def audience_member_ids(tenant_id: int, segment_id: int) -> set[int]:
    """The audience resolver registered with ``members.audiences`` (in ``shequn.wiring``): the members
    of a saved segment; an unknown segment is an empty audience."""
    seg = Segment.objects.filter(tenant_id=tenant_id, pk=segment_id).first()
    return segment_member_ids(tenant_id, Rule.of(seg)) if seg is not None else set()


def audience_choices(tenant_id: int) -> list[tuple[int, str]]:
    return list(segments(tenant_id).values_list("pk", "name"))


def count_by_segment(tenant_id: int, segment_ids: Iterable[int]) -> dict[int, int]:
    """Live counts for a list page."""
    by_id = {s.pk: s for s in Segment.objects.filter(tenant_id=tenant_id, pk__in=list(segment_ids))}
    return {pk: segment_count(tenant_id, Rule.of(s)) for pk, s in by_id.items()}

