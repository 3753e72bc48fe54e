"""Writers of the moderation app: the activity consumer that judges messages and acts, the ladder,
the review queue (confirm / reverse), appeals, per-tenant retraining and rate alerts.

Every platform action goes through :func:`shequn.connectors.services.do_request_action` inside the
transaction that records the violation, with an idempotency key derived from the violation, and is
audited (``actor_type="rule"`` naming the rule for automatic decisions). A platform action that
cannot be queued (e.g. the group vanished) is recorded on the violation as an error; the violation
itself is always kept.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.activity.models import ActivityEvent, EventKind
from shequn.communities.models import Community, JoinSource, Membership, RoleAssignment
from shequn.connectors.services import do_cancel_scheduled_unmutes, do_request_action
from shequn.core import webhooks
from shequn.core.errors import Conflict, Forbidden, Invalid, NotFound, ShequnError
from shequn.core.models import WebhookEventType
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.models import Identity, Member

from . import behaviour
from .classifier import default_model
from .models import (
    Decision,
    Fingerprint,
    MemberReport,
    ModerationPolicy,
    RateAlert,
    Strike,
    TenantModel,
    TrainingExample,
    Violation,
)
from .normalize import normalise
from .pipeline import TRUSTED_MESSAGES, MessageContext, Moderator, Verdict, text_hash
from .rules import RulePackError, compile_pack
from .selectors import get_violation, is_community_staff, moderator_for, policy_for
from .tasks import retrain_tenant_model

log = logging.getLogger(__name__)

MESSAGE_KINDS = (EventKind.MESSAGE, EventKind.REPLY, EventKind.EDIT)
FINGERPRINT_TTL = dt.timedelta(days=1)
MAX_STORED_TEXT = 2000
UNDO = {"mute": "unmute", "ban": "unban"}
#: ways into a community anyone can take without being invited; with no inviter recorded, a new member who
#: came in this way "joined through no invite" (a weak signal). Invite links, paid entry, an operator's
#: import or manual add are not public ways in.
PUBLIC_JOIN_SOURCES = frozenset({JoinSource.QR, JoinSource.LIVE, JoinSource.PLATFORM})


# ---------------------------------------------------------------------------------------------- policy

def check_rules_text(text: str) -> None:
    """Refuse a community rule pack that does not compile, naming each bad line (422)."""
    try:
        compile_pack(text)
    except RulePackError as exc:
        raise Invalid(
            _("规则包有错误: %(e)s") % {"e": "; ".join(str(e) for e in exc.errors[:5])},
            code="rule_pack_invalid", details=exc.as_details(),
        ) from exc


_POLICY_FIELDS = {
    "enabled", "dry_run", "rules_text", "on_ad", "on_review", "warn_limit", "warn_window_days", "mute_hours",
    "final_step", "exempt_roles", "exempt_role_holders", "exempt_staff", "notify_on_reversal", "warn_text",
    "external_check", "alert_rate", "report_threshold",
}


#: the numeric policy settings' bounds (the API schema states the same: ``moderation.api.PolicyIn``)
POLICY_BOUNDS: dict[str, tuple[float, float]] = {
    "warn_limit": (1, 20), "warn_window_days": (1, 365), "mute_hours": (1, 24 * 365),
    "report_threshold": (0, 1000), "alert_rate": (0, 100),
}


@transaction.atomic
def do_save_policy(principal: Principal, community_id: int, **fields: Any) -> ModerationPolicy:
    """Create or update a community's moderation policy. A rule pack with an error is refused with
    its line numbers and nothing is saved."""
    if not principal.can("moderation.write"):
        raise Forbidden(_("没有权限: %(perm)s") % {"perm": "moderation.write"})
    if not Community.objects.filter(tenant_id=principal.tenant_id, pk=community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "community_id"})
    unknown = set(fields) - _POLICY_FIELDS
    if unknown:
        raise Invalid(_("未知字段: %(f)s") % {"f": ", ".join(sorted(unknown))}, details={"field": sorted(unknown)[0]})
    if "rules_text" in fields:
        check_rules_text(str(fields["rules_text"] or ""))
    for name in ("on_ad", "on_review"):
        if name in fields and fields[name] not in Decision.values:
            raise Invalid(_("未知的处理方式: %(v)s") % {"v": fields[name]}, details={"field": name})
    if "warn_limit" in fields and not 1 <= int(fields["warn_limit"]) <= 20:
        raise Invalid(_("警告次数上限应在 1 到 20 之间"), details={"field": "warn_limit"})
    for name, (low, high) in POLICY_BOUNDS.items():
        value = fields.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not low <= value <= high):
            raise Invalid(_("%(f)s 应在 %(lo)s 到 %(hi)s 之间") % {"f": name, "lo": low, "hi": high},
                          details={"field": name, "min": low, "max": high})
    policy = ModerationPolicy.objects.select_for_update().filter(
        tenant_id=principal.tenant_id, community_id=community_id).first()
    created = policy is None
    if policy is None:
        policy = ModerationPolicy(tenant_id=principal.tenant_id, community_id=community_id)
    before = {f: getattr(policy, f) for f in fields}
    for name, value in fields.items():
        setattr(policy, name, value)
    try:
        policy.full_clean(exclude=["tenant", "community"])
    except ValidationError as exc:
        errors = exc.message_dict
        raise Invalid(_("审核策略不合法: %(f)s") % {"f": ", ".join(sorted(errors))},
                      details={"field": sorted(errors)[0], "errors": errors}) from exc
    policy.save()
    do_audit(principal, "moderation.policy.create" if created else "moderation.policy.update", "ModerationPolicy",
             policy.pk, data={"community_id": community_id,
                              "changed": sorted(k for k in fields if before.get(k) != fields[k])})
    return policy


# ------------------------------------------------------------------------------------ the consumer

def _message_text(event: ActivityEvent) -> str:
    payload = event.payload if isinstance(event.payload, dict) else {}
    for key in ("text", "body", "content", "caption"):
        value = payload.get(key)
        if isinstance(value, str):
            return value
    return ""


def _message_id(event: ActivityEvent) -> str:
    """The platform id of the message to delete: for an edit the original message (``edits``), else
    the connector's ``message_id`` or the event id (Matrix: the event id is the message)."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    return str(payload.get("edits") or payload.get("message_id") or event.platform_event_id)[:191]


