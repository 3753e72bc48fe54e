"""The REST API at ``/api/v1/``: one NinjaAPI that mounts every app's router."""

from __future__ import annotations

import functools
import importlib
import logging
import re
from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.translation import get_language, gettext_noop
from django.utils.translation import gettext as _
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.operation import Operation

from shequn.analytics import api_health as analytics_api_health
from shequn.core.errors import ShequnError
from shequn.core.http import API_AUTH
from shequn.core.middleware_api import register_body_rule

log = logging.getLogger(__name__)

api = NinjaAPI(
    title="shequn API",
    version="1.0.0",
    description="社群 — members, communities, activity, engines. Errors: `{code, message, details}`.",
    auth=API_AUTH,
    urls_namespace="api-v1",
    docs_url="/docs",
)

ROUTED_APPS = (
    "core", "members", "communities", "activity", "connectors", "moderation", "engagement",
    "commerce", "ledger", "referrals", "analytics",
)

for _app in ROUTED_APPS:
    _module = importlib.import_module(f"shequn.{_app}.api")
    _router = getattr(_module, "router", None)
    if _router is not None:
        api.add_router(f"/{getattr(_module, 'PREFIX', _app)}", _router)

# analytics' health and reach (analytics/api_health.py) beside its read-only router: not under that
# router's replica decorator, because PATCH /analytics/health/settings writes
api.add_router("/analytics", analytics_api_health.router)

API_ROOT = "/api/v1"


def _path_regex(prefix: str, path: str) -> str:
    parts = [p for p in f"{prefix}/{path}".split("/") if p]
    return "^" + re.escape(API_ROOT) + "".join(
        "/[^/]+" if p.startswith("{") else "/" + re.escape(p) for p in parts) + "/?$"


def declared_query_parameters(op: Operation) -> frozenset[str]:
    """The query parameter names an operation declares (what its OpenAPI entry lists): the fields of
    its query models, ``Query[FilterSchema]`` flattened to the filter's own fields."""
    names: set[str] = set()
    for model in op.models:
        if model.__ninja_param_source__ != "query":
            continue
        flat = getattr(model, "__ninja_flatten_map__", None)
        names |= set(flat) if flat else {f.alias or n for n, f in model.model_fields.items()}
    return frozenset(names)


def _is_webhook(op: Operation) -> bool:
    """Provider callbacks (payment notifications) answer a third party that may add its own query
    parameters: they are not refused for them."""
    return bool((op.openapi_extra or {}).get("x-shequn-webhook"))


def _refuse_unknown_query(op: Operation, declared: frozenset[str]) -> None:
    """Make ``op`` answer 422 ``validation_error`` naming every query parameter it does not declare
    (``?stauts=open``, OpenAPI's exploded object ``?a=1&b=2`` for ``status``), together with the
    declared parameters' own errors, after authentication. A typo is never silently ignored."""
    original = op._get_values

    @functools.wraps(original)
    def get_values(request: HttpRequest, path_params: Any, temporal_response: HttpResponse) -> Any:
        unknown = sorted(k for k in request.GET if k not in declared)
        errors = [{"loc": ("query", k), "msg": "Unknown query parameter", "type": "extra_forbidden"}
                  for k in unknown]
        try:
            values = original(request, path_params, temporal_response)
        except NinjaValidationError as exc:
            raise NinjaValidationError([*exc.errors, *errors]) from exc
        if errors:
            raise NinjaValidationError(errors)
        return values

    op._get_values = get_values  # type: ignore[method-assign]


# ``core.http.idempotent`` renders and stores the exact answer through its operation's response
# schema: hand every idempotent handler the (bound) operation that runs it. Operations without a
# body (``POST …/cancel``) ignore whatever body is sent, so the request guard does not ask for JSON.
# Every operation (but provider webhooks) refuses query parameters it does not declare.
for _bound in api._get_bound_routers():
    for _path, _view in _bound.path_operations.items():
        for _op in _view.operations:
            if getattr(_op.view_func, "idempotent", False):
                _op.view_func.operation = _op  # type: ignore[attr-defined]
            if not _is_webhook(_op):
                _refuse_unknown_query(_op, declared_query_parameters(_op))
            if not any(m.__ninja_param_source__ in ("body", "form", "file") for m in _op.models):
                register_body_rule(_path_regex(_bound.prefix, _path), content_types=None, methods=_op.methods)


def _error(request: HttpRequest, status: int, code: str, message: str, details: object = None) -> HttpResponse:
    return api.create_response(request, {"code": code, "message": message, "details": details}, status=status)


@api.exception_handler(ShequnError)
def _shequn_error(request: HttpRequest, exc: ShequnError) -> HttpResponse:
    return _error(request, exc.status, exc.code, exc.message, exc.details)


def _english() -> bool:
    return (get_language() or "").startswith("en")


