"""Console sign-in: password (throttled per login name and per address), then — for owners, finance
staff and anyone who turned it on — a six-digit code from an authenticator app or a recovery code.
Mounted at ``/console/login/`` (in front of the admin site's own login) and ``/console/login/2fa/``.

Between the two steps the session holds only the pending user id and when the password was
accepted (five minutes to finish); the user is signed in (``django.contrib.auth.login``) only after
the second factor. The security page (``/console/shequn/security/``) sets up and turns off two-factor,
renews recovery codes and signs out everywhere."""

from __future__ import annotations

import base64
import io
import time
from typing import Any
from urllib.parse import quote

import qrcode
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from shequn.core import staff_auth, throttle
from shequn.core.errors import ShequnError

PENDING_USER = "sq_2fa_user"
PENDING_AT = "sq_2fa_at"
PENDING_NEXT = "sq_2fa_next"
PENDING_DEVICE = "sq_2fa_device"
PENDING_TTL = 300
BACKEND = "django.contrib.auth.backends.ModelBackend"


class StaffLoginForm(AdminAuthenticationForm):
    """The admin's form, refusing while the account or address is locked out and counting failures."""

    def clean(self) -> dict[str, Any]:
        username = (self.cleaned_data.get("username") or "").strip()
        ip = throttle.client_ip(self.request) if self.request else None
        try:
            staff_auth.check_sign_in_allowed(username, ip)
        except ShequnError as exc:
            raise ValidationError(exc.message, code="locked") from exc
        try:
            return super().clean()
        except ValidationError:
            staff_auth.do_sign_in_failed(username, ip)
            raise


class CodeForm(forms.Form):
    code = forms.CharField(label=gettext_lazy("验证码"), max_length=32,
                           help_text=gettext_lazy("身份验证器 App 中的 6 位数字, 或一个恢复码"),
                           widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True,
                                                         "inputmode": "numeric"}))