def _mention_count(event: ActivityEvent) -> int:
    payload = event.payload if isinstance(event.payload, dict) else {}
    mentions = payload.get("mentions")
    return len(mentions) if isinstance(mentions, list) else 0


def _is_staff(event: ActivityEvent) -> bool:
    payload = event.payload if isinstance(event.payload, dict) else {}
    return bool(payload.get("sender_is_admin") or payload.get("is_staff") or payload.get("is_admin"))


def _is_role_holder(tenant_id: int, community_id: int, member_id: int, policy: ModerationPolicy,
                    when: dt.datetime) -> bool:
    qs = RoleAssignment.objects.filter(tenant_id=tenant_id, community_id=community_id, member_id=member_id,
                                       since__lte=when).filter(Q(until__isnull=True) | Q(until__gt=when))
    roles = policy.exempt_roles or []
    if roles:
        qs = qs.filter(role__in=roles)
    return qs.exists()


def _contexts(tenant_id: int, events: Sequence[ActivityEvent], hashes: Sequence[str]) -> list[MessageContext]:
    """Behaviour state for a batch of messages, with a fixed number of queries per batch: days since
    joining (open membership), prior messages in the community (capped at 50), messages in the last
    minute and other groups where the same normalised text appeared in the last ten minutes (the
    behaviour store; earlier messages of the same batch count)."""
    if not events:
        return []
    pairs = {(e.member_id, e.community_id) for e in events if e.member_id is not None and e.community_id is not None}
    members = {m for m, _c in pairs}
    communities = {c for _m, c in pairs}
    joined: dict[tuple[int, int], dt.datetime] = {}
    uninvited: dict[tuple[int, int], bool] = {}
    for member_id, community_id, joined_at, source, inviter_id in (
        Membership.objects.filter(tenant_id=tenant_id, member_id__in=members, community_id__in=communities,
                                  left_at__isnull=True).order_by("joined_at")
        .values_list("member_id", "community_id", "joined_at", "join_source", "inviter_id")
    ):
        joined.setdefault((member_id, community_id), joined_at)
        uninvited.setdefault((member_id, community_id), inviter_id is None and source in PUBLIC_JOIN_SOURCES)
    first = min(e.occurred_at for e in events)
    prior: dict[tuple[int, int], int] = {}
    for member_id, community_id, n in (
        ActivityEvent.objects.filter(tenant_id=tenant_id, member_id__in=members, community_id__in=communities,
                                     kind__in=[EventKind.MESSAGE, EventKind.REPLY], occurred_at__lt=first)
        .values_list("member_id", "community_id").annotate(n=Count("id")).values_list("member_id", "community_id", "n")
    ):
        prior[(member_id, community_id)] = n
    in_batch: dict[tuple[int, int], list[dt.datetime]] = {}
    for e in events:
        if e.member_id is not None and e.community_id is not None and e.kind in (EventKind.MESSAGE, EventKind.REPLY):
            in_batch.setdefault((e.member_id, e.community_id), []).append(e.occurred_at)
    items = [behaviour.Observation(e.pk, e.member_id, e.group_id, h, e.occurred_at)
             for e, h in zip(events, hashes, strict=True)]
    try:
        observed = behaviour.store().observe_batch(tenant_id, items)
    except Exception:  # Redis down: the database store still works
        log.warning("behaviour store unavailable, using the database", exc_info=True)
        observed = behaviour.DbStore().observe_batch(tenant_id, items)
    out = []
    for e, (flood, others) in zip(events, observed, strict=True):
        ctx = MessageContext(group=str(e.group_id) if e.group_id else None, messages_last_minute=flood,
                             same_text_other_groups=others, mentions=_mention_count(e))
        if e.member_id is not None and e.community_id is not None:
            key = (e.member_id, e.community_id)
            j = joined.get(key)
            if j is not None and j <= e.occurred_at:
                ctx.member_joined_days = (e.occurred_at - j).total_seconds() / 86400
                ctx.joined_without_invite = uninvited[key]
            earlier = sum(1 for at in in_batch.get(key, ()) if at < e.occurred_at)
            ctx.message_index = min(TRUSTED_MESSAGES, prior.get(key, 0) + earlier)
        out.append(ctx)
    return out


