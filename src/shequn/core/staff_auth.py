"""Staff sign-in: password throttling, two-factor (TOTP via django-otp, recovery codes as a
django-otp static device), session limits and "sign out everywhere". Every sign-in, failure,
lock-out and two-factor change is written to the audit log of each organisation the login is staff
in (a login name that matches no one is only counted, never audited: there is no tenant to tell).

Two-factor is required for owners and finance staff (they approve withdrawals and see money) and
for superusers; optional for everyone else. Writers are ``do_*``."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_otp import match_token
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import throttle
from .errors import Forbidden, Invalid, TooManyAttempts
from .models import StaffMembership, StaffRole, StaffSecurity
from .permissions import Principal, permissions_for_role
from .services import do_audit

#: session keys (epoch seconds)
SESSION_AUTH_AT = "sq_auth_at"
SESSION_SEEN_AT = "sq_seen_at"
TWO_FACTOR_ROLES = frozenset({StaffRole.OWNER, StaffRole.FINANCE})
RECOVERY_CODES = 10
TOTP_NAME = "shequn"


def _memberships(user_id: int) -> list[StaffMembership]:
    return list(StaffMembership.objects.filter(user_id=user_id, is_active=True).select_related("user"))


def requires_two_factor(user: Any) -> bool:
    """Owners, finance staff and superusers must use a second factor."""
    if getattr(user, "is_superuser", False):
        return True
    return bool(StaffMembership.objects.filter(user_id=user.pk, is_active=True, role__in=TWO_FACTOR_ROLES).exists())


def has_two_factor(user: Any) -> bool:
    return bool(TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).exists())


def audit_staff(user: Any, action: str, *, data: dict[str, Any] | None = None, reason: str = "") -> None:
    """One audit row per organisation ``user`` is active staff in."""
    for staff in _memberships(user.pk):
        principal = Principal(tenant_id=staff.tenant_id, kind="staff", actor_id=str(user.pk),
                              label=staff.display_name or user.get_username(),
                              permissions=permissions_for_role(staff.role))
        do_audit(principal, action, "User", user.pk, data=data, reason=reason)


def _user_named(username: str) -> Any | None:
    return get_user_model().objects.filter(username=username).first() if username else None


# --- throttled sign-in -------------------------------------------------------------------------------


def check_sign_in_allowed(username: str, ip: str | None) -> None:
    """Raise :class:`TooManyAttempts` (with a message for the person) while the account or the
    address is locked out."""
    wait = max(throttle.retry_after(throttle.STAFF_ACCOUNT, username.lower()) if username else 0,
               throttle.retry_after(throttle.STAFF_ADDRESS, ip) if ip else 0)
    if wait:
        raise TooManyAttempts(throttle.wait_message(wait), details={"retry_after": wait})


def do_sign_in_failed(username: str, ip: str | None, *, step: str = "password") -> None:
    """Count a failed password or second factor for the account and the address; audit it (and the
    lock-out it may cause) in the account's organisations."""
    user = _user_named(username)
    n_account = throttle.do_hit(throttle.STAFF_ACCOUNT, username.lower()) if username else 0
    n_address = throttle.do_hit(throttle.STAFF_ADDRESS, ip) if ip else 0
    if user is None:
        return
    audit_staff(user, "staff.sign_in_failed", data={"step": step})
    if n_account == throttle.STAFF_ACCOUNT.limit or n_address == throttle.STAFF_ADDRESS.limit:
        audit_staff(user, "security.lockout", data={
            "rule": throttle.STAFF_ACCOUNT.scope if n_account == throttle.STAFF_ACCOUNT.limit
            else throttle.STAFF_ADDRESS.scope,
            "window_seconds": throttle.STAFF_ACCOUNT.window})


def do_signed_in(user: Any, session: Any, *, method: str) -> None:
    """After ``django.contrib.auth.login``: start the session clocks, clear the account's failures,
    audit the sign-in."""
    now = time.time()
    session[SESSION_AUTH_AT] = now
    session[SESSION_SEEN_AT] = now
    throttle.do_reset(throttle.STAFF_ACCOUNT, user.get_username().lower())
    audit_staff(user, "staff.sign_in", data={"method": method})


