"""Staff two-factor sign-in in a real browser (Debian's chromium via Playwright) against a live
server, and the Content-Security-Policy checked where it matters: no violation reported on the
console pages (unfold + Alpine.js, the ECharts dashboard), the API docs (vendored Swagger UI) and the
portal. Screenshots: ``test-output/console-security/<test>/``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from shequn.communities.models import Community
from shequn.core.models import AuditLog, StaffRole, Tenant
from shequn.testing.browser import ARGS, CHROMIUM
from shequn.testing.factories import STAFF_PASSWORD, StaffFactory
from shequn.testing.scenarios import seeded_club

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OUT = Path(__file__).resolve().parents[4] / "test-output" / "console-security"
WATCH = "window.__csp = []; document.addEventListener('securitypolicyviolation', " \
        "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"


class Desk:
    """One desktop browser context that records every CSP violation it sees."""

    def __init__(self, browser: Any, base: str, out: Path) -> None:
        self.ctx = browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN")
        self.ctx.set_default_timeout(15_000)
        self.ctx.add_init_script(WATCH)
        self.page = self.ctx.new_page()
        self.base, self.out = base, out
        self.violations: list[str] = []
        self.page.on("console", lambda m: self.violations.append(m.text)
                     if "Content Security Policy" in m.text else None)

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)
        self.page.wait_for_load_state("load")
        self.page.wait_for_timeout(300)  # deferred scripts (Alpine, charts) have run
        self.check(path)

    def check(self, where: str) -> None:
        seen = self.page.evaluate("window.__csp || []")
        assert not seen and not self.violations, f"CSP violations on {where}: {seen} {self.violations}"

    def shot(self, step: str) -> None:
        n = len(list(self.out.glob("*.png"))) + 1
        self.page.screenshot(path=str(self.out / f"{n:02d}-{step}.png"), full_page=True)


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Path:
    path = OUT / re.sub(r"[^\w.-]+", "_", request.node.name)
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.png"):
        old.unlink()
    return path


def _code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def _password_step(d: Desk, username: str) -> None:
    d.go("/console/login/")
    d.page.locator("input[name=username]").fill(username)
    d.page.locator("input[name=password]").fill(STAFF_PASSWORD)
    d.page.locator("#login-form [type=submit]").click()
    d.page.wait_for_url("**/console/login/2fa/")
    d.check("2fa step")


def test_owner_sets_up_and_uses_two_factor_under_the_csp(
        serial_sqlite_server: None, transactional_db: None, live_server: Any, browser: Any,
        tenant: Tenant, settings: Any, out: Path, request: pytest.FixtureRequest) -> None:
    settings.REDIS_URL = None
    request.addfinalizer(cache.clear)  # the dashboard caches its series under ids other tests reuse
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # the wrong code below would otherwise delay the right one
    assert CHROMIUM.exists() and ARGS
    owner = StaffFactory(tenant=tenant, role=StaffRole.OWNER, username="boss").user
    seeded_club(tenant, members=12, days=14)
    community = Community.objects.filter(tenant=tenant).order_by("pk").first()
    assert community is not None

    d = Desk(browser, live_server.url, out)
    _password_step(d, "boss")
    assert d.page.get_by_test_id("totp-secret").inner_text().strip()
    d.shot("enrol-scan-the-code")
    device = TOTPDevice.objects.get(user=owner, confirmed=False)
    d.page.locator("input[name=code]").fill(_code(device))
    d.page.locator("#otp-form [type=submit]").click()
    d.page.get_by_test_id("recovery-codes").wait_for()
    d.check("recovery codes")
    assert len(d.page.get_by_test_id("recovery-codes").locator("li").all()) == 10
    d.shot("recovery-codes")
    d.page.get_by_role("link", name="我已保存, 继续").click()
    d.page.wait_for_url("**/console/")
    d.check("console index")
    d.shot("console-home")
    for path, step in ((f"/console/shequn/communities/{community.pk}/dashboard/", "dashboard-echarts"),
                       ("/console/members/member/", "members"), ("/console/core/apikey/", "api-keys"),
                       ("/console/shequn/security/", "security")):
        d.go(path)
        d.shot(step)
    assert d.page.locator("canvas").count() == 0  # the security page has no chart; the dashboard had:
    d.go(f"/console/shequn/communities/{community.pk}/dashboard/")
    assert d.page.locator("#chart-members canvas").count() == 1  # ECharts ran under the policy
    d.go("/api/v1/docs")
    msgs: list[str] = []
    d.page.on("console", lambda m: msgs.append(m.text))
    try:
        d.page.locator(".swagger-ui .info .title").wait_for(timeout=60_000)  # the schema is large
    except Exception:
        d.shot("api-docs-failed")
        raise AssertionError(msgs) from None
    d.check("api docs")
    d.shot("api-docs")
    d.go(f"/portal/{tenant.slug}/login/")
    d.shot("portal-login")
    d.ctx.close()

    # a second sign-in: password, then the six digits from the app
    TOTPDevice.objects.filter(pk=device.pk).update(last_t=-1)  # same 30 s step as the set-up: allow it again
    d2 = Desk(browser, live_server.url, out)
    _password_step(d2, "boss")
    assert d2.page.get_by_test_id("totp-secret").count() == 0
    d2.shot("second-sign-in-code")
    d2.page.locator("input[name=code]").fill("000000" if _code(device) != "000000" else "111111")
    d2.page.locator("#otp-form [type=submit]").click()
    d2.page.get_by_text("验证码不正确").wait_for()
    d2.shot("wrong-code")
    device.refresh_from_db()
    d2.page.locator("input[name=code]").fill(_code(device))
    d2.page.locator("#otp-form [type=submit]").click()
    d2.page.wait_for_url("**/console/")
    d2.check("console after code")
    d2.shot("signed-in")
    d2.ctx.close()
    actions = list(AuditLog.objects.filter(tenant=tenant).values_list("action", flat=True))
    assert actions.count("staff.sign_in") == 2 and "staff.2fa_enabled" in actions
    assert "staff.sign_in_failed" in actions
