"""Console sign-in: throttling per account and per address, two-factor for owners and finance,
recovery codes, session limits, sign out everywhere; every step in the audit log."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from shequn.core import staff_auth, throttle
from shequn.core.models import AuditLog, StaffRole, Tenant
from shequn.testing.factories import STAFF_PASSWORD, StaffFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _db_throttle(settings: Any) -> None:
    settings.REDIS_URL = None
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0


def _login(c: Client, username: str, password: str = STAFF_PASSWORD, ip: str = "198.51.100.7") -> Any:
    return c.post("/console/login/", {"username": username, "password": password, "next": "/console/"},
                  REMOTE_ADDR=ip)


def _signed_in(c: Client) -> bool:
    return c.get("/console/").status_code == 200


def _code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def _actions(tenant: Tenant) -> list[str]:
    return list(AuditLog.objects.filter(tenant=tenant).order_by("pk").values_list("action", flat=True))


def _shift_clock(monkeypatch: pytest.MonkeyPatch, delta: dt.timedelta) -> None:
    real = timezone.now
    monkeypatch.setattr(throttle.timezone, "now", lambda: real() + delta)


def test_operator_signs_in_with_password_only_and_it_is_audited(tenant: Tenant) -> None:
    StaffFactory(tenant=tenant, role=StaffRole.OPERATOR, username="ops")
    c = Client()
    resp = _login(c, "ops")
    assert resp.status_code == 302 and resp["Location"] == "/console/"
    assert _signed_in(c)
    assert "staff.sign_in" in _actions(tenant)


def test_wrong_passwords_lock_the_account_and_it_opens_after_the_window(
        tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    StaffFactory(tenant=tenant, role=StaffRole.OPERATOR, username="ops")
    attacker = Client()
    for i in range(throttle.STAFF_ACCOUNT.limit):
        resp = _login(attacker, "ops", "wrong-password", ip=f"203.0.113.{i}")
        assert resp.status_code == 200
    # the real person, from their own address, with the right password: refused while locked
    person = Client()
    resp = _login(person, "ops")
    assert resp.status_code == 200 and not _signed_in(person)
    assert "尝试次数过多, 请 15 分钟后再试" in resp.content.decode()
    actions = _actions(tenant)
    assert actions.count("staff.sign_in_failed") == throttle.STAFF_ACCOUNT.limit
    assert actions.count("security.lockout") == 1
    # after the window the same person signs in
    _shift_clock(monkeypatch, dt.timedelta(seconds=throttle.STAFF_ACCOUNT.window + 1))
    resp = _login(person, "ops")
    assert resp.status_code == 302 and _signed_in(person)


def test_one_address_guessing_many_accounts_is_locked_out(tenant: Tenant) -> None:
    StaffFactory(tenant=tenant, role=StaffRole.OPERATOR, username="ops")
    c = Client()
    for i in range(throttle.STAFF_ADDRESS.limit):
        _login(c, f"nobody{i}", "x", ip="203.0.113.50")
    assert not _signed_in(c)
    assert _login(c, "ops", ip="203.0.113.50").status_code == 200  # locked address
    assert not _signed_in(c)
    other = Client()
    assert _login(other, "ops", ip="198.51.100.1").status_code == 302  # the account itself is fine


def test_owner_must_set_up_two_factor_then_signs_in_with_a_code(tenant: Tenant) -> None:
    owner = StaffFactory(tenant=tenant, role=StaffRole.OWNER, username="boss").user
    c = Client()
    resp = _login(c, "boss")
    assert resp.status_code == 302 and resp["Location"] == "/console/login/2fa/"
    assert not _signed_in(c)  # the password alone signs no one in
    page = c.get("/console/login/2fa/")
    assert page.status_code == 200 and 'data-testid="totp-secret"' in page.content.decode()
    assert 'src="data:image/png;base64,' in page.content.decode()  # the QR code, made here
    device = TOTPDevice.objects.get(user=owner, confirmed=False)
    wrong = "000000" if _code(device) != "000000" else "111111"
    assert c.post("/console/login/2fa/", {"code": wrong}).status_code == 200
    assert not _signed_in(c)
    done = c.post("/console/login/2fa/", {"code": _code(device)})
    assert done.status_code == 200
    codes = done.context["codes"]
    assert len(codes) == staff_auth.RECOVERY_CODES
    assert _signed_in(c)
    actions = _actions(tenant)
    assert "staff.2fa_enabled" in actions and "staff.sign_in" in actions
    assert AuditLog.objects.get(tenant=tenant, action="staff.sign_in").data["method"] == "password+totp_setup"

    # next time: password, then a recovery code (used once only)
    c2 = Client()
    assert _login(c2, "boss")["Location"] == "/console/login/2fa/"
    page = c2.get("/console/login/2fa/").content.decode()
    assert 'data-testid="totp-secret"' not in page  # already set up: no new secret shown
    assert c2.post("/console/login/2fa/", {"code": codes[0]}).status_code == 302
    assert _signed_in(c2)
    c3 = Client()
    _login(c3, "boss")
    assert c3.post("/console/login/2fa/", {"code": codes[0]}).status_code == 200
    assert not _signed_in(c3)
    assert "staff.2fa_recovery_code_used" in _actions(tenant)
    assert _actions(tenant).count("staff.sign_in_failed") >= 2


def test_finance_needs_two_factor_and_cannot_turn_it_off(tenant: Tenant) -> None:
    user = StaffFactory(tenant=tenant, role=StaffRole.FINANCE, username="fin").user
    assert staff_auth.requires_two_factor(user)
    writer = StaffFactory(tenant=tenant, role=StaffRole.CONTENT, username="writer").user
    assert not staff_auth.requires_two_factor(writer)
    device = staff_auth.do_start_totp(user)
    staff_auth.do_confirm_totp(user, device, _code(device))
    c = Client()
    c.force_login(user)
    resp = c.post("/console/shequn/security/", {"action": "disable_2fa"}, follow=True)
    assert "所有者和财务角色必须使用两步验证" in resp.content.decode()
    assert staff_auth.has_two_factor(user)


def test_others_may_turn_two_factor_on_and_off_on_the_security_page(tenant: Tenant) -> None:
    user = StaffFactory(tenant=tenant, role=StaffRole.OPERATOR, username="ops").user
    c = Client()
    c.force_login(user)
    assert c.get("/console/shequn/security/").status_code == 200
    c.post("/console/shequn/security/", {"action": "setup_2fa"})
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    resp = c.post("/console/shequn/security/", {"action": "confirm_2fa", "code": _code(device)})
    assert resp.status_code == 200 and len(resp.context["codes"]) == staff_auth.RECOVERY_CODES
    assert staff_auth.has_two_factor(user)
    # from now on the password alone is not enough for this operator either
    assert _login(Client(), "ops")["Location"] == "/console/login/2fa/"
    c.post("/console/shequn/security/", {"action": "disable_2fa"})
    assert not staff_auth.has_two_factor(user)
    assert {"staff.2fa_enabled", "staff.2fa_disabled"} <= set(_actions(tenant))


def test_idle_and_absolute_session_expiry(tenant: Tenant, settings: Any) -> None:
    StaffFactory(tenant=tenant, role=StaffRole.OPERATOR, username="ops")
    c = Client()
    _login(c, "ops")
    assert _signed_in(c)
    session = c.session
    session[staff_auth.SESSION_SEEN_AT] = time.time() - settings.SHEQUN_STAFF_IDLE_SECONDS - 5
    session.save()
    assert not _signed_in(c)
    assert AuditLog.objects.filter(tenant=tenant, action="staff.session_expired", data__reason="idle").exists()

    _login(c, "ops")
    session = c.session
    session[staff_auth.SESSION_AUTH_AT] = time.time() - settings.SHEQUN_STAFF_MAX_SECONDS - 5
    session.save()
    assert not _signed_in(c)  # however active, the session ends after the absolute limit


def test_sign_out_everywhere_ends_every_session(tenant: Tenant) -> None:
    StaffFactory(tenant=tenant, role=StaffRole.OPERATOR, username="ops")
    laptop, phone = Client(), Client()
    _login(laptop, "ops")
    _login(phone, "ops")
    assert _signed_in(laptop) and _signed_in(phone)
    resp = laptop.post("/console/shequn/security/", {"action": "sign_out_everywhere"})
    assert resp.status_code == 302
    assert not _signed_in(laptop) and not _signed_in(phone)
    assert "staff.sign_out_everywhere" in _actions(tenant)
    fresh = Client()
    _login(fresh, "ops")
    assert _signed_in(fresh)  # a sign-in after it is not affected
