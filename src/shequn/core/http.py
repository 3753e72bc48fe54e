"""Shared pieces of the REST API: authentication, the one error shape, the strict input layer and
``Idempotency-Key`` handling. Every app's ``api.py`` builds on these."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import ipaddress
import json
import re
from collections.abc import Callable
from typing import Annotated, Any

from django.db import models, transaction
from django.http import HttpRequest, HttpResponse
from django.http.request import RawPostDataException
from django.utils import timezone
from django.utils.translation import gettext as _
from ninja import Field, Schema, Status
from ninja.security import APIKeyHeader, HttpBearer
from ninja.security.session import SessionAuth
from pydantic import AfterValidator, BeforeValidator, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from . import throttle
from .errors import Conflict, Forbidden, Invalid, TooManyAttempts
from .permissions import Principal
from .selectors import api_key_tenant, principal_for_api_key, principal_for_staff, staff_memberships_for_user
from .services import do_begin_idempotent, do_finish_idempotent, request_fingerprint


def throttled_key_principal(request: HttpRequest, secret: str) -> Principal | None:
    """Resolve an API key, counting failures per address and per key prefix: past the limits the
    caller gets 429 ``rate_limited`` (even with a good key) until the window has passed."""
    ip = throttle.client_ip(request) or "-"
    parts = secret.split("_", 2)
    prefix = parts[1][:16] if len(parts) == 3 else ""
    wait = max(throttle.retry_after_cached(throttle.API_KEY_ADDRESS, ip),
               throttle.retry_after_cached(throttle.API_KEY_PREFIX, prefix) if prefix else 0)
    if wait:
        raise TooManyAttempts(throttle.wait_message(wait), details={"retry_after": wait})
    found = principal_for_api_key(secret)
    if found is not None:
        return found
    tenant_id = api_key_tenant(prefix) if prefix else None
    if tenant_id is None:
        throttle.do_hit(throttle.API_KEY_ADDRESS, ip)
        return None
    system = Principal.system(tenant_id, label="api")
    throttle.do_hit_audited(throttle.API_KEY_ADDRESS, ip, system, label=f"{prefix}…")
    throttle.do_hit_audited(throttle.API_KEY_PREFIX, prefix, system, label=f"{prefix}…")
    return None


class BearerKeyAuth(HttpBearer):
    openapi_description = "Per-tenant API key: `Authorization: Bearer sq_…`"

    def authenticate(self, request: HttpRequest, token: str) -> Principal | None:
        return throttled_key_principal(request, token)


class HeaderKeyAuth(APIKeyHeader):
    param_name = "X-API-Key"

    def authenticate(self, request: HttpRequest, key: str | None) -> Principal | None:
        return throttled_key_principal(request, key) if key else None


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
                                    413: ErrorOut, 415: ErrorOut,
                                    422: ErrorOut, 429: ErrorOut, 500: ErrorOut}

# --- the strict input layer ----------------------------------------------------------------------
#
# Every request body schema derives from ``BodyIn``: integers and booleans are strict (``"10"``,
# ``true`` or ``10.0`` for an amount are a 422, never coerced), strings carry the model column's
# ``max_length`` (``max_len``), money and quantities carry bounds (``Fen``, ``Quantity``), ids fit a
# 64-bit column (``Id``), timestamps are ISO 8601 strings between 2000 and 2100 (``ApiDatetime``).
# Query and path parameters arrive as strings, so they are not strict, but carry the same bounds.

#: the largest id a BIGINT column holds; a larger id in a path or body is a 422, not a 500
MAX_ID = 2**63 - 1
#: the largest amount of money the API accepts in one field: 100 million yuan
MAX_FEN = 10_000_000_000
#: the largest quantity of one line, one lottery ticket count, …
MAX_QUANTITY = 100_000
#: the years a timestamp may fall in
MIN_YEAR, MAX_YEAR = 2000, 2100

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
NonNegative = Annotated[int, Field(ge=0, le=MAX_ID)]
Fen = Annotated[int, Field(ge=0, le=MAX_FEN, description="integer fen (分)")]
PositiveFen = Annotated[int, Field(ge=1, le=MAX_FEN, description="integer fen (分), > 0")]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
Limit = Annotated[int, Field(ge=1, le=500)]


def max_len(model: type[models.Model], name: str) -> int:
    """The ``max_length`` of a model's char column: the schema states what the database holds."""
    length = model._meta.get_field(name).max_length  # type: ignore[union-attr]
    assert length, f"{model.__name__}.{name} has no max_length"
    return int(length)


_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:?\d{2})?$")


