"""REST API of the moderation engine (mounted at ``/api/v1/moderation/``).

No ``from __future__ import annotations`` here: django-ninja resolves the body schemas of handlers
wrapped by ``@idempotent`` from real annotation objects."""


import datetime as dt
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Router, Schema

from shequn.communities.models import Community
from shequn.core.errors import NotFound
from shequn.core.http import ERRORS, BodyIn, Id, idempotent, max_len, principal, require
from shequn.core.pagination import KeysetPagination, paginate

from . import selectors, services
from .models import Decision, FinalStep, MemberReport, Violation
from .pipeline import MessageContext

router = Router(tags=["moderation"])


class VerdictOut(Schema):
    verdict: str
    score: float
    category: str | None = None
    reasons: list[dict[str, Any]]
    #: the context says the sender is staff or a role holder: the engine would record the message as
    #: exempt and act on nothing (the verdict is what the text and the rest of the context score)
    exempt: bool = False


#: the longest message text the API classifies, appeals with or reports about
MAX_TEXT = 10_000


class ContextIn(BodyIn):
    """What the product knows about the sender (issue 16), all optional."""

    member_joined_days: float | None = Field(None, ge=0, le=100_000)
    message_index: int | None = Field(None, ge=0, le=10**9)
    #: the member's membership records no inviter and a public way in (QR code, live stream, platform)
    joined_without_invite: bool = False
    #: other groups where the same text was posted in the last minutes
    same_text_other_groups: int = Field(0, ge=0, le=10_000)
    messages_last_minute: int = Field(0, ge=0, le=100_000)
    mentions: int = Field(0, ge=0, le=10_000)
    #: staff or a role holder: exempt from actions
    sender_is_staff: bool = False


class ClassifyIn(BodyIn):
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    community_id: Id | None = None
    member_joined_days: float | None = Field(None, ge=0, le=100_000)
    message_index: int | None = Field(None, ge=0, le=10**9)
    context: ContextIn | None = None


class ViolationOut(Schema):
    id: int
    community_id: int | None
    group_id: int | None
    member_id: int | None
    text: str
    verdict: str
    score: float
    category: str
    rule_id: str
    reasons: list[dict[str, Any]]
    status: str
    actions: list[dict[str, Any]]
    ladder_step: str
    appeal_text: str
    appealed_at: dt.datetime | None
    reviewed_by: str
    occurred_at: dt.datetime


class ViolationReviewIn(BodyIn):
    decision: Literal["confirm", "reverse"]
    note: str = Field("", max_length=max_len(Violation, "review_note"))


class AppealIn(BodyIn):
    text: str = Field(min_length=1, max_length=MAX_TEXT)


def _bounded(name: str) -> Any:
    low, high = services.POLICY_BOUNDS[name]
    return Field(None, ge=low, le=high)


DecisionName = Literal["allow", "review", "delete", "delete_warn", "mute", "kick", "ban"]
RoleName = Literal["owner", "advocate", "cs", "content", "guest"]
assert set(DecisionName.__args__) == set(Decision.values)  # type: ignore[attr-defined]
assert {"kick", "ban"} == set(FinalStep.values)


class PolicyIn(BodyIn):
    """Fields left out (or null) keep their value."""

    enabled: bool | None = None
    dry_run: bool | None = None
    rules_text: str | None = Field(None, max_length=100_000)
    on_ad: DecisionName | None = None
    on_review: DecisionName | None = None
    warn_limit: int | None = _bounded("warn_limit")
    warn_window_days: int | None = _bounded("warn_window_days")
    mute_hours: int | None = _bounded("mute_hours")
    final_step: Literal["kick", "ban"] | None = None
    exempt_roles: list[RoleName] | None = Field(None, max_length=10)
    exempt_role_holders: bool | None = None
    exempt_staff: bool | None = None
    notify_on_reversal: bool | None = None
    external_check: bool | None = None
    alert_rate: float | None = _bounded("alert_rate")
    report_threshold: int | None = _bounded("report_threshold")


class PolicyOut(Schema):
    community_id: int
    enabled: bool
    dry_run: bool
    rules_text: str
    on_ad: str
    on_review: str
    warn_limit: int
    warn_window_days: int
    mute_hours: int
    final_step: str
    exempt_roles: list[str]
    exempt_role_holders: bool
    exempt_staff: bool
    notify_on_reversal: bool
    external_check: bool
    alert_rate: float
    report_threshold: int


class ReportIn(BodyIn):
    event_id: Id
    reason: str = Field("", max_length=max_len(MemberReport, "reason"))
    reporter_member_id: Id | None = None