def _context(request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
    return {**admin.site.each_context(request), "title": title, **extra}


def _safe_next(request: HttpRequest, value: str | None) -> str:
    if value and url_has_allowed_host_and_scheme(value, allowed_hosts={request.get_host()},
                                                 require_https=request.is_secure()):
        return value
    return reverse("admin:index")


def _pending_user(request: HttpRequest) -> Any | None:
    at = request.session.get(PENDING_AT)
    if not isinstance(at, int | float) or time.time() - at > PENDING_TTL:
        return None
    return staff_auth.user_for_pending(request.session.get(PENDING_USER))


def _finish(request: HttpRequest, user: Any, method: str, device: Any = None) -> None:
    nxt = request.session.get(PENDING_NEXT)
    auth_login(request, user, backend=BACKEND)  # cycles the session key
    if device is not None:
        otp_login(request, device)
    staff_auth.do_signed_in(user, request.session, method=method)
    request.session[PENDING_NEXT] = nxt


@sensitive_post_parameters()
@csrf_protect
@never_cache
def login(request: HttpRequest) -> HttpResponse:
    nxt = _safe_next(request, request.POST.get("next") or request.GET.get("next"))
    if request.user.is_authenticated and request.user.is_staff and request.method == "GET":
        return HttpResponseRedirect(nxt)
    form = StaffLoginForm(request, data=request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        user = form.get_user()
        if staff_auth.has_two_factor(user) or staff_auth.requires_two_factor(user):
            request.session.cycle_key()
            request.session[PENDING_USER] = user.pk
            request.session[PENDING_AT] = time.time()
            request.session[PENDING_NEXT] = nxt
            return HttpResponseRedirect(reverse("console_login_2fa"))
        request.session[PENDING_NEXT] = nxt
        _finish(request, user, "password")
        return HttpResponseRedirect(request.session.pop(PENDING_NEXT, nxt))
    ctx = _context(request, _("登录"), form=form, app_path=request.get_full_path(), next=nxt,
                   username=request.user.get_username())
    return render(request, "admin/login.html", ctx)


@sensitive_post_parameters()
@csrf_protect
@never_cache
def login_2fa(request: HttpRequest) -> HttpResponse:
    """The second step: verify a code, or (an owner without an authenticator yet) set one up."""
    user = _pending_user(request)
    if user is None:
        messages.error(request, _("登录已超时, 请重新输入密码"))
        return HttpResponseRedirect(reverse("admin:login"))
    ip = throttle.client_ip(request)
    enrol = not staff_auth.has_two_factor(user)
    device: TOTPDevice | None = None
    if enrol:
        device = staff_auth.pending_totp(user, request.session.get(PENDING_DEVICE))
        if device is None:
            device = staff_auth.do_start_totp(user)
            request.session[PENDING_DEVICE] = device.pk
    form = CodeForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            if enrol:
                assert device is not None
                staff_auth.check_sign_in_allowed(user.get_username(), ip)
                try:
                    codes = staff_auth.do_confirm_totp(user, device, form.cleaned_data["code"])
                except ShequnError:
                    staff_auth.do_sign_in_failed(user.get_username(), ip, step="second_factor_setup")
                    raise
                _finish(request, user, "password+totp_setup", device)
                nxt = request.session.pop(PENDING_NEXT, reverse("admin:index"))
                return render(request, "console/recovery_codes.html",
                              _context(request, _("恢复码"), codes=codes, next=nxt))
            used = staff_auth.do_verify_second_factor(user, form.cleaned_data["code"], ip)
            _finish(request, user, "password+" + ("recovery_code" if used.name == "recovery" else "totp"), used)
            return HttpResponseRedirect(_safe_next(request, request.session.pop(PENDING_NEXT, None)))
        except ShequnError as exc:
            form.add_error("code", exc.message)
    ctx = _context(request, _("两步验证"), form=form, enrol=enrol)
    if enrol and device is not None:
        ctx.update(_enrol_context(device, user))
    return render(request, "console/login_2fa.html", ctx)


def _enrol_context(device: TOTPDevice, user: Any) -> dict[str, Any]:
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    uri = (f"otpauth://totp/{quote('shequn')}:{quote(user.get_username())}?secret={secret}"
           f"&issuer={quote('shequn')}&digits={device.digits}&period={device.step}")
    buf = io.BytesIO()
    qrcode.make(uri, box_size=5, border=2).save(buf)
    return {"secret": " ".join(secret[i:i + 4] for i in range(0, len(secret), 4)),
            "qr": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}


@require_POST
@csrf_protect
def logout(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        staff_auth.audit_staff(request.user, "staff.sign_out")
    auth_logout(request)
    return HttpResponseRedirect(reverse("admin:login"))


# --- the security page (inside the console: admin_view) -------------------------------------------


def security(request: HttpRequest) -> HttpResponse:
    user = request.user
    ctx = _context(request, _("账号安全"), required=staff_auth.requires_two_factor(user),
                   enabled=staff_auth.has_two_factor(user),
                   idle_minutes=settings.SHEQUN_STAFF_IDLE_SECONDS // 60,
                   max_hours=settings.SHEQUN_STAFF_MAX_SECONDS // 3600)
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "sign_out_everywhere":
                staff_auth.do_sign_out_everywhere(user)
                return HttpResponseRedirect(reverse("admin:login"))
            if action == "disable_2fa":
                staff_auth.do_disable_two_factor(user)
                messages.success(request, _("已关闭两步验证"))
                return HttpResponseRedirect(reverse("console:security"))
            if action == "recovery_codes":
                codes = staff_auth.do_new_recovery_codes(user)
                return render(request, "console/recovery_codes.html",
                              _context(request, _("恢复码"), codes=codes, next=reverse("console:security")))
            if action in ("setup_2fa", "confirm_2fa"):
                return _security_setup(request, action)
        except ShequnError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(reverse("console:security"))
    return render(request, "console/security.html", ctx)


def _security_setup(request: HttpRequest, action: str) -> HttpResponse:
    user = request.user
    device = staff_auth.pending_totp(user, request.session.get(PENDING_DEVICE))
    if action == "setup_2fa" or device is None:
        device = staff_auth.do_start_totp(user)
        request.session[PENDING_DEVICE] = device.pk
    form = CodeForm(request.POST if action == "confirm_2fa" else None)
    if action == "confirm_2fa" and form.is_valid():
        try:
            codes = staff_auth.do_confirm_totp(user, device, form.cleaned_data["code"])
        except ShequnError as exc:
            form.add_error("code", exc.message)
        else:
            otp_login(request, device)
            return render(request, "console/recovery_codes.html",
                          _context(request, _("恢复码"), codes=codes, next=reverse("console:security")))
    return render(request, "console/security_setup.html",
                  _context(request, _("设置两步验证"), form=form, **_enrol_context(device, user)))
