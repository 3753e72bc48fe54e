"""Reads of the moderation app. Every function takes ``tenant_id``; another tenant's id is not found."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.communities.models import Community, CommunityRole, RoleAssignment
from shequn.core.errors import NotFound

from .classifier import NaiveBayes, default_model
from .models import ModerationPolicy, RateAlert, Strike, TenantModel, Violation
from .pipeline import Moderator, external_checker
from .rules import cached_pack

#: how long any strike keeps a member out of lotteries and red packets
STANDING_WINDOW = dt.timedelta(days=7)

_MODERATORS: dict[tuple[int, int | None], tuple[tuple[Any, ...], Moderator]] = {}
_TENANT_MODELS: dict[int, tuple[dt.datetime, NaiveBayes]] = {}


def policy_for(tenant_id: int, community_id: int) -> ModerationPolicy:
    """The community's policy, or an unsaved one with the defaults."""
    policy = ModerationPolicy.objects.filter(tenant_id=tenant_id, community_id=community_id).first()
    if policy is None:
        policy = ModerationPolicy(tenant_id=tenant_id, community_id=community_id)
    return policy


def tenant_model(tenant_id: int) -> NaiveBayes:
    """The tenant's retrained classifier, or the shipped one."""
    row = TenantModel.objects.filter(tenant_id=tenant_id).only("trained_at").first()
    if row is None:
        return default_model()
    cached = _TENANT_MODELS.get(tenant_id)
    if cached is not None and cached[0] == row.trained_at:
        return cached[1]
    model_json = TenantModel.objects.filter(pk=row.pk).values_list("model_json", flat=True).first()
    model = NaiveBayes.from_json(model_json) if model_json else default_model()
    _TENANT_MODELS[tenant_id] = (row.trained_at, model)
    return model


#: where the operator's own campaign texts come from: ``fn(tenant_id) -> texts``. Filled at start-up by
#: ``ModerationConfig.ready`` with engagement's content library (moderation does not import engagement)
_CAMPAIGN_SOURCES: list[Callable[[int], Iterable[str]]] = []


def register_campaign_source(fn: Callable[[int], Iterable[str]]) -> None:
    if fn not in _CAMPAIGN_SOURCES:
        _CAMPAIGN_SOURCES.append(fn)


def campaign_texts(tenant_id: int) -> tuple[str, ...]:
    """The operator's own campaign texts (issue 16), e.g. the bodies of the tenant's content-SOP items:
    a member relaying one word for word is not an advertiser (signal ``campaign_text``). At most 500,
    in the sources' order; one query per source per moderated batch."""
    out: list[str] = []
    for source in _CAMPAIGN_SOURCES:
        out.extend(t for t in source(tenant_id) if t)
    return tuple(out[:500])


def moderator_for(tenant_id: int, community_id: int | None, policy: ModerationPolicy | None = None) -> Moderator:
    """A moderator with the community's pack (default + its own lines) and the tenant's model.
    Cached per process until the policy or the model changes. Raises ``RulePackError`` for a pack
    that no longer compiles (it was validated at save time)."""
    if community_id is not None and policy is None:
        policy = policy_for(tenant_id, community_id)
    rules_text = policy.rules_text if policy is not None else ""
    model = tenant_model(tenant_id)
    external = policy is not None and policy.external_check
    campaign = campaign_texts(tenant_id)
    key = (rules_text, id(model), external, external_checker(), hash(campaign))
    cached = _MODERATORS.get((tenant_id, community_id))
    if cached is not None and cached[0] == key:
        return cached[1]
    moderator = Moderator(cached_pack(rules_text), model, external=external_checker() if external else None,
                          campaign_texts=campaign)
    _MODERATORS[(tenant_id, community_id)] = (key, moderator)
    return moderator


def moderator_for_community_id(community_id: int) -> Moderator:
    """For the operator CLI (``--community ID``): resolves the community's tenant itself."""
    community = Community.objects.filter(pk=community_id).only("tenant_id").first()
    if community is None:
        raise NotFound(_("社群不存在: %(id)s") % {"id": community_id})
    return moderator_for(community.tenant_id, community.pk)


def violations(tenant_id: int, *, status: str | None = None, community_id: int | None = None,
               member_id: int | None = None) -> QuerySet[Violation]:
    qs = Violation.objects.filter(tenant_id=tenant_id)
    if status:
        qs = qs.filter(status=status)
    if community_id is not None:
        qs = qs.filter(community_id=community_id)
    if member_id is not None:
        qs = qs.filter(member_id=member_id)
    return qs