def _context(tenant_id: int, event: ActivityEvent, norm_hash: str) -> MessageContext:
    return _contexts(tenant_id, [event], [norm_hash])[0]


def on_activity(tenant_id: int, events: Sequence[ActivityEvent]) -> None:
    """The activity consumer ``moderation`` (subscribed in :mod:`shequn.wiring`)."""
    do_moderate_events(tenant_id, events)


def do_moderate_events(tenant_id: int, events: Sequence[ActivityEvent]) -> list[Violation]:
    """The activity consumer: judge each new message/reply/edit and act on it.

    Idempotent: a violation is unique per event, so a retried batch adds nothing. Runs inside the
    dispatch transaction; each platform action is queued in a savepoint so one failing request
    never loses the violation."""
    out: list[Violation] = []
    policies: dict[int, ModerationPolicy] = {}
    moderators: dict[int, Moderator] = {}
    candidates = [e for e in events if e.kind in MESSAGE_KINDS and e.community_id is not None]
    done = set(Violation.objects.filter(tenant_id=tenant_id, event_id__in=[e.pk for e in candidates])
               .values_list("event_id", flat=True))
    todo: list[ActivityEvent] = []
    for event in candidates:
        assert event.community_id is not None
        policy = policies.get(event.community_id)
        if policy is None:
            policy = policies[event.community_id] = policy_for(tenant_id, event.community_id)
        if policy.enabled and event.pk not in done:
            todo.append(event)
    texts = [_message_text(e) for e in todo]
    hashes = [text_hash(normalise(t).text) if t else "" for t in texts]
    contexts = _contexts(tenant_id, todo, hashes)
    for event, text, ctx in zip(todo, texts, contexts, strict=True):
        assert event.community_id is not None
        policy = policies[event.community_id]
        moderator = moderators.get(event.community_id)
        if moderator is None:
            try:
                moderator = moderator_for(tenant_id, event.community_id, policy)
            except RulePackError:
                log.exception("community %s rule pack no longer compiles; using the default pack", event.community_id)
                moderator = moderator_for(tenant_id, None)
            moderators[event.community_id] = moderator
        try:
            verdict = moderator.classify(text, ctx)
        except Exception:  # a pipeline bug must not poison the batch: a person looks at the message
            log.exception("moderation pipeline failed on event %s", event.pk)
            verdict = Verdict(verdict="review", score=0.0, category="pipeline_error",
                              reasons=[{"rule": "pipeline_error", "category": None, "weight": 0.0}])
        if verdict.verdict == "ok":
            continue
        exempt = False
        if event.member_id is not None and policy.exempt_role_holders:
            exempt = _is_role_holder(tenant_id, event.community_id, event.member_id, policy, event.occurred_at)
        if policy.exempt_staff and (_is_staff(event) or (
                event.member_id is not None
                and is_community_staff(tenant_id, event.community_id, event.member_id, event.occurred_at))):
            exempt = True
        out.append(_record(tenant_id, event, text, verdict, policy, exempt=exempt))
    return out


def _top_rule(verdict: Verdict) -> str:
    best = max((r for r in verdict.reasons if r.get("category")), key=lambda r: r.get("weight", 0), default=None)
    if best is not None:
        return str(best["rule"])
    return "classifier" if any(r["rule"] == "classifier" for r in verdict.reasons) else ""


