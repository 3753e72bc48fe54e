"""Shared pieces of the REST API: authentication, the one error shape, cursor pagination and
``Idempotency-Key`` handling. Every app's ``api.py`` builds on these."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.http.request import RawPostDataException
from django.utils.translation import gettext as _
from ninja import Schema, Status
from ninja.security import APIKeyHeader, HttpBearer
from ninja.security.session import SessionAuth

from .errors import Conflict, Forbidden, Invalid
from .permissions import Principal
from .selectors import principal_for_api_key
from .services import do_begin_idempotent, do_finish_idempotent, request_fingerprint


class BearerKeyAuth(HttpBearer):
    openapi_description = "Per-tenant API key: `Authorization: Bearer sq_…`"

    def authenticate(self, request: HttpRequest, token: str) -> Principal | None:
        return principal_for_api_key(token)


class HeaderKeyAuth(APIKeyHeader):
    param_name = "X-API-Key"

    def authenticate(self, request: HttpRequest, key: str | None) -> Principal | None:
        return principal_for_api_key(key) if key else None


class ConsoleSessionAuth(SessionAuth):
    """The console's logged-in staff user (CSRF-checked by django-ninja).

    Without a logged-in user there is no session to protect: skip the CSRF check so that an
    integration with a bad or revoked API key gets 401, not a confusing 403 "CSRF check failed"."""

    def _get_key(self, request: HttpRequest) -> str | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        return super()._get_key(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Principal | None:
        principal = getattr(request, "principal", None)
        if principal is None and request.user.is_authenticated:
            from .selectors import principal_for_staff, staff_memberships_for_user

            staff = staff_memberships_for_user(request.user.pk).first()
            principal = principal_for_staff(staff) if staff else None
        return principal


API_AUTH = [BearerKeyAuth(), HeaderKeyAuth(), ConsoleSessionAuth()]


def principal(request: HttpRequest) -> Principal:
    p = request.auth  # type: ignore[attr-defined]
    assert isinstance(p, Principal)
    return p


def require(request: HttpRequest, permission: str) -> Principal:
    """Return the caller's principal or raise 403 naming the missing permission."""
    p = principal(request)
    if not p.can(permission):
        raise Forbidden(_("没有权限: %(perm)s") % {"perm": permission}, details={"permission": permission})
    return p


class ErrorOut(Schema):
    code: str
    message: str
    details: Any = None


#: the error responses every operation declares; 500 ``internal_error`` is what an unhandled
#: exception becomes (``shequn.api.main``), never a traceback
ERRORS: dict[int, type[Schema]] = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut,
                                    422: ErrorOut, 500: ErrorOut}

T = TypeVar("T")


class Page(Schema, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def _encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return int(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(_("无效的分页游标"), details=[{"field": "query.cursor", "message": "bad cursor"}]) from exc


def paginate(qs: QuerySet[Any], cursor: str | None, limit: int, *, descending: bool = True) -> dict[str, Any]:
    """Keyset pagination on the primary key: stable under inserts, O(limit) per page."""
    limit = max(1, min(limit, 500))
    if cursor:
        last = _decode_cursor(cursor)
        qs = qs.filter(pk__lt=last) if descending else qs.filter(pk__gt=last)
    rows: Sequence[Any] = list(qs.order_by("-pk" if descending else "pk")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": rows, "next_cursor": _encode_cursor(rows[-1].pk) if more and rows else None}


def _to_jsonable(data: Any) -> Any:
    if isinstance(data, Schema):
        return data.model_dump(mode="json")
    if isinstance(data, list):
        return [_to_jsonable(d) for d in data]
    return json.loads(json.dumps(data, default=str))


def _request_bytes(request: HttpRequest) -> bytes:
    """The raw body; for a multipart upload already parsed by django-ninja (``request.body`` is then
    unreadable) the form fields and the uploaded files' contents."""
    try:
        return request.body
    except RawPostDataException:
        import hashlib

        h = hashlib.sha256()
        for name in sorted(request.POST):
            for value in request.POST.getlist(name):
                h.update(f"{name}={value}\n".encode())
        for name in sorted(request.FILES):
            for upload in request.FILES.getlist(name):
                h.update(f"{name}:{upload.name}\n".encode())
                for chunk in upload.chunks():
                    h.update(chunk)
                upload.seek(0)
        return h.hexdigest().encode()


def idempotent(func: Callable[..., Any]) -> Callable[..., Any]:
    """Honour ``Idempotency-Key`` on a POST handler.

    The key, the effect and the stored answer commit in one transaction, so a retry either replays
    the first answer or (when the first attempt rolled back) runs again; the same key with another
    body is a 409. Handlers return ``data``, ``Status(status, data)`` or ``(status, data)``."""

    @functools.wraps(func)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        key = request.headers.get("Idempotency-Key")
        if not key:
            return func(request, *args, **kwargs)
        if len(key) > 128:
            raise Invalid(_("Idempotency-Key 过长"), details=[{"field": "header.Idempotency-Key"}])
        p = principal(request)
        scope = f"{request.method} {request.path}"
        fingerprint = request_fingerprint(_request_bytes(request))
        with transaction.atomic():
            record, fresh = do_begin_idempotent(p.tenant_id, scope, key, fingerprint)
            if not fresh:
                if record.request_hash != fingerprint:
                    raise Conflict(_("同一个 Idempotency-Key 用于了不同的请求"), code="idempotency_mismatch")
                if record.status_code is None:
                    raise Conflict(_("同一个请求正在处理中"), code="idempotency_in_progress")
                return Status(record.status_code, record.response)
            result = func(request, *args, **kwargs)
            if isinstance(result, Status):
                status, data = result.status_code, result.value
            else:
                status, data = result if isinstance(result, tuple) else (200, result)
            body = _to_jsonable(data)
            do_finish_idempotent(record, status, body)
            return Status(status, body)

    return wrapper