#: pydantic error type → Chinese message (msgids; ``%(x)s`` filled from the error's ctx)
_PYDANTIC_ZH = {
    "missing": gettext_noop("必填"),
    "string_too_short": gettext_noop("至少 %(min_length)s 个字符"),
    "string_too_long": gettext_noop("最多 %(max_length)s 个字符"),
    "too_short": gettext_noop("至少 %(min_length)s 项"),
    "too_long": gettext_noop("最多 %(max_length)s 项"),
    "literal_error": gettext_noop("取值无效, 可选: %(expected)s"),
    "enum": gettext_noop("取值无效, 可选: %(expected)s"),
    "int_parsing": gettext_noop("必须是整数"),
    "int_type": gettext_noop("必须是整数"),
    "int_from_float": gettext_noop("必须是整数"),
    "float_parsing": gettext_noop("必须是数字"),
    "float_type": gettext_noop("必须是数字"),
    "bool_parsing": gettext_noop("必须是 true 或 false"),
    "bool_type": gettext_noop("必须是 true 或 false"),
    "string_type": gettext_noop("必须是字符串"),
    "list_type": gettext_noop("必须是数组"),
    "dict_type": gettext_noop("必须是对象"),
    "model_type": gettext_noop("必须是对象"),
    "model_attributes_type": gettext_noop("必须是对象"),
    "datetime_parsing": gettext_noop("时间格式无效, 需要 ISO 8601"),
    "date_parsing": gettext_noop("时间格式无效, 需要 ISO 8601"),
    "date_range": gettext_noop("时间必须在 %(min_year)s 年到 %(max_year)s 年之间"),
    "datetime_from_date_parsing": gettext_noop("时间格式无效, 需要 ISO 8601"),
    "datetime_type": gettext_noop("时间格式无效, 需要 ISO 8601"),
    "greater_than_equal": gettext_noop("必须大于或等于 %(ge)s"),
    "greater_than": gettext_noop("必须大于 %(gt)s"),
    "less_than_equal": gettext_noop("必须小于或等于 %(le)s"),
    "less_than": gettext_noop("必须小于 %(lt)s"),
    "json_invalid": gettext_noop("不是合法的 JSON"),
    "value_error": gettext_noop("值无效"),
    "datetime_range": gettext_noop("时间必须在 %(min_year)s 年到 %(max_year)s 年之间"),
    "ip_address": gettext_noop("必须是 IPv4 或 IPv6 地址"),
    "extra_forbidden": gettext_noop("不支持的参数"),
    "cursor_invalid": gettext_noop("无效的分页游标"),
}


def _field_message(err: dict[str, object]) -> str:
    english = str(err.get("msg", ""))
    msgid = _PYDANTIC_ZH.get(str(err.get("type", "")))
    if msgid is None or _english():
        return english
    raw_ctx = err.get("ctx")
    ctx: dict[str, object] = raw_ctx if isinstance(raw_ctx, dict) else {}
    try:
        return _(msgid) % {k: str(v) for k, v in ctx.items()} if "%(" in msgid else _(msgid)
    except (KeyError, TypeError, ValueError):
        return english


@api.exception_handler(NinjaValidationError)
def _validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    """422 naming each bad field by its path (``body.payload.display_name``, ``query.limit``) with a
    message in the caller's language (Accept-Language; Chinese by default)."""
    details = [
        {"field": ".".join(str(p) for p in err.get("loc", ())), "message": _field_message(err),
         "type": err.get("type", "")}
        for err in exc.errors
    ]
    return _error(request, 422, "validation_error", _("请求数据不合法"), details)


@api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(request, 401, "unauthorized",
                  _("需要登录或有效的 API 密钥"))


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    code = {400: "bad_request", 404: "not_found", 403: "forbidden", 409: "conflict"}.get(exc.status_code, "error")
    message = str(exc)
    if message == "Cannot parse request body":
        code = "malformed_body"
        message = _("请求体无法解析, 需要合法的 JSON")
    elif message.startswith("CSRF check"):
        code = "csrf_failed"
        message = _("CSRF 校验失败, 请刷新页面后重试")
    return _error(request, exc.status_code, code, message)


def _django_field_errors(exc: DjangoValidationError) -> list[dict[str, str]]:
    if hasattr(exc, "error_dict"):
        return [{"field": f"body.{name}" if name != "__all__" else "body", "message": " ".join(str(m) for m in msgs)}
                for name, msgs in exc.message_dict.items()]
    return [{"field": "body", "message": " ".join(str(m) for m in exc.messages)}]