@transaction.atomic
def _record(tenant_id: int, event: ActivityEvent, text: str, verdict: Verdict, policy: ModerationPolicy,
            *, exempt: bool) -> Violation:
    """One violation with its ladder decision, queued actions and audit row, in its own transaction
    (a savepoint inside the dispatch task's): the member lock below needs one, and a caller outside
    any transaction (``shequn demo``'s seeding, a command) must not crash on PostgreSQL."""
    v = Violation.objects.create(
        tenant_id=tenant_id, community_id=event.community_id, group_id=event.group_id, member_id=event.member_id,
        event=event, platform=event.platform,
        message_external_id=_message_id(event),
        text=text.encode("utf-8", "replace").decode("utf-8")[:MAX_STORED_TEXT].replace("\x00", ""),
        verdict=verdict.verdict, score=verdict.score, category=verdict.category or "",
        rule_id=_top_rule(verdict)[:120], reasons=verdict.reasons, signals=verdict.signals,
        text_hash=verdict.text_hash, occurred_at=event.occurred_at,
    )
    decision = policy.on_ad if verdict.verdict == "ad" else policy.on_review
    if exempt:
        v.status = Violation.Status.EXEMPT
        decision_note = "exempt"
    elif decision == Decision.ALLOW:
        v.status = Violation.Status.ALLOWED
        decision_note = "allow"
    elif decision == Decision.REVIEW:
        v.status = Violation.Status.PENDING
        decision_note = "review"
    else:
        if v.member_id is not None:
            # serialise ladder decisions per member: two workers judging the same member's messages
            # at once must not both read "two warnings" and both mute
            Member.objects.select_for_update().filter(tenant_id=tenant_id, pk=v.member_id).first()
        plan, step = plan_actions(policy, v, decision)
        v.ladder_step = step
        if step == "review":
            v.status = Violation.Status.PENDING
            decision_note = "review"
        elif policy.dry_run:
            v.status = Violation.Status.DRY_RUN
            v.actions = [{"kind": kind, "planned": True} for kind, _p in plan]
            decision_note = "dry_run"
        else:
            v.status = Violation.Status.ACTIONED
            _apply(v, plan, policy, source="moderation.rule")
            decision_note = step
    v.save()
    principal = Principal.system(tenant_id, label="moderation")
    do_audit(
        principal, "moderation.dry_run" if v.status == Violation.Status.DRY_RUN else "moderation.violation",
        "Violation", v.pk, actor_type="rule", actor_id=v.rule_id[:64], actor_label=v.category or v.verdict,
        reason=_("规则 %(rule)s 判定为%(verdict)s (分数 %(score).2f)") % {
            "rule": v.rule_id, "verdict": v.verdict, "score": v.score},
        data={"decision": decision_note, "step": v.ladder_step, "actions": v.actions,
              "rules": [r["rule"] for r in v.reasons][:20], "member_id": v.member_id, "event_id": event.pk},
    )
    _announce(v)
    return v


def _announce(v: Violation) -> None:
    """The ``violation.created`` webhook (ids and verdict only: never the message text)."""
    webhooks.emit(v.tenant_id, WebhookEventType.VIOLATION, f"violation:{v.pk}", {
        "violation_id": v.pk, "member_id": v.member_id, "community_id": v.community_id, "group_id": v.group_id,
        "platform": v.platform, "verdict": v.verdict, "category": v.category, "status": v.status,
        "score": v.score, "occurred_at": v.occurred_at})


def plan_actions(policy: ModerationPolicy, v: Violation, decision: str,
                 now: dt.datetime | None = None) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """Decide the platform actions for a violation under ``decision`` and the member's ladder.

    Returns ``(actions, step)``; ``step`` is warn / mute / kick / ban / delete or ``review`` when an
    automatic ban lacks two independent signals and the decision is only a ban. The ladder counts
    the member's unrevoked warnings in the community within ``warn_window_days``: below the limit a
    warning; reaching it a warning plus a ``mute_hours`` mute; past it (already muted in the window)
    the final step (kick, or ban when two independent signals agree)."""
    now = now or v.occurred_at or timezone.now()
    delete: list[tuple[str, dict[str, Any]]] = [("delete", {})]
    # "seconds" is what the connectors' adapters read; "duration_s"/"until" are kept for people
    mute_payload = {"seconds": policy.mute_hours * 3600, "duration_s": policy.mute_hours * 3600,
                    "until": (now + dt.timedelta(hours=policy.mute_hours)).isoformat()}
    if decision == Decision.DELETE:
        return delete, "delete"
    if decision == Decision.MUTE:
        return [*delete, ("mute", mute_payload)], "mute"
    if decision == Decision.KICK:
        return [*delete, ("kick", {})], "kick"
    if decision == Decision.BAN:
        if v.signals >= 2:
            return [*delete, ("ban", {})], "ban"
        return [], "review"
    # delete + warn, escalating on the ladder
    if v.member_id is None or v.community_id is None:
        return [*delete, ("warn", _warn_payload(policy, v, 1))], "warn"
    since = now - dt.timedelta(days=policy.warn_window_days)
    strikes = Strike.objects.filter(tenant_id=v.tenant_id, community_id=v.community_id, member_id=v.member_id,
                                    revoked_at__isnull=True, created_at__gte=since, created_at__lte=now)
    warns = strikes.filter(kind=Strike.Kind.WARN).count()
    muted = strikes.filter(kind=Strike.Kind.MUTE).exists()
    if warns >= policy.warn_limit and muted:
        if policy.final_step == "ban" and v.signals >= 2:
            return [*delete, ("ban", {})], "ban"
        return [*delete, ("kick", {})], "kick"
    if warns + 1 >= policy.warn_limit:
        return [*delete, ("warn", _warn_payload(policy, v, warns + 1)), ("mute", mute_payload)], "mute"
    return [*delete, ("warn", _warn_payload(policy, v, warns + 1))], "warn"


