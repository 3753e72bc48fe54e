"""The console's browser fixture: ``desk``, an owner signed in (password and TOTP) in Debian's chromium
against a live server, with numbered screenshots kept under ``test-output/console/<test>/``."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from shequn.core import staff_auth
from shequn.core.models import StaffRole, Tenant
from shequn.core.services import do_create_operator
from shequn.testing.browser import CHROMIUM

OUT = Path(__file__).resolve().parents[4] / "test-output" / "console"


class Desk:
    def __init__(self, page: Any, base: str, name: str) -> None:
        self.page, self.base = page, base
        self.out = OUT / re.sub(r"[^\w.-]+", "_", name)
        self.out.mkdir(parents=True, exist_ok=True)
        for old in self.out.glob("*.png"):
            old.unlink()
        self.n = 0

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)

    def shot(self, step: str) -> Path:
        self.n += 1
        path = self.out / f"{self.n:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def fill_datetime(self, name: str, value: dt.datetime) -> None:
        local = timezone.localtime(value)
        self.page.fill(f"[name={name}_0]", local.strftime("%Y-%m-%d"))
        self.page.fill(f"[name={name}_1]", local.strftime("%H:%M:%S"))

    def save(self) -> None:
        self.page.locator("button[name=_save], input[name=_save]").first.click()
        self.page.wait_for_load_state("networkidle")


@pytest.fixture
def desk(serial_sqlite_server, transactional_db, live_server, browser, tenant: Tenant, request, settings) -> Desk:
    assert CHROMIUM.exists()
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    owner = do_create_operator(tenant=tenant, username="op", password="pw-123456", role=StaffRole.OWNER).user
    # owners sign in with a second factor (console/auth_views.py): an authenticator already set up
    device = staff_auth.do_start_totp(owner)
    staff_auth.do_confirm_totp(owner, device, _code(device))
    TOTPDevice.objects.filter(pk=device.pk).update(last_t=-1)  # the browser's code may fall in the same step
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    ctx.set_default_timeout(60_000)  # a loaded CI box (load average 15+) takes longer than 15 s per page
    d = Desk(ctx.new_page(), live_server.url, request.node.name)
    d.go("/console/login/")
    d.page.fill("[name=username]", "op")
    d.page.fill("[name=password]", "pw-123456")
    d.page.locator("#login-form [type=submit]").click()
    d.page.wait_for_url("**/console/login/2fa/")
    device.refresh_from_db()
    d.page.fill("[name=code]", _code(device))
    d.page.locator("#otp-form [type=submit]").click()
    d.page.wait_for_load_state("networkidle")
    return d


def _code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