class ReportOut(Schema):
    report_id: int
    violation_id: int | None


class DayOut(Schema):
    community_id: int | None
    day: dt.date
    violations: int


@router.post("/classify", response={200: VerdictOut, **ERRORS})
@idempotent
def classify(request: HttpRequest, body: ClassifyIn) -> dict[str, Any]:
    """Judge a text with a community's pack and the tenant's model (nothing is stored or actioned)."""
    p = require(request, "moderation.read")
    if body.community_id is not None and not Community.objects.filter(
            tenant_id=p.tenant_id, pk=body.community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "community_id"})

    moderator = selectors.moderator_for(p.tenant_id, body.community_id)
    c = body.context
    if c is None:
        ctx = MessageContext(member_joined_days=body.member_joined_days, message_index=body.message_index)
    else:
        ctx = MessageContext(
            member_joined_days=c.member_joined_days if c.member_joined_days is not None else body.member_joined_days,
            message_index=c.message_index if c.message_index is not None else body.message_index,
            joined_without_invite=c.joined_without_invite, same_text_other_groups=c.same_text_other_groups,
            messages_last_minute=c.messages_last_minute, mentions=c.mentions, exempt=c.sender_is_staff)
    return {**moderator.classify(body.text, ctx).as_json(), "exempt": ctx.exempt}


@router.get("/violations", response={200: list[ViolationOut], **ERRORS})
@paginate(KeysetPagination)
def list_violations(request: HttpRequest, *, status: str | None = None, community_id: Id | None = None,
                    member_id: Id | None = None) -> Any:
    p = require(request, "moderation.read")
    return selectors.violations(p.tenant_id, status=status, community_id=community_id, member_id=member_id)


@router.get("/violations/{violation_id}", response={200: ViolationOut, **ERRORS})
def get_violation(request: HttpRequest, violation_id: Id) -> Violation:
    p = require(request, "moderation.read")
    return selectors.get_violation(p.tenant_id, violation_id)


@router.post("/violations/{violation_id}/review", response={200: ViolationOut, **ERRORS})
@idempotent
def review(request: HttpRequest, violation_id: Id, body: ViolationReviewIn) -> Violation:
    p = require(request, "moderation.write")
    return services.do_review(p, violation_id, body.decision, note=body.note)


@router.post("/violations/{violation_id}/appeal", response={200: ViolationOut, **ERRORS})
@idempotent
def appeal(request: HttpRequest, violation_id: Id, body: AppealIn) -> Violation:
    """A member's appeal (member sessions from the portal later; integrations with moderation.write now)."""
    return services.do_appeal(principal(request), violation_id, body.text)


@router.post("/reports", response={200: ReportOut, **ERRORS})
@idempotent
def report(request: HttpRequest, body: ReportIn) -> dict[str, Any]:
    """A member reports a message; enough distinct reporters put it in the review queue."""
    rep, violation = services.do_report(principal(request), body.event_id, reason=body.reason,
                                        reporter_member_id=body.reporter_member_id)
    return {"report_id": rep.pk, "violation_id": violation.pk if violation else None}


def _policy_out(policy: Any) -> dict[str, Any]:
    return {f: getattr(policy, f) for f in PolicyOut.model_fields if f != "community_id"} | {
        "community_id": policy.community_id}


@router.get("/communities/{community_id}/policy", response={200: PolicyOut, **ERRORS})
def get_policy(request: HttpRequest, community_id: Id) -> dict[str, Any]:
    p = require(request, "moderation.read")

    if not Community.objects.filter(tenant_id=p.tenant_id, pk=community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "community_id"})
    return _policy_out(selectors.policy_for(p.tenant_id, community_id))


@router.put("/communities/{community_id}/policy", response={200: PolicyOut, **ERRORS})
def put_policy(request: HttpRequest, community_id: Id, body: PolicyIn) -> dict[str, Any]:
    """Update a community's policy; a rule pack with errors is refused (422) with each bad line."""
    p = require(request, "moderation.write")
    fields = {k: v for k, v in body.model_dump().items() if v is not None}
    return _policy_out(services.do_save_policy(p, community_id, **fields))


@router.get("/health/violations-per-day", response={200: list[DayOut], **ERRORS})
def violations_per_day(request: HttpRequest, community_id: Id | None = None,
                       days: Annotated[int, Field(ge=1, le=366)] = 30) -> list[dict[str, Any]]:
    p = require(request, "moderation.read")
    return selectors.violations_per_day(p.tenant_id, community_id=community_id, days=max(1, min(days, 366)))
