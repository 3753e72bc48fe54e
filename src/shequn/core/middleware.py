"""Resolve the console user's active tenant and principal for every request."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .selectors import principal_for_staff, staff_memberships_for_user

SESSION_KEY = "shequn_tenant_id"


class TenantMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.tenant = None  # type: ignore[attr-defined]
        request.principal = None  # type: ignore[attr-defined]
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            memberships = list(staff_memberships_for_user(user.pk))
            if memberships:
                wanted = request.session.get(SESSION_KEY)
                staff = next((m for m in memberships if m.tenant_id == wanted), memberships[0])
                request.tenant = staff.tenant  # type: ignore[attr-defined]
                request.staff = staff  # type: ignore[attr-defined]
                request.principal = principal_for_staff(staff)  # type: ignore[attr-defined]
        return self.get_response(request)
