"""Reach of fission (裂变传播): how far invitations travel, although commissions stay one level.

The invite graph is referrals' ``ReferralBinding`` (one row per referred member: who brought them).
Chains of bindings form a forest; its **roots** are referrers nobody referred. Definitions (also in
``docs/subsystems/analytics.md``):

* **K-factor of a campaign** = members bound through the campaign's links ÷ the campaign's sharers
  (members holding a member invite link of the campaign, whether or not it brought anyone).
* **K-factor of an inviter** = the members they brought directly (their first generation).
* **network reach** of a member = every member reached through chains of invites starting at them
  (all generations); **depth** = the longest chain below them.
* **viral coefficient** (tenant) = referred ÷ (roots + referred): the K for which a seed population
  amplified geometrically (1 + K + K² + … = 1 ÷ (1 − K)) would give the observed forest size.

Reach is computed with recursive CTEs over the bindings (``WITH RECURSIVE``, the same SQL on SQLite
and PostgreSQL), bounded by :data:`MAX_DEPTH` generations, and never revisiting the starting member
(so a cycle of bindings cannot loop). Walking the whole forest takes seconds at 100k members, so
:func:`do_refresh_reach` (scheduled every 5 minutes) stores each member's place in :class:`ReachNode`
and the dashboards read that table; one member's network (:func:`member_reach`) is walked live."""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from shequn.members.models import Member
from shequn.referrals.models import InviteLink, LinkKind, ReferralBinding

from .models import ReachNode

MAX_DEPTH = 64

_B = ReferralBinding._meta.db_table


