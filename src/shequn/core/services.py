"""Writers for tenants, staff, API keys, audit and idempotency."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from .errors import Conflict, Invalid
from .localcache import TTLCache
from .models import ApiKey, AuditLog, IdempotencyRecord, StaffMembership, StaffRole, Tenant
from .permissions import ALL, Principal


def do_audit(
    principal: Principal,
    action: str,
    obj_type: str,
    obj_id: object,
    *,
    reason: str = "",
    data: dict[str, Any] | None = None,
    actor_type: str | None = None,
    actor_id: str | None = None,
    actor_label: str | None = None,
) -> AuditLog:
    """Append one audit row. Call it inside the service's transaction so it commits with the change."""
    return AuditLog.objects.create(
        tenant_id=principal.tenant_id,
        actor_type=actor_type or principal.kind,
        actor_id=actor_id if actor_id is not None else principal.actor_id,
        actor_label=actor_label if actor_label is not None else principal.label,
        action=action,
        object_type=obj_type,
        object_id=str(obj_id),
        reason=reason,
        data=data or {},
    )


def do_create_tenant(*, slug: str, name: str, kind: str = Tenant.Kind.MERCHANT) -> Tenant:
    if Tenant.objects.filter(slug=slug).exists():
        raise Conflict(_("标识 %(slug)s 已被使用") % {"slug": slug}, details={"field": "slug"})
    return Tenant.objects.create(slug=slug, name=name, kind=kind)


@transaction.atomic
def do_create_operator(
    *, tenant: Tenant, username: str, password: str, role: str = StaffRole.OWNER, display_name: str = ""
) -> StaffMembership:
    """Create (or update) a console login with a staff role in ``tenant``."""
    if role not in StaffRole.values:
        raise Invalid(_("未知的角色: %(role)s") % {"role": role}, details={"field": "role"})
    user_model = get_user_model()
    user, _created = user_model.objects.get_or_create(username=username)
    user.is_staff = True
    user.is_active = True
    user.set_password(password)
    user.save()
    staff, _created = StaffMembership.objects.update_or_create(
        tenant=tenant, user=user, defaults={"role": role, "display_name": display_name, "is_active": True}
    )
    return staff


#: keys that resolved (``selectors.principal_for_api_key``), by the hash of their secret (the secret
#: itself is not kept), with their principal and expiry: a key revoked in another process stops
#: resolving here after at most this many seconds (``SHEQUN_API_KEY_CACHE_SECONDS``, default 5; 0
#: turns the cache off), in this process at once (:func:`do_revoke_api_key`). Only good keys are
#: cached, so a guess always meets the database and the throttle.
API_KEYS: TTLCache[tuple[Principal, float | None]] = TTLCache(
    "api-keys", float(getattr(settings, "SHEQUN_API_KEY_CACHE_SECONDS", 5)))


def hash_api_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def do_create_api_key(
    principal: Principal, *, name: str, scopes: list[str], created_by_id: int | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the one-time secret ``sq_<prefix>_<random>``. A key with
    ``expires_at`` stops working then."""
    unknown = [s for s in scopes if s != "*" and s not in ALL]
    if unknown:
        raise Invalid(_("未知的权限范围: %(s)s") % {"s": ", ".join(unknown)}, details={"field": "scopes"})
    if expires_at is not None and expires_at <= timezone.now():
        raise Invalid(_("过期时间必须晚于现在"), details={"field": "expires_at"})
    prefix = secrets.token_hex(4)
    secret = f"sq_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        tenant_id=principal.tenant_id, name=name, prefix=prefix, key_hash=hash_api_key(secret),
        scopes=scopes, created_by_id=created_by_id, expires_at=expires_at,
    )
    do_audit(principal, "api_key.create", "ApiKey", key.pk,
             data={"name": name, "scopes": scopes, "expires_at": expires_at.isoformat() if expires_at else None})
    return key, secret


@transaction.atomic
def do_revoke_api_key(principal: Principal, key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        do_audit(principal, "api_key.revoke", "ApiKey", key.pk)
        # now (this thread's next request) and at commit (another thread may have cached the key
        # again from the row as it was before this transaction committed)
        API_KEYS.clear()
        transaction.on_commit(API_KEYS.clear)
    return key


def request_fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def do_begin_idempotent(
    tenant_id: int, scope: str, key: str, fingerprint: str
) -> tuple[IdempotencyRecord, bool]:
    """Claim ``key`` for this request. Returns ``(record, fresh)``.

    ``fresh`` is False when the key was used before: the caller replays ``record`` (or answers 409
    when the stored fingerprint differs or the first request is still running)."""
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(
                tenant_id=tenant_id, scope=scope, key=key, request_hash=fingerprint
            )
            return record, True
    except IntegrityError:
        record = IdempotencyRecord.objects.get(tenant_id=tenant_id, scope=scope, key=key)
        return record, False


def do_finish_idempotent(record: IdempotencyRecord, status_code: int, response: Any) -> None:
    record.status_code = status_code
    record.response = response
    record.save(update_fields=["status_code", "response"])