# --- two-factor --------------------------------------------------------------------------------------


def do_start_totp(user: Any) -> TOTPDevice:
    """A new, unconfirmed authenticator for ``user`` (any earlier unconfirmed one is dropped)."""
    TOTPDevice.objects.filter(user_id=user.pk, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name=TOTP_NAME, confirmed=False)


def pending_totp(user: Any, device_id: int | None) -> TOTPDevice | None:
    if not device_id:
        return None
    return TOTPDevice.objects.filter(user_id=user.pk, pk=device_id, confirmed=False).first()


@transaction.atomic
def do_confirm_totp(user: Any, device: TOTPDevice, token: str) -> list[str]:
    """Confirm the authenticator with a code from it; returns fresh recovery codes (shown once).
    Raises :class:`Invalid` naming the ``code`` field when the code is wrong."""
    if not device.verify_token((token or "").strip()):
        raise Invalid(_("验证码不正确, 请确认手机时间准确后重试"), details={"field": "code"})
    TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).exclude(pk=device.pk).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    codes = _new_recovery_codes(user)
    audit_staff(user, "staff.2fa_enabled")
    return codes


def _new_recovery_codes(user: Any) -> list[str]:
    static, _created = StaticDevice.objects.get_or_create(user=user, name="recovery", defaults={"confirmed": True})
    static.token_set.all().delete()
    codes = [StaticToken.random_token() for _i in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=static, token=c) for c in codes])
    return codes


@transaction.atomic
def do_new_recovery_codes(user: Any) -> list[str]:
    if not has_two_factor(user):
        raise Invalid(_("请先启用两步验证"), details={"field": "two_factor"})
    codes = _new_recovery_codes(user)
    audit_staff(user, "staff.2fa_recovery_codes_renewed")
    return codes


@transaction.atomic
def do_disable_two_factor(user: Any) -> None:
    if requires_two_factor(user):
        raise Forbidden(_("所有者和财务角色必须使用两步验证, 不能关闭"), details={"field": "two_factor"})
    TOTPDevice.objects.filter(user_id=user.pk).delete()
    StaticDevice.objects.filter(user_id=user.pk).delete()
    audit_staff(user, "staff.2fa_disabled")


def do_verify_second_factor(user: Any, token: str, ip: str | None) -> Device:
    """The device (authenticator or recovery codes) that accepts ``token``; a recovery code is used
    up. Throttled and audited like a password failure."""
    username = user.get_username()
    check_sign_in_allowed(username, ip)
    token = (token or "").strip().replace(" ", "")
    device = match_token(user, token) if token else None
    if device is None:
        do_sign_in_failed(username, ip, step="second_factor")
        raise Invalid(_("验证码不正确"), details={"field": "code"})
    if isinstance(device, StaticDevice):
        audit_staff(user, "staff.2fa_recovery_code_used",
                    data={"remaining": StaticToken.objects.filter(device=device).count()})
    return device


# --- sessions ------------------------------------------------------------------------------------------


def sessions_valid_after(user_id: int) -> float | None:
    at = StaffSecurity.objects.filter(user_id=user_id).values_list("sessions_valid_after", flat=True).first()
    return at.timestamp() if at else None


def do_sign_out_everywhere(user: Any, *, now: dt.datetime | None = None) -> None:
    """End every console session of ``user`` (the current one included) at its next request."""
    now = now or timezone.now()
    StaffSecurity.objects.update_or_create(user=user, defaults={"sessions_valid_after": now})
    audit_staff(user, "staff.sign_out_everywhere")


def user_for_pending(user_id: object) -> AbstractBaseUser | None:
    if not isinstance(user_id, int):
        return None
    user: AbstractBaseUser | None = get_user_model().objects.filter(pk=user_id, is_active=True, is_staff=True).first()
    return user
