"""Member sign-in and out: SMS code, magic link, WeChat web OAuth, Telegram Login Widget."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from shequn.core.errors import ShequnError
from shequn.core.models import Tenant
from shequn.members.models import Member
from shequn.referrals import selectors as referral_selectors
from shequn.referrals.selectors import public_base_url
from shequn.referrals.services import do_record_click

from .. import auth, services
from ..models import MemberSession
from ._common import (
    _err,
    _next_url,
)

# --- sign-in ---------------------------------------------------------------------------------------


def login(request: HttpRequest, slug: str) -> HttpResponse:
    """Phone + one-time code. Step 1 sends the code (same answer for any number); step 2 checks it.
    With htmx the code step is swapped in place; without JavaScript the page reloads."""
    tenant = auth.tenant_or_404(slug)
    nxt = _next_url(request, tenant)
    ctx: dict[str, Any] = {"tenant": tenant, "next": nxt, "step": "phone", "phone": "", "error": "",
                           "wechat": services.wechat_configured(tenant) and auth.in_wechat(request)}
    login_path = reverse("portal:login", args=[tenant.slug]) + "?" + urlencode({"next": nxt})
    ctx["telegram_url"] = services.telegram_login_url(tenant, public_base_url() + login_path)
    ctx["telegram_callback"] = reverse("portal:telegram_callback", args=[tenant.slug])
    if request.method == "POST":
        action = request.POST.get("action", "send")
        phone = request.POST.get("phone", "").strip()[:32]
        ctx["phone"] = phone
        if action == "send":
            try:
                services.do_send_code(tenant, phone, ip=auth.client_ip(request))
                ctx["step"] = "code"
                ctx["sent"] = True
            except services.RateLimited as exc:
                ctx["step"] = "code" if "code" in request.POST else "phone"  # a resend stays on the code step
                ctx["error"] = exc.message
            except ShequnError as exc:
                ctx["error"] = exc.message
        else:
            ctx["step"] = "code"
            try:
                member = services.do_verify_code(tenant, phone, request.POST.get("code", ""),
                                                 ip=auth.client_ip(request))
            except ShequnError as exc:
                ctx["error"] = exc.message
            else:
                return _signed_in(request, tenant, member, "sms", nxt)
        if request.headers.get("HX-Request"):
            return render(request, "portal/_login_step.html", ctx)
    return render(request, "portal/login.html", ctx)


def _signed_in(request: HttpRequest, tenant: Tenant, member: Member, method: str, nxt: str) -> HttpResponse:
    response: HttpResponse
    if request.headers.get("HX-Request"):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = nxt
    else:
        response = HttpResponseRedirect(nxt)
    auth.sign_in(request, response, member, method)
    code = auth.ref_code(request)
    if code:  # the link that brought them: now a known member, so the click binds the referrer
        try:
            if referral_selectors.link_get(tenant.pk, code):
                do_record_click(code, member_id=member.pk, ip=auth.client_ip(request),
                                device_id=auth.device_id(request))
        except ShequnError:
            pass
    return response


def magic(request: HttpRequest, slug: str, token: str) -> HttpResponse:
    """A signed one-time link from a bot or an operator. GET only shows a button (link previews in
    chat apps fetch URLs and must not use the link up); POST signs in."""
    tenant = auth.tenant_or_404(slug)
    if request.method == "POST":
        try:
            member = services.do_use_magic_token(tenant, token)
        except ShequnError as exc:
            return render(request, "portal/magic.html", {"tenant": tenant, "error": exc.message}, status=400)
        return _signed_in(request, tenant, member, MemberSession.Method.MAGIC,
                          reverse("portal:home", args=[tenant.slug]))
    return render(request, "portal/magic.html", {"tenant": tenant, "token": token})


WECHAT_STATE_SALT = "shequn.portal.wechat-state"


def wechat_start(request: HttpRequest, slug: str) -> HttpResponse:
    """Inside WeChat: off to WeChat's authorize page; ``state`` carries the signed return address."""

    tenant = auth.tenant_or_404(slug)
    state = signing.dumps(_next_url(request, tenant), salt=WECHAT_STATE_SALT, compress=True)
    callback = request.build_absolute_uri(reverse("portal:wechat_callback", args=[tenant.slug]))
    try:
        return HttpResponseRedirect(services.wechat_authorize_url(tenant, callback, state))
    except ShequnError as exc:
        _err(request, exc)
        return HttpResponseRedirect(reverse("portal:login", args=[tenant.slug]))


def wechat_callback(request: HttpRequest, slug: str) -> HttpResponse:

    tenant = auth.tenant_or_404(slug)
    try:
        nxt = signing.loads(request.GET.get("state", ""), salt=WECHAT_STATE_SALT, max_age=600)
    except signing.BadSignature:
        return render(request, "portal/magic.html", {"tenant": tenant, "error": _("登录链接无效或已过期")},
                      status=400)
    callback = request.build_absolute_uri(reverse("portal:wechat_callback", args=[tenant.slug]))
    try:
        member = services.do_wechat_sign_in(tenant, request.GET.get("code", ""), callback,
                                            current=auth.current_member(request, tenant))
    except ShequnError as exc:
        return render(request, "portal/magic.html", {"tenant": tenant, "error": exc.message}, status=400)
    if not (isinstance(nxt, str) and url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()})):
        nxt = reverse("portal:home", args=[tenant.slug])
    return _signed_in(request, tenant, member, MemberSession.Method.WECHAT, nxt)


def telegram_callback(request: HttpRequest, slug: str) -> HttpResponse:
    """The Telegram Login Widget's ``data-auth-url``: the signed fields arrive as query parameters and
    are checked against the tenant's Telegram bot token."""

    tenant = auth.tenant_or_404(slug)
    data = {k: v for k, v in request.GET.items() if k != "next"}
    try:
        member = services.do_telegram_sign_in(tenant, data, services.telegram_bot_token(tenant))
    except ShequnError as exc:
        return render(request, "portal/magic.html", {"tenant": tenant, "error": exc.message}, status=400)
    return _signed_in(request, tenant, member, MemberSession.Method.TELEGRAM, _next_url(request, tenant))


@require_POST
def logout(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = auth.tenant_or_404(slug)
    response = HttpResponseRedirect(reverse("portal:home", args=[tenant.slug]))
    auth.sign_out(request, response)
    return response


