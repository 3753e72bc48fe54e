"""REST API of the core app: who am I, the audit log and the tenant's API keys.

Mounted at ``/api/v1/`` (``PREFIX = ""``): ``/me``, ``/audit-log``, ``/api-keys`` and ``/webhooks/…``
(:mod:`.api_webhooks`)."""


import datetime as dt
from typing import Annotated, Any

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema, Status

from .api_webhooks import router as webhooks_router
from .errors import Forbidden, NotFound
from .http import ERRORS, ApiDatetime, BodyIn, Id, idempotent, max_len, principal, require
from .models import ApiKey, Tenant
from .pagination import KeysetPagination, paginate
from .permissions import expand_scopes
from .selectors import api_keys, audit_log
from .services import do_create_api_key, do_revoke_api_key

PREFIX = ""
router = Router(tags=["core"])


class TenantOut(Schema):
    id: int
    slug: str
    name: str
    kind: str
    time_zone: str


class MeOut(Schema):
    tenant: TenantOut
    kind: str = Field(description="staff | api_key | system")
    actor_id: str
    label: str
    permissions: list[str]


@router.get("/me", response={200: MeOut, **ERRORS}, summary="当前调用者")
def me(request: HttpRequest) -> Any:
    p = principal(request)
    tenant = Tenant.objects.get(pk=p.tenant_id)
    return {
        "tenant": tenant, "kind": p.kind, "actor_id": p.actor_id, "label": p.label,
        "permissions": sorted(p.permissions),
    }


# --- audit log ----------------------------------------------------------------------------------

class AuditOut(Schema):
    id: int
    actor_type: str
    actor_id: str
    actor_label: str
    action: str
    object_type: str
    object_id: str
    reason: str
    data: dict[str, Any]
    created_at: dt.datetime


class AuditFilter(Schema):
    object_type: str | None = None
    object_id: str | None = None
    action: str | None = None


@router.get("/audit-log", response={200: list[AuditOut], **ERRORS}, summary="审计日志")
@paginate(KeysetPagination)
def list_audit(request: HttpRequest, filters: Query[AuditFilter]) -> Any:
    p = require(request, "audit.read")
    qs = audit_log(p.tenant_id)
    if filters.object_type:
        qs = qs.filter(object_type=filters.object_type)
    if filters.object_id:
        qs = qs.filter(object_id=filters.object_id)
    if filters.action:
        qs = qs.filter(action=filters.action)
    return qs


# --- API keys -----------------------------------------------------------------------------------

class ApiKeyIn(BodyIn):
    name: str = Field(min_length=1, max_length=max_len(ApiKey, "name"))
    scopes: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        min_length=1, max_length=64, description="`*`, `<area>.read` or `<area>.write`")
    expires_at: ApiDatetime | None = Field(None, description="the key stops working then; omitted: never")


class ApiKeyOut(Schema):
    """Never carries the secret or its hash."""

    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


class ApiKeyCreatedOut(ApiKeyOut):
    secret: str = Field(description="shown once; store it now")


def _key_out(key: ApiKey) -> dict[str, Any]:
    return {"id": key.pk, "name": key.name, "prefix": key.prefix, "scopes": list(key.scopes),
            "created_at": key.created_at, "last_used_at": key.last_used_at, "expires_at": key.expires_at,
            "revoked_at": key.revoked_at}


@router.get("/api-keys", response={200: list[ApiKeyOut], **ERRORS}, summary="API 密钥列表")
@paginate(KeysetPagination, item=_key_out)
def list_api_keys(request: HttpRequest) -> Any:
    p = require(request, "settings.read")
    return api_keys(p.tenant_id)


@router.post("/api-keys", response={201: ApiKeyCreatedOut, **ERRORS}, summary="创建 API 密钥")
@idempotent
def create_api_key(request: HttpRequest, payload: ApiKeyIn) -> Any:
    p = require(request, "settings.write")
    # a key never gets more than its creator has (no escalation through a settings.write key)
    beyond = sorted(expand_scopes(payload.scopes) - p.permissions)
    if beyond:
        raise Forbidden(_("不能授予自己没有的权限: %(p)s") % {"p": ", ".join(beyond)},
                        details={"field": "scopes", "permissions": beyond})
    created_by = int(p.actor_id) if p.kind == "staff" and p.actor_id.isdigit() else None
    key, secret = do_create_api_key(p, name=payload.name, scopes=payload.scopes, created_by_id=created_by,
                                    expires_at=payload.expires_at)
    return Status(201, ApiKeyCreatedOut(**_key_out(key), secret=secret))


@router.post("/api-keys/{key_id}/revoke", response={200: ApiKeyOut, **ERRORS}, summary="吊销 API 密钥")
@idempotent
def revoke_api_key(request: HttpRequest, key_id: Id) -> Any:
    p = require(request, "settings.write")
    key = api_keys(p.tenant_id).filter(pk=key_id).first()
    if key is None:
        raise NotFound(_("API 密钥不存在"), details={"key_id": key_id})
    return ApiKeyOut(**_key_out(do_revoke_api_key(p, key)))


# --- outgoing webhooks (/webhooks/…, shequn.core.api_webhooks) ---------------------------------

router.add_router("/webhooks", webhooks_router)