def _parse_datetime(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATETIME.match(value.strip()):
        raise PydanticCustomError("datetime_parsing", "Input should be an ISO 8601 date-time string")
    text = value.strip()
    try:
        return dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError as exc:
        raise PydanticCustomError("datetime_parsing", "Input should be an ISO 8601 date-time string") from exc


def _datetime_in_range(value: dt.datetime) -> dt.datetime:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise PydanticCustomError("datetime_range", "Year must be between {min_year} and {max_year}",
                                  {"min_year": MIN_YEAR, "max_year": MAX_YEAR})
    if timezone.is_naive(value):  # no offset: the server's time zone (what Django assumes when saving)
        value = timezone.make_aware(value)
    return value


def _check_ip(value: str) -> str:
    if value == "":
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise PydanticCustomError("ip_address", "Input should be an IPv4 or IPv6 address") from exc


#: an IPv4 or IPv6 address (or empty): ``"abc"`` is a 422, not a database error
IpAddress = Annotated[str, Field(max_length=45, description="IPv4 or IPv6 address"), AfterValidator(_check_ip)]


#: an ISO 8601 timestamp (numbers are refused, not read as Unix time) between 2000 and 2100
ApiDatetime = Annotated[dt.datetime, BeforeValidator(_parse_datetime), AfterValidator(_datetime_in_range)]

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _parse_date(value: Any) -> Any:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value.strip()):
        raise PydanticCustomError("date_parsing", "Input should be a date string YYYY-MM-DD")
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError as exc:
        raise PydanticCustomError("date_parsing", "Input should be a date string YYYY-MM-DD") from exc
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise PydanticCustomError("date_range", "Year must be between {min_year} and {max_year}",
                                  {"min_year": MIN_YEAR, "max_year": MAX_YEAR})
    return day


#: a calendar day ``YYYY-MM-DD`` between 2000 and 2100 (``0`` is refused, not read as 1970-01-01)
ApiDate = Annotated[dt.date, BeforeValidator(_parse_date)]


class BodyIn(Schema):
    """Base of every JSON request body: strict integers, numbers and booleans (no ``"10"`` or
    ``true`` for an amount), so what the schema says is what the API accepts."""

    model_config = ConfigDict(strict=True)

    @model_validator(mode="wrap")
    @classmethod
    def _object_only(cls, value: Any, handler: Any) -> Any:
        # ninja's Schema reads attributes of any object: ``[null, null]`` or ``"x"`` would pass as
        # an object whose fields are all missing. A body is a JSON object.
        if not isinstance(value, dict | cls):
            raise PydanticCustomError("model_type", "Input should be an object")
        return handler(value)


def patch_changes(body: Schema, *, nullable: tuple[str, ...] = (), rename: dict[str, str] | None = None,
                  param: str = "body") -> dict[str, Any]:
    """The fields a PATCH body sets (``exclude_unset``): a field left out is unchanged, ``null``
    clears a field listed in ``nullable`` and is a 422 naming the field for every other one.
    ``rename`` maps body names to the service's keyword names."""
    changes = body.model_dump(exclude_unset=True)
    nulls = sorted(k for k, v in changes.items() if v is None and k not in nullable)
    if nulls:
        raise Invalid(_("字段不能为 null: %(f)s") % {"f": ", ".join(nulls)},
                      details=[{"field": f"body.{param}.{k}", "message": "null", "type": "null"} for k in nulls])
    rename = rename or {}
    return {rename.get(k, k): v for k, v in changes.items()}


#: the marker of a stored answer that keeps the exact bytes (older records hold a JSON body)
_RAW = "__raw_response__"


def _stored_answer(response: HttpResponse) -> dict[str, Any]:
    content_type = response.get("Content-Type", "")
    try:
        return {_RAW: 1, "body": response.content.decode("utf-8"), "content_type": content_type}
    except UnicodeDecodeError:  # a binary answer: kept as base64
        return {_RAW: 1, "body_b64": base64.b64encode(response.content).decode(), "content_type": content_type}


def _replay(status: int, stored: Any) -> Any:
    if isinstance(stored, dict) and stored.get(_RAW) == 1:
        body = (base64.b64decode(stored["body_b64"]) if "body_b64" in stored else stored["body"].encode("utf-8"))
        return HttpResponse(body, status=status, content_type=stored["content_type"])
    return Status(status, stored)


def _legacy_jsonable(data: Any) -> Any:
    if isinstance(data, Schema):
        return data.model_dump(mode="json")
    if isinstance(data, list):
        return [_legacy_jsonable(d) for d in data]
    return json.loads(json.dumps(data, default=str))


def _request_bytes(request: HttpRequest) -> bytes:
    """The raw body; for a multipart upload already parsed by django-ninja (``request.body`` is then
    unreadable) the form fields and the uploaded files' contents."""
    try:
        return request.body
    except RawPostDataException:
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
    body is a 409. Handlers return ``data``, ``Status(status, data)`` or ``(status, data)``.

    The answer is rendered through the operation's response schema INSIDE the transaction (an answer
    that does not validate rolls the effect back with the key), and the stored record keeps the
    exact response: status, body bytes and content type; a replay returns them byte for byte.
    ``shequn.api.main`` attaches each operation to its handler (``wrapper.operation``)."""
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
                return _replay(record.status_code, record.response)
            result = func(request, *args, **kwargs)
            operation = getattr(wrapper, "operation", None)
            if operation is not None:
                temporal = operation.api.create_temporal_response(request)
                response = operation._result_to_response(request, result, temporal)
                do_finish_idempotent(record, response.status_code, _stored_answer(response))
                return response
            if isinstance(result, Status):
                status, data = result.status_code, result.value
            else:
                status, data = result if isinstance(result, tuple) else (200, result)
            body = _legacy_jsonable(data)
            do_finish_idempotent(record, status, body)
            return Status(status, body)

    wrapper.idempotent = True  # type: ignore[attr-defined]
    return wrapper