@api.exception_handler(DjangoValidationError)
def _django_validation_error(request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
    """A model's ``full_clean`` that reached the API: 422 naming each field, never a 500."""
    return _error(request, 422, "invalid", _("请求数据不合法"), _django_field_errors(exc))


_COLUMN = re.compile(r'(?:column|key \(|NOT NULL constraint failed: [\w]+\.|CHECK constraint failed: )"?(\w+)', re.I)


def _column_of(exc: Exception) -> str:
    diag = getattr(getattr(exc, "__cause__", None), "diag", None)
    name = getattr(diag, "column_name", None) or getattr(diag, "constraint_name", None)
    if name:
        return str(name)
    match = _COLUMN.search(str(exc))
    return match.group(1) if match else ""


@api.exception_handler(DataError)
def _data_error(request: HttpRequest, exc: DataError) -> HttpResponse:
    """A value the database refuses (too long, out of range) that the schema did not stop: 422 with
    the column when the database names it; the transaction rolled back, nothing is written."""
    log.warning("DataError reached the API in %s %s: %s", request.method, request.path, exc)
    return _error(request, 422, "invalid", _("请求数据不合法"),
                  [{"field": _column_of(exc) or "body", "message": "value not accepted by the database"}])


@api.exception_handler(IntegrityError)
def _integrity_error(request: HttpRequest, exc: IntegrityError) -> HttpResponse:
    """A uniqueness or constraint violation a service did not turn into a domain error: 409."""
    log.warning("IntegrityError reached the API in %s %s: %s", request.method, request.path, exc)
    return _error(request, 409, "conflict", _("与已有数据冲突"),
                  [{"field": _column_of(exc) or "body", "message": "constraint violated"}])


@api.exception_handler(OverflowError)
def _overflow_error(request: HttpRequest, exc: OverflowError) -> HttpResponse:
    return _error(request, 422, "invalid", _("请求数据不合法"), [{"field": "", "message": "number out of range"}])


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return _error(request, 413, "payload_too_large", _("请求体过大"))


@api.exception_handler(SuspiciousOperation)
def _suspicious(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    return _error(request, 400, "bad_request", _("请求无法处理"))


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    """A Django ``Http404`` raised inside a handler: the one error shape, not ninja's ``{detail}``."""
    return _error(request, 404, "not_found", _("资源不存在"))


@api.exception_handler(Exception)
def _internal_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    """Anything unhandled: 500 in the one error shape, in the caller's language. The body carries no
    traceback, exception text or request data (they may hold secrets or PII); the log gets the full
    traceback with the method and path, for the operator to find by time."""
    log.error("unhandled error in %s %s: %s", request.method, request.path, type(exc).__name__, exc_info=exc)
    return _error(request, 500, "internal_error",
                  _("服务器内部错误, 请稍后重试"))


_IDEMPOTENCY_PARAM = {
    "in": "header", "name": "Idempotency-Key", "required": False,
    "description": "Optional, ≤ 128 characters. A retry with the same key and body replays the first answer "
                   "without writing again; the same key with another body is a 409.",
    "schema": {"type": "string", "maxLength": 128},
}
_base_openapi_schema = api.get_openapi_schema


def _idempotent_operation_ids() -> frozenset[str]:
    """The operationIds of the operations that honour ``Idempotency-Key`` (``core.http.idempotent``)."""
    return frozenset(
        op.operation_id or api.get_openapi_operation_id(op)
        for bound in api._get_bound_routers() for view in bound.path_operations.values()
        for op in view.operations if getattr(op.view_func, "idempotent", False))


def _openapi_schema(*, path_prefix: str | None = None, path_params: dict[str, object] | None = None) -> object:
    """The generated schema plus the ``Idempotency-Key`` header on every operation that honours it
    (and only there: a client must not believe a retry of another POST is safe)."""
    schema = _base_openapi_schema(path_prefix=path_prefix, path_params=path_params)
    honoured = _idempotent_operation_ids()
    for item in schema["paths"].values():
        for operation in item.values():
            if operation.get("operationId") not in honoured:
                continue
            if not any(p.get("name") == "Idempotency-Key" for p in operation.get("parameters", [])):
                operation.setdefault("parameters", []).append(dict(_IDEMPOTENCY_PARAM))
    return schema


api.get_openapi_schema = _openapi_schema  # type: ignore[method-assign,assignment]


def grouped_urls(patterns: list[Any]) -> list[Any]:
    """django-ninja's operations as one flat list of about 200 ``path()``s, regrouped under one
    ``include()`` per first path segment (``commerce/``, ``referrals/``, …).

    Django resolves a list in order and records every pattern it tried (for the debug 404 page): on
    the flat list a request to ``commerce/flash-sales/1/buy`` matched ~150 routes and copied as many
    lists before it was served — 31 % of a gunicorn worker's CPU under the flash-sale load (py-spy,
    ``bench/load.py --profile``). Grouped, a request tries one prefix per app and the routes of its
    own app. Names, the order within an app and the views are unchanged, so ``reverse()`` and the
    OpenAPI schema are too. Only literal first segments are grouped (a route starting with a
    converter stays where it was)."""
    from django.urls import include, path  # noqa: PLC0415 - only when the URLconf is built

    out: list[Any] = []
    groups: dict[str, list[Any]] = {}
    for p in patterns:
        head, sep, rest = str(p.pattern).partition("/")
        if not sep or "<" in head or not rest:
            out.append(p)
            continue
        if head not in groups:
            groups[head] = []
            out.append((head, groups[head]))
        groups[head].append(path(rest, p.callback, kwargs=p.default_args, name=p.name))
    return [path(f"{item[0]}/", include(item[1])) if isinstance(item, tuple) else item for item in out]