def review_queue(tenant_id: int) -> QuerySet[Violation]:
    return violations(tenant_id, status=Violation.Status.PENDING).order_by("created_at")


def get_violation(tenant_id: int, violation_id: int) -> Violation:
    v = Violation.objects.filter(tenant_id=tenant_id, pk=violation_id).first()
    if v is None:
        raise NotFound(_("违规记录不存在"), details={"field": "violation_id"})
    return v


def violations_per_day(tenant_id: int, *, community_id: int | None = None, days: int = 30,
                       now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Health signal: ``[{community_id, day, violations, actioned}]`` for the last ``days`` days
    (excluding reversed ones, which were mistakes)."""
    since = (now or timezone.now()) - dt.timedelta(days=days)
    qs = Violation.objects.filter(tenant_id=tenant_id, occurred_at__gte=since).exclude(
        status=Violation.Status.REVERSED)
    if community_id is not None:
        qs = qs.filter(community_id=community_id)
    rows = (
        qs.annotate(day=TruncDate("occurred_at")).values("community_id", "day")
        .annotate(violations=Count("id")).order_by("day", "community_id")
    )
    return [dict(r) for r in rows]


def rate_alerts(tenant_id: int, *, community_id: int | None = None) -> QuerySet[RateAlert]:
    qs = RateAlert.objects.filter(tenant_id=tenant_id)
    if community_id is not None:
        qs = qs.filter(community_id=community_id)
    return qs.order_by("-day")


def standing_problem(tenant_id: int, member_id: int, now: dt.datetime | None = None) -> str | None:
    """Why a member is not in good standing in the tenant, in Chinese, or None. Registered with
    engagement (``register_standing_check``) so lotteries and red packets refuse such members.
    Unrevoked strikes only (a reversed violation restores standing): a ban; a mute still running;
    any strike (warning, mute, removal) in the last :data:`STANDING_WINDOW`."""
    now = now or timezone.now()
    strikes = Strike.objects.filter(tenant_id=tenant_id, member_id=member_id, revoked_at__isnull=True)
    if strikes.filter(kind=Strike.Kind.BAN).exists():
        return _("因违反群规已被封禁")
    muted_until = strikes.filter(kind=Strike.Kind.MUTE, until__gt=now).order_by("-until").values_list(
        "until", flat=True).first()
    if muted_until is not None:
        local = timezone.localtime(muted_until)
        return _("因违反群规正在禁言中 (至 %(until)s)") % {"until": local.strftime("%Y-%m-%d %H:%M")}
    recent = strikes.filter(created_at__gt=now - STANDING_WINDOW).order_by("-created_at").first()
    if recent is not None:
        return _("近 %(days)d 天内因违反群规受过处罚 (%(kind)s)") % {
            "days": STANDING_WINDOW.days, "kind": Strike.Kind(recent.kind).label}
    return None


#: community roles that make a member staff for moderation (exempt under ``exempt_staff``, like a
#: platform admin): the owner (群主) and customer service (客服)
STAFF_ROLES = (CommunityRole.OWNER, CommunityRole.CUSTOMER_SERVICE)


def is_community_staff(tenant_id: int, community_id: int, member_id: int, when: dt.datetime) -> bool:
    """Whether the member holds a staff role (:data:`STAFF_ROLES`) in the community at ``when`` —
    so staff are exempt even when the platform does not mark the sender as an admin."""
    return RoleAssignment.objects.filter(
        tenant_id=tenant_id, community_id=community_id, member_id=member_id, role__in=STAFF_ROLES,
        since__lte=when).filter(Q(until__isnull=True) | Q(until__gt=when)).exists()


def running_mutes(tenant_id: int, *, member_id: int | None = None, violation_id: int | None = None,
                  now: dt.datetime | None = None) -> QuerySet[Strike]:
    """Mutes still running (unrevoked, ending in the future), on every platform: the member page and
    the violation show them with the time left and a one-click lift."""
    qs = Strike.objects.filter(tenant_id=tenant_id, kind=Strike.Kind.MUTE, revoked_at__isnull=True,
                               until__gt=now or timezone.now()).select_related("community", "violation")
    if member_id is not None:
        qs = qs.filter(member_id=member_id)
    if violation_id is not None:
        qs = qs.filter(violation_id=violation_id)
    return qs.order_by("until")


def mute_time_left(strike: Strike, now: dt.datetime | None = None) -> dt.timedelta | None:
    """How long a mute still runs, or None when it is over (ended, lifted or revoked)."""
    now = now or timezone.now()
    if strike.kind != Strike.Kind.MUTE or strike.revoked_at is not None or not strike.until or strike.until <= now:
        return None
    return strike.until - now