def _warn_payload(policy: ModerationPolicy, v: Violation, count: int) -> dict[str, Any]:
    template = policy.warn_text or _(
        "您的消息违反群规 (%(category)s), 已被删除。警告 %(count)d/%(limit)d, 达到上限将被禁言。")
    values = {"category": v.category or v.verdict, "count": count, "limit": policy.warn_limit}
    try:
        text = template.replace("{category}", str(values["category"])).replace(
            "{count}", str(count)).replace("{limit}", str(policy.warn_limit)) if policy.warn_text else template % values
    except (KeyError, ValueError, TypeError):
        text = template
    # the adapters put the member's name (a mention where the platform has one) before the text
    return {"text": text, "warning": count, "limit": policy.warn_limit, "member_name": _member_name(v)}


def _member_name(v: Violation) -> str:
    if v.member_id is None:
        return ""
    name = Identity.objects.filter(tenant_id=v.tenant_id, member_id=v.member_id, platform=v.platform).values_list(
        "display_name", flat=True).first()
    if not name:
        name = Member.objects.filter(tenant_id=v.tenant_id, pk=v.member_id).values_list(
            "display_name", flat=True).first()
    return str(name or "")


def _target_external_id(v: Violation) -> str:
    if v.member_id is None:
        return ""
    ext = Identity.objects.filter(tenant_id=v.tenant_id, member_id=v.member_id, platform=v.platform).values_list(
        "external_id", flat=True).first()
    return ext or ""


def _apply(v: Violation, plan: Sequence[tuple[str, dict[str, Any]]], policy: ModerationPolicy, *, source: str,
           key_prefix: str = "mod") -> None:
    """Queue each planned action in a savepoint and record strikes. Never raises for a platform-side
    problem: the error is written to ``v.actions`` and the violation stays."""
    target = _target_external_id(v)
    results: list[dict[str, Any]] = list(v.actions or [])
    for kind, payload in plan:
        entry: dict[str, Any] = {"kind": kind}
        try:
            with transaction.atomic():
                action = do_request_action(
                    v.tenant_id, kind=kind, group_id=v.group_id, idempotency_key=f"{key_prefix}:{v.pk}:{kind}",
                    target_member_id=v.member_id, target_external_id=target,
                    message_external_id=v.message_external_id if kind == "delete" else "",
                    payload=payload, source=source,
                    reason=_("规则 %(rule)s: %(category)s") % {"rule": v.rule_id, "category": v.category},
                    platform=v.platform or None,
                )
            entry.update(outbox_id=action.pk, status=action.status)
        except ShequnError as exc:
            entry.update(status="error", error=exc.message)
            log.warning("moderation action %s for violation %s not queued: %s", kind, v.pk, exc.code)
        results.append(entry)
        if kind in (Strike.Kind.WARN, Strike.Kind.MUTE, Strike.Kind.KICK, Strike.Kind.BAN) and v.member_id and \
                v.community_id:
            until = None
            if kind == Strike.Kind.MUTE:
                until = v.occurred_at + dt.timedelta(hours=policy.mute_hours)
            Strike.objects.create(tenant_id=v.tenant_id, community_id=v.community_id, member_id=v.member_id,
                                  violation=v, kind=kind, created_at=v.occurred_at, until=until)
    v.actions = results


# ------------------------------------------------------------------------------- action outcomes

#: a step that did not happen (its action failed, died or waits for a person) is shown as such
FAILED_STEP = "%s_failed"


def on_action_settled(*, tenant_id: int, action_id: int, kind: str, status: str, source: str,
                      idempotency_key: str, error: str = "", **_kw: Any) -> None:
    """The connectors tell the outcome of an action the ladder queued (see
    :func:`shequn.connectors.signals.send_action_settled`; subscribed in :mod:`shequn.wiring`): the
    ladder counts only applied actions."""
    if not source.startswith("moderation"):
        return
    prefix, _sep, rest = idempotency_key.partition(":")
    violation_id, _sep, _kind = rest.partition(":")
    if prefix != "mod" or not violation_id.isdigit():
        return  # undo actions (unmute / unban) carry no strike
    with transaction.atomic():
        do_note_action_outcome(tenant_id, int(violation_id), kind=kind, action_id=action_id, status=status,
                               error=error)



