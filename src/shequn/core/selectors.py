"""Reads for tenants, staff, API keys and the audit log. Every read is scoped to a tenant."""

from __future__ import annotations

import hmac
import time

from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import ApiKey, AuditLog, StaffMembership, WebhookDelivery, WebhookEndpoint
from .permissions import Principal, expand_scopes, permissions_for_role
from .services import API_KEYS, hash_api_key


def staff_memberships_for_user(user_id: int) -> QuerySet[StaffMembership]:
    return StaffMembership.objects.filter(user_id=user_id, is_active=True, tenant__is_active=True).select_related(
        "tenant"
    ).order_by("tenant_id")


def principal_for_staff(staff: StaffMembership) -> Principal:
    return Principal(
        tenant_id=staff.tenant_id,
        kind="staff",
        actor_id=str(staff.user_id),
        label=staff.display_name or staff.user.get_username(),
        permissions=permissions_for_role(staff.role),
    )


def principal_for_api_key(secret: str) -> Principal | None:
    """Resolve ``sq_<prefix>_<random>``; constant-time hash compare; revoked and expired keys never
    resolve (in another process than the one that revoked it: after the cache's few seconds)."""
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != "sq":
        return None
    digest = hash_api_key(secret)
    hit = API_KEYS.get(digest)
    if hit is not None and (hit[1] is None or hit[1] > time.time()):
        return hit[0]
    now = timezone.now()
    key = (ApiKey.objects.filter(prefix=parts[1], revoked_at__isnull=True, tenant__is_active=True)
           .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)).first())
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        return None
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    principal = Principal(
        tenant_id=key.tenant_id, kind="api_key", actor_id=str(key.pk), label=key.name,
        permissions=expand_scopes(list(key.scopes)),
    )
    API_KEYS.put(digest, (principal, key.expires_at.timestamp() if key.expires_at else None))
    return principal


def api_key_tenant(prefix: str) -> int | None:
    """The tenant a key prefix belongs to (for auditing failed attempts with it), or None."""
    return ApiKey.objects.filter(prefix=prefix).values_list("tenant_id", flat=True).first()


def audit_log(tenant_id: int) -> QuerySet[AuditLog]:
    return AuditLog.objects.filter(tenant_id=tenant_id).order_by("-id")


def api_keys(tenant_id: int) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(tenant_id=tenant_id).order_by("-id")


# -- outgoing webhooks -----------------------------------------------------------------------------


def webhook_endpoints(tenant_id: int) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(tenant_id=tenant_id)


def webhook_deliveries(tenant_id: int, *, endpoint_id: int | None = None,
                       state: str | None = None) -> QuerySet[WebhookDelivery]:
    qs = WebhookDelivery.objects.filter(tenant_id=tenant_id).select_related("event", "endpoint")
    if endpoint_id is not None:
        qs = qs.filter(endpoint_id=endpoint_id)
    if state:
        qs = qs.filter(state=state)
    return qs
