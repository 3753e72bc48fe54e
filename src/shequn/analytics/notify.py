"""The channels a new health notice goes out on, declared in ``shequn/wiring.py``: the webhook feed
(``health.alert`` through the outgoing webhooks) and a message to staff through the connectors'
outbox (a direct message to the community's 群主 and 客服 where their platform allows one, and a post
in the tenant's staff group). Both only write rows in the notice's transaction; the webhook worker
and the outbox worker deliver them."""

from __future__ import annotations

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.communities.models import CommunityRole, RoleAssignment
from shequn.connectors.capabilities import can_direct_message
from shequn.connectors.services import do_request_action
from shequn.core import webhooks
from shequn.core.models import WebhookEventType
from shequn.members.models import Identity

from .models import HealthNotice, HealthSettings

SOURCE = "analytics.health"


def notice_text(notice: HealthNotice) -> str:
    return _("【健康提醒】%(subject)s: %(message)s") % {"subject": notice.subject or "—", "message": notice.message}


def to_webhooks(notice: HealthNotice, settings: HealthSettings) -> None:
    """``health.alert`` to the tenant's subscribed endpoints (idempotent on the notice)."""
    webhooks.emit(notice.tenant_id, WebhookEventType.HEALTH_ALERT, f"analytics.notice:{notice.pk}", {
        "notice_id": notice.pk, "rule": notice.rule, "severity": notice.severity,
        "community_id": notice.community_id or None, "group_id": notice.group_id or None,
        "subject": notice.subject, "message": notice.message, "opened_at": notice.opened_at})


def staff_recipients(tenant_id: int, community_id: int) -> list[int]:
    """Members holding the 群主 or 客服 role of the community now."""
    now = timezone.now()
    return sorted(set(RoleAssignment.objects.filter(
        Q(until__isnull=True) | Q(until__gt=now), tenant_id=tenant_id, community_id=community_id,
        role__in=[CommunityRole.OWNER, CommunityRole.CUSTOMER_SERVICE]).values_list("member_id", flat=True)))


def to_staff(notice: HealthNotice, settings: HealthSettings) -> None:
    """A ``send`` action per recipient: the staff group (``staff_group_id``) and, with ``notify_owner``,
    a direct message to each 群主/客服 of the notice's community who has an identity on a platform
    that allows direct messages (one action per notice × recipient: idempotency key)."""
    text = notice_text(notice)
    if settings.staff_group_id:
        do_request_action(notice.tenant_id, kind="send", group_id=settings.staff_group_id,
                          idempotency_key=f"health:{notice.pk}:staff", payload={"text": text}, source=SOURCE,
                          reason=notice.rule)
    if not (settings.notify_owner and notice.community_id):
        return
    for member_id in staff_recipients(notice.tenant_id, notice.community_id):
        route = next(((p, ext) for p, ext in Identity.objects.filter(tenant_id=notice.tenant_id, member_id=member_id)
                      .order_by("-verified", "pk").values_list("platform", "external_id")
                      if ext and can_direct_message(p)), None)
        if route is None:
            continue
        do_request_action(notice.tenant_id, kind="send", group_id=None, platform=route[0],
                          target_member_id=member_id, target_external_id=route[1],
                          idempotency_key=f"health:{notice.pk}:dm:{member_id}",
                          payload={"text": text, "dm": True}, source=SOURCE, reason=notice.rule)