def do_note_action_outcome(tenant_id: int, violation_id: int, *, kind: str, action_id: int, status: str,
                           error: str = "") -> Violation | None:
    """Record what really happened to one of a violation's actions. Not applied (``failed``, ``dead``,
    ``delegated`` to a person): the strike it carried is revoked, so the next offence climbs from
    where the member really is, and the ladder step reads ``<kind>_failed``. A person completing the
    human task (``done``): the strike counts again and the step is restored."""
    v = Violation.objects.select_for_update().filter(tenant_id=tenant_id, pk=violation_id).first()
    if v is None:
        return None
    now = timezone.now()
    applied = status == "done"
    for entry in v.actions or []:
        if entry.get("outbox_id") == action_id:
            entry["status"] = status
            if error:
                entry["error"] = error[:300]
            entry["applied"] = applied
    strikes = Strike.objects.filter(violation=v, kind=kind)
    if applied:
        if v.status != Violation.Status.REVERSED:
            strikes.filter(revoked_at__isnull=False).update(revoked_at=None)
            if v.ladder_step == FAILED_STEP % kind:
                v.ladder_step = kind
    else:
        strikes.filter(revoked_at__isnull=True).update(revoked_at=now)
        if v.ladder_step == kind:
            v.ladder_step = FAILED_STEP % kind
    v.save(update_fields=["actions", "ladder_step"])
    do_audit(Principal.system(tenant_id, label="moderation"), "moderation.action_outcome", "Violation", v.pk,
             actor_type="system", reason=error[:300],
             data={"kind": kind, "status": status, "outbox_id": action_id, "step": v.ladder_step})
    return v


@transaction.atomic
def do_lift_mute(principal: Principal, strike_id: int, *, note: str = "") -> Strike:
    """Lift a running mute early (one click in the console): the mute ends now (``until``), the
    platform is asked to unmute at once and the unmute scheduled for its end is cancelled. The strike
    still counts on the ladder (lifting is mercy, not a reversal — reverse the violation for that)."""
    if not principal.can("moderation.write"):
        raise Forbidden(_("没有权限: %(perm)s") % {"perm": "moderation.write"})
    strike = Strike.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=strike_id).first()
    if strike is None:
        raise NotFound(_("处罚记录不存在"))
    now = timezone.now()
    if strike.kind != Strike.Kind.MUTE or strike.revoked_at is not None or (strike.until and strike.until <= now):
        raise Conflict(_("该记录不是进行中的禁言"), code="not_muted")
    strike.until = now
    strike.save(update_fields=["until"])
    v = strike.violation
    mute_ids = [int(e["outbox_id"]) for e in v.actions or [] if e.get("kind") == "mute" and e.get("outbox_id")]
    do_cancel_scheduled_unmutes(principal.tenant_id, mute_ids)  # any platform: none queued on Telegram
    do_request_action(principal.tenant_id, kind="unmute", group_id=v.group_id, idempotency_key=f"lift:{strike.pk}",
                      target_member_id=v.member_id, target_external_id=_target_external_id(v),
                      payload={"lifts": strike.pk}, source=f"moderation.lift:{principal.label}"[:120],
                      reason=note or _("提前解除禁言"), platform=v.platform or None)
    do_audit(principal, "moderation.lift_mute", "Strike", strike.pk, reason=note,
             data={"violation": v.pk, "member_id": strike.member_id})
    return strike


# ------------------------------------------------------------------------------------ review queue

def _training(v: Violation, is_ad: bool, source: str) -> None:
    TrainingExample.objects.create(tenant_id=v.tenant_id, violation=v, text=normalise(v.text).text, is_ad=is_ad,
                                   source=source)
    tenant_id = v.tenant_id

    def _enqueue() -> None:
        try:
            retrain_tenant_model.enqueue(tenant_id)
        except Exception:  # retraining is best effort; the nightly task catches up
            log.warning("could not enqueue retraining for tenant %s", tenant_id, exc_info=True)

    transaction.on_commit(_enqueue)


