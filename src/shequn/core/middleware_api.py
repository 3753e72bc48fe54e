"""The REST API's request guard: body size, content type, and Django's own errors in the API's
error shape.

Runs before anything reads the body. Under ``/api/``:

* a body larger than the operation's limit → 413 ``payload_too_large`` (default
  ``settings.SHEQUN_API_MAX_BODY``, 1 MiB; bulk endpoints register a larger one);
* a non-empty body whose content type the operation does not take → 415
  ``unsupported_media_type`` (JSON everywhere, ``multipart/form-data`` where an app registered it,
  any type for raw endpoints such as payment callbacks);
* a query parameter given more than once → 422 naming it (every parameter is a single value);
* an error response Django produced itself (its HTML 400 for ``DATA_UPLOAD_MAX_MEMORY_SIZE``, 404
  for an unknown path, 405, 500) → the same status in the ``{code, message, details}`` shape.

Apps register their exceptions with ``register_body_rule(path_regex, content_types=..., max_body=...)``
from their ``api.py`` (the API is the only caller)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _

API_PREFIX = "/api/"
DEFAULT_MAX_BODY = 1024 * 1024
JSON_TYPES = frozenset({"application/json"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class BodyRule:
    pattern: re.Pattern[str]
    #: the methods the rule covers (``None``: all)
    methods: frozenset[str] | None
    #: accepted media types; ``None``: any (the handler reads the raw body itself)
    content_types: frozenset[str] | None
    max_body: int | None


_RULES: list[BodyRule] = []


def register_body_rule(path_regex: str, *, content_types: Iterable[str] | None = JSON_TYPES,
                       max_body: int | None = None, methods: Iterable[str] | None = None) -> None:
    """Let the operations whose path (``request.path``) matches ``path_regex`` take other content
    types or a larger body than the API's default. ``content_types=None``: any (the body is read
    raw, or not at all)."""
    _RULES.append(BodyRule(re.compile(path_regex), None if methods is None else frozenset(methods),
                           None if content_types is None else frozenset(content_types), max_body))


def default_max_body() -> int:
    return int(getattr(settings, "SHEQUN_API_MAX_BODY", DEFAULT_MAX_BODY))


def _rule_for(method: str, path: str) -> BodyRule | None:
    return next((r for r in _RULES if (r.methods is None or method in r.methods) and r.pattern.search(path)), None)


def _error(status: int, code: str, message: str, details: object = None) -> JsonResponse:
    return JsonResponse({"code": code, "message": message, "details": details}, status=status,
                        json_dumps_params={"ensure_ascii": False})


def _content_length(request: HttpRequest) -> int:
    try:
        return max(0, int(request.META.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


def _repeated_query_parameter(request: HttpRequest) -> JsonResponse | None:
    """Every query parameter of the API is a single value: ``?status=a&status=b`` is not silently
    read as ``b``."""
    repeated = sorted(k for k, values in request.GET.lists() if len(values) > 1)
    if not repeated:
        return None
    return _error(422, "validation_error", _("请求数据不合法"),
                  [{"field": f"query.{k}", "message": "given more than once", "type": "repeated"} for k in repeated])


def check_request(request: HttpRequest) -> JsonResponse | None:
    """The 413/415/422 answer for an API request, or None when it may be handled."""
    repeated = _repeated_query_parameter(request)
    if repeated is not None:
        return repeated
    if request.method not in _BODY_METHODS:
        return None
    length = _content_length(request)
    rule = _rule_for(request.method or "", request.path)
    limit = rule.max_body if rule and rule.max_body is not None else default_max_body()
    if length > limit:
        return _error(413, "payload_too_large", _("请求体过大 (上限 %(n)d 字节)") % {"n": limit},
                      {"max_bytes": limit, "content_length": length})
    if length == 0:
        return None
    accepted = rule.content_types if rule else JSON_TYPES
    media_type = (request.content_type or "").lower()
    if accepted is not None and media_type not in accepted and not (
            "application/json" in accepted and media_type.startswith("application/") and media_type.endswith("+json")):
        ok = ", ".join(sorted(accepted))
        message = _("不支持的请求内容类型 %(t)s, 需要 %(ok)s") % {"t": media_type or "-", "ok": ok}
        return _error(415, "unsupported_media_type", message,
                      {"content_type": media_type, "accepted": sorted(accepted)})
    return None


_DJANGO_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                 413: "payload_too_large", 500: "internal_error"}


def _as_api_error(response: HttpResponse) -> HttpResponse:
    if response.status_code < 400 or (response.get("Content-Type") or "").startswith("application/json"):
        return response
    status = response.status_code
    messages = {400: _("请求无法处理"), 404: _("资源不存在"), 405: _("不支持的请求方法"),
                500: _("服务器内部错误, 请稍后重试")}
    converted = _error(status, _DJANGO_CODES.get(status, "error"), messages.get(status, _("请求无法处理")))
    if "Allow" in response:
        converted["Allow"] = response["Allow"]
    return converted


class ApiGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        refused = check_request(request)
        if refused is not None:
            return refused
        return _as_api_error(self.get_response(request))