def _rows(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


#: the recursive chain ``(ancestor, member, depth)``: every binding (``{start}`` narrows the first
#: generation), then each generation's referees, never back to the ancestor, at most MAX_DEPTH deep
_CHAIN = """
    WITH RECURSIVE chain(ancestor, member, depth) AS (
        SELECT b.referrer_id, b.member_id, 1 FROM "{b}" b WHERE b.tenant_id = %s {start}
        UNION ALL
        SELECT c.ancestor, b.member_id, c.depth + 1 FROM chain c
        JOIN "{b}" b ON b.tenant_id = %s AND b.referrer_id = c.member
        WHERE c.depth < %s AND b.member_id <> c.ancestor
    )"""
# the SQL below is built once from constants (the table name); every value is a parameter
_ROOTS = f'AND b.referrer_id NOT IN (SELECT member_id FROM "{_B}" WHERE tenant_id = %s)'  # noqa: S608
SQL_FOREST_MEMBERS = _CHAIN.format(b=_B, start=_ROOTS) + """
    SELECT member, MIN(depth) FROM chain GROUP BY member"""  # noqa: S608
SQL_ALL_REFERRERS = _CHAIN.format(b=_B, start="") + """
    SELECT ancestor, COUNT(DISTINCT member), MAX(depth),
           COUNT(DISTINCT CASE WHEN depth = 1 THEN member END),
           COUNT(DISTINCT CASE WHEN depth = 2 THEN member END)
    FROM chain GROUP BY ancestor"""  # noqa: S608
SQL_MEMBER = _CHAIN.format(b=_B, start="AND b.referrer_id = %s") + """
    SELECT depth, COUNT(DISTINCT member) FROM chain GROUP BY depth ORDER BY depth"""  # noqa: S608
SQL_MEMBER_REACH = _CHAIN.format(b=_B, start="AND b.referrer_id = %s") + """
    SELECT COUNT(DISTINCT member) FROM chain"""  # noqa: S608


def _names(tenant_id: int, ids: list[int]) -> dict[int, str]:
    return dict(Member.objects.filter(tenant_id=tenant_id, pk__in=ids).values_list("pk", "display_name"))


def kfactor_by_campaign(tenant_id: int) -> list[dict[str, Any]]:
    """Per campaign (``""`` = bound without a campaign link): sharers, referred members, K-factor."""
    referred = dict(ReferralBinding.objects.filter(tenant_id=tenant_id).values_list("link__campaign")
                    .annotate(n=Count("pk")))
    referred = {(k or ""): v for k, v in referred.items()}
    sharers = dict(InviteLink.objects.filter(tenant_id=tenant_id, kind=LinkKind.MEMBER, member__isnull=False)
                   .values_list("campaign").annotate(n=Count("member_id", distinct=True)))
    out = []
    for campaign in sorted(set(referred) | set(sharers)):
        s, r = int(sharers.get(campaign, 0)), int(referred.get(campaign, 0))
        out.append({"campaign": campaign, "sharers": s, "referred": r, "k_factor": round(r / s, 4) if s else None})
    out.sort(key=lambda row: (-row["referred"], row["campaign"]))
    return out


def do_refresh_reach(tenant_id: int) -> int:
    """Recompute the tenant's :class:`ReachNode` rows from the bindings (two recursive CTEs: the
    generation of every member below a root, every ancestor's reach) and replace them in one
    transaction; returns the number of nodes. Run by ``analytics.tasks.refresh_reach``."""
    now = timezone.now()
    generation = {int(m): int(d) for m, d in _rows(SQL_FOREST_MEMBERS, [tenant_id, tenant_id, tenant_id, MAX_DEPTH])}
    stats = {int(a): (int(r), int(d), int(d1), int(d2))
             for a, r, d, d1, d2 in _rows(SQL_ALL_REFERRERS, [tenant_id, tenant_id, MAX_DEPTH])}
    pairs = list(ReferralBinding.objects.filter(tenant_id=tenant_id).values_list("member_id", "referrer_id"))
    referred = {m for m, _r in pairs}
    nodes = referred | {r for _m, r in pairs}
    rows = []
    for m in sorted(nodes):
        reach_, depth, d1, d2 = stats.get(m, (0, 0, 0, 0))
        rows.append(ReachNode(tenant_id=tenant_id, member_id=m,
                              generation=generation.get(m, -1) if m in referred else 0,
                              direct=d1, second=d2, reach=reach_, depth=depth, computed_at=now))
    with transaction.atomic():
        ReachNode.objects.filter(tenant_id=tenant_id).delete()
        ReachNode.objects.bulk_create(rows, batch_size=5000)
    return len(rows)


def summary(tenant_id: int) -> dict[str, Any]:
    """The forest as of the last refresh: roots, referred members, the members per generation (1 =
    brought by a root), the deepest chain and the viral coefficient."""
    nodes = ReachNode.objects.filter(tenant_id=tenant_id)
    agg = nodes.aggregate(roots=Count("pk", filter=Q(generation=0)), referred=Count("pk", filter=~Q(generation=0)),
                          inviters=Count("pk", filter=Q(direct__gt=0)), computed_at=Max("computed_at"))
    generations = list(nodes.filter(generation__gte=1).values_list("generation").annotate(n=Count("pk"))
                       .order_by("generation"))
    roots, referred, inviters = agg["roots"], agg["referred"], agg["inviters"]
    total = roots + referred
    return {
        "roots": roots, "referred": referred, "inviters": inviters,
        "max_depth": max((int(d) for d, _n in generations), default=0),
        "generations": [{"depth": int(d), "members": int(n)} for d, n in generations],
        "viral_coefficient": round(referred / total, 4) if total else None,
        "k_factor": round(referred / inviters, 4) if inviters else None,
        "computed_at": agg["computed_at"],
    }


def top_referrers(tenant_id: int, *, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
    """Referrers by network reach (then member id), as of the last refresh: direct (their K), second
    generation, reach and depth (an index scan of ``analytics_reach_top_idx``)."""
    rows = list(ReachNode.objects.filter(tenant_id=tenant_id, reach__gt=0).order_by("-reach", "member_id")
                .values_list("member_id", "direct", "second", "reach", "depth")[offset:offset + limit])
    names = _names(tenant_id, [r[0] for r in rows])
    return [{"member_id": m, "name": names.get(m, ""), "direct": d1, "second": d2, "reach": r, "depth": d}
            for m, d1, d2, r, d in rows]


def member_reach(tenant_id: int, member_id: int) -> dict[str, Any]:
    """One member's network: who brought them, members per generation below them, reach and depth."""
    generations = [(int(d), int(n)) for d, n in _rows(SQL_MEMBER, [tenant_id, member_id, tenant_id, MAX_DEPTH])]
    referrer = (ReferralBinding.objects.filter(tenant_id=tenant_id, member_id=member_id)
                .values_list("referrer_id", flat=True).first())
    reach = int(_rows(SQL_MEMBER_REACH, [tenant_id, member_id, tenant_id, MAX_DEPTH])[0][0])
    return {"member_id": member_id, "referred_by": referrer, "direct": dict(generations).get(1, 0),
            "reach": reach, "depth": max((d for d, _n in generations), default=0),
            "generations": [{"depth": d, "members": n} for d, n in generations]}
