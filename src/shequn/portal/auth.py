"""The member cookie and the view decorator that resolves the signed-in member for a tenant.

The cookie ``shequn_member`` holds a random session key signed with Django's signing (salted), not
the staff session: a member and an operator can be signed in on the same browser independently."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from shequn.core import throttle
from shequn.core.models import Tenant
from shequn.members.models import Member

from . import services

COOKIE = "shequn_member"
COOKIE_SALT = "shequn.portal.session"
REF_COOKIE = "shequn_ref"
REF_SALT = "shequn.portal.ref"
DEVICE_COOKIE = "shequn_dev"
MAX_AGE = int(services.SESSION_TTL.total_seconds())


def client_ip(request: HttpRequest) -> str | None:
    return throttle.client_ip(request)


def in_wechat(request: HttpRequest) -> bool:
    """WeChat's built-in browser (its user agent carries ``MicroMessenger``)."""
    return "MicroMessenger" in request.headers.get("User-Agent", "")


def device_id(request: HttpRequest) -> str:
    value = request.COOKIES.get(DEVICE_COOKIE, "")
    return value[:64] if value.isalnum() else ""


def ensure_device(request: HttpRequest, response: HttpResponse) -> None:
    if not device_id(request):
        response.set_cookie(DEVICE_COOKIE, secrets.token_hex(12), max_age=365 * 86400, httponly=True,
                            samesite="Lax", secure=request.is_secure())


def session_key(request: HttpRequest) -> str:
    return str(request.get_signed_cookie(COOKIE, default="", salt=COOKIE_SALT) or "")


def current_member(request: HttpRequest, tenant: Tenant | None = None) -> Member | None:
    """The signed-in member (of ``tenant`` when given), cached on the request."""
    if not hasattr(request, "_portal_session"):
        request._portal_session = services.session_member(session_key(request))  # type: ignore[attr-defined]
    info = request._portal_session  # type: ignore[attr-defined]
    if info is None or (tenant is not None and info.tenant_id != tenant.pk):
        return None
    member: Member = info.member
    return member


def sign_in(request: HttpRequest, response: HttpResponse, member: Member, method: str) -> None:
    key = services.do_start_session(member, method)
    response.set_signed_cookie(COOKIE, key, salt=COOKIE_SALT, max_age=MAX_AGE, httponly=True, samesite="Lax",
                               secure=request.is_secure())


def sign_out(request: HttpRequest, response: HttpResponse) -> None:
    key = session_key(request)
    if key:
        services.do_end_session(key)
    response.delete_cookie(COOKIE, samesite="Lax")


def ref_code(request: HttpRequest) -> str:
    return str(request.get_signed_cookie(REF_COOKIE, default="", salt=REF_SALT) or "")


def remember_ref(request: HttpRequest, response: HttpResponse, code: str) -> None:
    response.set_signed_cookie(REF_COOKIE, code, salt=REF_SALT, max_age=30 * 86400, httponly=True, samesite="Lax",
                               secure=request.is_secure())


def tenant_or_404(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug, is_active=True).first()
    if tenant is None:
        raise Http404
    return tenant


def login_url(tenant: Tenant, next_url: str) -> str:
    return reverse("portal:login", args=[tenant.slug]) + "?" + urlencode({"next": next_url})


View = Callable[..., HttpResponse]


def member_page(view: View) -> View:
    """Resolve ``slug`` to the tenant and require a signed-in member of it (else to the sign-in page).
    The view gets ``request, tenant, member, **kwargs``."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, slug: str, **kwargs: Any) -> HttpResponse:
        tenant = tenant_or_404(slug)
        member = current_member(request, tenant)
        if member is None:
            return HttpResponseRedirect(login_url(tenant, request.get_full_path()))
        return view(request, tenant, member, **kwargs)

    return wrapper