@transaction.atomic
def do_review(principal: Principal, violation_id: int, decision: str, *, note: str = "") -> Violation:
    """One-click review. ``confirm``: the message was an ad — a pending item is actioned now (ladder
    applies), and the classifier learns it as an ad. ``reverse``: a mistake — the member's strikes
    from it are revoked (standing restored), undoable actions are undone (unmute, unban), the member
    is told if the policy says so, and the classifier learns it as ok. Audited either way."""
    if not principal.can("moderation.write"):
        raise Forbidden(_("没有权限: %(perm)s") % {"perm": "moderation.write"})
    if decision not in ("confirm", "reverse"):
        raise Invalid(_("审核结果只能是 confirm 或 reverse"), details={"field": "decision"})
    found = get_violation(principal.tenant_id, violation_id)
    if found.member_id is not None:  # same lock order as the consumer: member, then violation
        Member.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=found.member_id).first()
    v = Violation.objects.select_for_update().get(tenant_id=principal.tenant_id, pk=violation_id)
    if v.status in (Violation.Status.CONFIRMED, Violation.Status.REVERSED):
        raise Conflict(_("该记录已审核: %(s)s") % {"s": v.get_status_display()}, code="already_reviewed")
    policy = policy_for(v.tenant_id, v.community_id) if v.community_id else ModerationPolicy(tenant_id=v.tenant_id)
    before = v.status
    now = timezone.now()
    if decision == "confirm":
        if before == Violation.Status.PENDING and not v.actions:
            plan, step = plan_actions(policy, v, policy.on_ad if policy.on_ad not in (
                Decision.ALLOW, Decision.REVIEW) else Decision.DELETE_WARN, now=now)
            if step == "review":  # a ban without two signals: a person decided, so kick instead
                plan, step = [("delete", {}), ("kick", {})], "kick"
            v.ladder_step = step
            _apply(v, plan, policy, source=f"moderation.review:{principal.label}"[:120])
        v.status = Violation.Status.CONFIRMED
        _training(v, True, "confirm")
    else:
        undone: list[tuple[str, dict[str, Any]]] = []
        revoked = Strike.objects.filter(violation=v, revoked_at__isnull=True).update(revoked_at=now)
        for entry in list(v.actions or []):
            kind = entry.get("kind")
            if kind in UNDO and entry.get("status") != "error" and not entry.get("planned"):
                undone.append((UNDO[kind], {"reverses": entry.get("outbox_id")}))
        punished = any(e.get("kind") in ("delete", "warn", "mute", "kick", "ban") and e.get("status") != "error"
                       and not e.get("planned") for e in (v.actions or []))
        if policy.notify_on_reversal and v.member_id and punished:
            undone.append(("send", {"text": _("之前对您消息的处理是误判, 已撤销, 抱歉打扰。"),
                                    "reply_to_member": v.member_id}))
        if undone:
            _apply(v, undone, policy, source=f"moderation.review:{principal.label}"[:120], key_prefix="undo")
        v.status = Violation.Status.REVERSED
        v.ladder_step = ""
        _training(v, False, "reverse")
        note = note or ""
        log.info("violation %s reversed; %d strikes revoked", v.pk, revoked)
    v.reviewed_by = principal.label[:120]
    v.reviewed_at = now
    v.review_note = note[:500]
    v.save()
    do_audit(principal, f"moderation.{decision}", "Violation", v.pk, reason=note,
             data={"rule": v.rule_id, "before": before, "actions": v.actions, "member_id": v.member_id})
    return v


@transaction.atomic
def do_appeal(principal: Principal, violation_id: int, text: str) -> Violation:
    """A member appeals a decision: the violation goes back to the review queue with the appeal.
    The member themself (principal kind ``member`` whose actor id is the member id) or a caller with
    ``moderation.write`` may appeal; one appeal per violation."""
    v = get_violation(principal.tenant_id, violation_id)
    is_member = principal.kind == "member" and str(v.member_id) == principal.actor_id
    if not is_member and not principal.can("moderation.write"):
        raise Forbidden(_("只有当事会员可以申诉"))
    text = (text or "").strip()
    if not text:
        raise Invalid(_("申诉内容不能为空"), details={"field": "text"})
    v = Violation.objects.select_for_update().get(pk=v.pk)
    if v.appealed_at is not None:
        raise Conflict(_("已经申诉过, 请等待审核"), code="already_appealed")
    if v.status in (Violation.Status.REVERSED, Violation.Status.ALLOWED):
        raise Conflict(_("该记录未处罚, 无需申诉"), code="nothing_to_appeal")
    v.appeal_text = text[:2000]
    v.appealed_at = timezone.now()
    v.status = Violation.Status.PENDING
    v.save(update_fields=["appeal_text", "appealed_at", "status"])
    do_audit(principal, "moderation.appeal", "Violation", v.pk, reason=text[:500],
             actor_type="member" if is_member else None, data={"member_id": v.member_id})
    return v


