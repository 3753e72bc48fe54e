"""Security middleware: the console's Content-Security-Policy and the staff session limits.

* :class:`ConsoleCspMiddleware` gives ``/console/`` pages ``settings.SHEQUN_CONSOLE_CSP`` instead of
  ``SECURE_CSP`` (django-unfold's Alpine.js evaluates expressions with ``Function()``). It must come
  *after* Django's ``ContentSecurityPolicyMiddleware`` in ``MIDDLEWARE`` so that its response hook runs
  first and the policy it picks is the one Django writes.
* :class:`StaffSessionMiddleware` ends a console session that has been idle longer than
  ``SHEQUN_STAFF_IDLE_SECONDS``, that began more than ``SHEQUN_STAFF_MAX_SECONDS`` ago, or that began
  before its user's last "sign out everywhere"."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

from .staff_auth import SESSION_AUTH_AT, SESSION_SEEN_AT, audit_staff, sessions_valid_after

CONSOLE_PREFIX = "/console/"


class ConsoleCspMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith(CONSOLE_PREFIX) and not hasattr(response, "_csp_config"):
            response._csp_config = settings.SHEQUN_CONSOLE_CSP  # type: ignore[attr-defined]
        return response


def session_expired(request: HttpRequest, now: float) -> str:
    """Why this staff session must end now ("idle", "absolute", "signed_out_everywhere"), or ""."""
    session = request.session
    auth_at = session.get(SESSION_AUTH_AT)
    if not isinstance(auth_at, int | float):
        # a session made before these limits existed (or by a test's force_login): it starts now
        session[SESSION_AUTH_AT] = now
        session[SESSION_SEEN_AT] = now
        return ""
    seen_at = session.get(SESSION_SEEN_AT, auth_at)
    if now - float(seen_at) > settings.SHEQUN_STAFF_IDLE_SECONDS:
        return "idle"
    if now - float(auth_at) > settings.SHEQUN_STAFF_MAX_SECONDS:
        return "absolute"
    valid_after = sessions_valid_after(int(request.user.pk or 0))
    if valid_after is not None and float(auth_at) < valid_after:
        return "signed_out_everywhere"
    return ""


class StaffSessionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.is_staff:
            now = time.time()
            why = session_expired(request, now)
            if why:
                if why != "signed_out_everywhere":
                    audit_staff(user, "staff.session_expired", data={"reason": why})
                logout(request)
            # write the idle clock at most once a minute (saves a session write per request)
            elif now - float(request.session.get(SESSION_SEEN_AT, 0)) > 60:
                request.session[SESSION_SEEN_AT] = now
        return self.get_response(request)
