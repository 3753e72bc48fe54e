"""Refuse NUL characters in request input before anything reaches the database.

PostgreSQL text cannot hold U+0000 (psycopg raises ``DataError``), SQLite stores it silently: so
the same bad input would be a 500 on one database and stored garbage on the other. Django's form
fields already refuse NUL; this covers query strings everywhere, the path, and JSON bodies of the
REST API (``\\u0000`` escapes), answering 422 in the API's error shape naming the parameter."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils.translation import gettext as _

API_PREFIX = "/api/"


def _bad_field(request: HttpRequest) -> str | None:
    if "\x00" in request.path:
        return "path"
    for key, values in request.GET.lists():
        if "\x00" in key or any("\x00" in v for v in values):
            return key.replace("\x00", "")
    # JSON only: uploaded files (an XLSX is a zip) legitimately contain NUL bytes
    if (request.path.startswith(API_PREFIX) and request.method in ("POST", "PUT", "PATCH")
            and request.content_type == "application/json"):
        body = request.body
        if b"\\u0000" in body or b"\x00" in body:
            return "body"
    return None


class RejectNulMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        field = _bad_field(request)
        if field is None:
            return self.get_response(request)
        message = _("输入不能包含 NUL (\\u0000) 字符")
        if request.path.startswith(API_PREFIX):
            return JsonResponse({"code": "invalid", "message": message, "details": {"field": field}}, status=422,
                                json_dumps_params={"ensure_ascii": False})
        return HttpResponseBadRequest(message)