@transaction.atomic
def do_report(principal: Principal, event_id: int, *, reason: str = "",
              reporter_member_id: int | None = None) -> tuple[MemberReport, Violation | None]:
    """A member reports a message. The reporter is the member principal itself, or
    ``reporter_member_id`` for a caller with ``moderation.write`` (a connector relaying /report).
    One report per reporter and message; when distinct reporters reach the community's
    ``report_threshold`` the message enters the review queue (a pending violation, category
    ``reported``) — reports alone never trigger an automatic action."""
    if principal.kind == "member":
        reporter_id: int | None = int(principal.actor_id) if principal.actor_id.isdigit() else None
    elif principal.can("moderation.write"):
        reporter_id = reporter_member_id
    else:
        raise Forbidden(_("没有权限举报"))
    event = ActivityEvent.objects.filter(tenant_id=principal.tenant_id, pk=event_id).first()
    if event is None or event.kind not in MESSAGE_KINDS:
        raise NotFound(_("消息不存在"), details={"field": "event_id"})
    if reporter_id is not None and reporter_id == event.member_id:
        raise Invalid(_("不能举报自己的消息"), details={"field": "event_id"})
    report, created = MemberReport.objects.get_or_create(
        tenant_id=principal.tenant_id, event=event, reporter_id=reporter_id, defaults={"reason": reason[:200]})
    if not created:
        return report, Violation.objects.filter(tenant_id=principal.tenant_id, event=event).first()
    do_audit(principal, "moderation.report", "ActivityEvent", event.pk, reason=reason[:500],
             actor_type="member" if principal.kind == "member" else None, data={"reporter_id": reporter_id})
    policy = policy_for(principal.tenant_id, event.community_id) if event.community_id else None
    threshold = policy.report_threshold if policy is not None else 3
    reports = MemberReport.objects.filter(tenant_id=principal.tenant_id, event=event).count()
    violation = Violation.objects.select_for_update().filter(tenant_id=principal.tenant_id, event=event).first()
    if threshold == 0 or reports < threshold:
        return report, violation
    reason_row = {"rule": "reports", "category": "reported", "weight": 0.0, "detail": reports}
    if violation is None:
        text = _message_text(event)
        violation = Violation.objects.create(
            tenant_id=principal.tenant_id, community_id=event.community_id, group_id=event.group_id,
            member_id=event.member_id, event=event, platform=event.platform,
            message_external_id=_message_id(event),
            text=text.encode("utf-8", "replace").decode("utf-8")[:MAX_STORED_TEXT].replace("\x00", ""),
            verdict="review", score=0.0, category="reported", rule_id="reports", reasons=[reason_row],
            status=Violation.Status.PENDING, occurred_at=event.occurred_at,
        )
        _announce(violation)
    elif violation.status in (Violation.Status.ALLOWED, Violation.Status.EXEMPT) and violation.reviewed_at is None:
        violation.status = Violation.Status.PENDING
        violation.reasons = [*violation.reasons, reason_row]
        violation.save(update_fields=["status", "reasons"])
    else:
        return report, violation
    do_audit(Principal.system(principal.tenant_id, label="moderation"), "moderation.reported", "Violation",
             violation.pk, actor_type="rule", actor_id="reports", reason=_("%(n)d 位成员举报") % {"n": reports})
    return report, violation


# ------------------------------------------------------------------------------- learning and health

@transaction.atomic
def do_retrain_tenant_model(tenant_id: int) -> TenantModel:
    """Rebuild the tenant's classifier: shipped counts plus every moderator decision (weighted)."""
    examples = list(TrainingExample.objects.filter(tenant_id=tenant_id).values_list("text", "is_ad"))
    model = default_model().merged(examples).prune()
    row, _created = TenantModel.objects.update_or_create(
        tenant_id=tenant_id,
        defaults={"model_json": model.to_json(), "examples": len(examples), "trained_at": timezone.now()},
    )
    do_audit(Principal.system(tenant_id, label="moderation"), "moderation.retrain", "TenantModel", row.pk,
             data={"examples": len(examples), "ads": sum(1 for _t, is_ad in examples if is_ad)})
    return row


def do_check_rate_alerts(tenant_id: int, day: dt.date | None = None) -> list[RateAlert]:
    """Ad-group alert: communities whose violations / messages on ``day`` (default today, UTC) pass
    their policy's ``alert_rate`` percent (with at least 20 messages). One alert per community-day."""
    day = day or timezone.now().date()
    start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    out: list[RateAlert] = []
    community_ids = set(Violation.objects.filter(tenant_id=tenant_id, occurred_at__gte=start, occurred_at__lt=end)
                        .exclude(status=Violation.Status.REVERSED).values_list("community_id", flat=True))
    for community_id in sorted(c for c in community_ids if c is not None):
        messages = ActivityEvent.objects.filter(tenant_id=tenant_id, community_id=community_id,
                                                kind__in=MESSAGE_KINDS, occurred_at__gte=start,
                                                occurred_at__lt=end).count()
        bad = Violation.objects.filter(tenant_id=tenant_id, community_id=community_id, occurred_at__gte=start,
                                       occurred_at__lt=end).exclude(status=Violation.Status.REVERSED).count()
        if messages < 20:
            continue
        rate = 100.0 * bad / messages
        if rate < policy_for(tenant_id, community_id).alert_rate:
            continue
        with transaction.atomic():
            alert, created = RateAlert.objects.get_or_create(
                tenant_id=tenant_id, community_id=community_id, day=day,
                defaults={"messages": messages, "violations": bad, "rate": rate})
            if created:
                do_audit(Principal.system(tenant_id, label="moderation"), "moderation.rate_alert", "Community",
                         community_id, reason=_("违规率 %(r).1f%% 超过阈值") % {"r": rate},
                         data={"messages": messages, "violations": bad, "day": day.isoformat()})
                out.append(alert)
    return out


def do_prune_fingerprints(now: dt.datetime | None = None) -> int:
    deleted, _details = Fingerprint.objects.filter(at__lt=(now or timezone.now()) - FINGERPRINT_TTL).delete()
    return deleted
