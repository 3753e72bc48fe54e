"""Member sign-in: one-time codes (expiry, attempts, rate limits, same answer for any number), magic
links (tamper, expiry, reuse, other tenant), Telegram Login Widget hash, member sessions."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.server
import importlib
import io
import json
import threading
import time
from unittest import mock
from urllib.parse import parse_qs, urlparse

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from shequn.connectors import secrets as field_secrets
from shequn.core.errors import Invalid
from shequn.core.models import AuditLog, Tenant
from shequn.core.permissions import Principal
from shequn.members.models import Identity, Member
from shequn.portal import services
from shequn.portal.auth import COOKIE
from shequn.portal.models import MemberSession, SandboxSms, SignInCode, WeChatLogin
from shequn.portal.services import do_configure_wechat_login
from shequn.testing.factories import StaffFactory
from shequn.testing.scenarios import last_sms_code

PHONE = "13812345678"


def test_code_signs_in_the_member_the_phone_belongs_to(tenant):
    known = Member.objects.create(tenant=tenant, display_name="阿丽", phone=PHONE, first_seen_at=timezone.now())
    services.do_send_code(tenant, "+86 138-1234-5678", ip="10.0.0.1")
    sms = SandboxSms.objects.get()
    assert sms.to_masked == "138****5678" and PHONE not in sms.body
    assert not SignInCode.objects.filter(phone_hash__contains=PHONE).exists()
    member = services.do_verify_code(tenant, PHONE, last_sms_code(tenant))
    assert member.pk == known.pk
    # the code is used up
    with pytest.raises(Invalid):
        services.do_verify_code(tenant, PHONE, last_sms_code(tenant))
    # next time the verified portal identity finds the same member, even if the operator changed the phone
    Member.objects.filter(pk=known.pk).update(phone="")
    services.do_send_code(tenant, PHONE, now=timezone.now() + dt.timedelta(minutes=2))
    again = services.do_verify_code(tenant, PHONE, last_sms_code(tenant), now=timezone.now() + dt.timedelta(minutes=2))
    assert again.pk == known.pk
    assert Identity.objects.filter(member=known, platform="portal", verified=True).count() == 1


def test_unknown_number_becomes_a_new_member_only_when_the_code_is_entered(tenant):
    services.do_send_code(tenant, PHONE)
    assert not Member.objects.exists()
    member = services.do_verify_code(tenant, PHONE, last_sms_code(tenant))
    assert member.phone == PHONE and member.display_name == "138****5678"


def test_code_expires_after_ten_minutes(tenant):
    services.do_send_code(tenant, PHONE)
    code = last_sms_code(tenant)
    with pytest.raises(Invalid):
        services.do_verify_code(tenant, PHONE, code, now=timezone.now() + dt.timedelta(minutes=10, seconds=1))
    assert services.do_verify_code(tenant, PHONE, code, now=timezone.now() + dt.timedelta(minutes=9))


def test_five_wrong_attempts_end_the_code(tenant):
    services.do_send_code(tenant, PHONE)
    code = last_sms_code(tenant)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _i in range(5):
        with pytest.raises(Invalid) as exc:
            services.do_verify_code(tenant, PHONE, wrong)
        assert exc.value.code == "bad_code"
    assert SignInCode.objects.get().attempts == 5
    with pytest.raises(Invalid) as exc:  # the right code no longer works, with the same answer
        services.do_verify_code(tenant, PHONE, code)
    assert exc.value.code == "bad_code"


def test_rate_limits_per_phone_and_per_ip(tenant):
    t0 = timezone.now()
    services.do_send_code(tenant, PHONE, ip="10.0.0.9", now=t0)
    with pytest.raises(services.RateLimited):
        services.do_send_code(tenant, PHONE, ip="10.0.0.9", now=t0 + dt.timedelta(seconds=30))
    for i in range(1, 5):
        services.do_send_code(tenant, PHONE, ip="10.0.0.9", now=t0 + dt.timedelta(minutes=2 * i))
    with pytest.raises(services.RateLimited):  # sixth in the hour
        services.do_send_code(tenant, PHONE, ip="10.0.0.9", now=t0 + dt.timedelta(minutes=12))
    # a new code replaces the older ones
    assert SignInCode.objects.filter(used_at__isnull=True).count() == 1
    # per IP: 20 per hour across numbers
    for i in range(15):
        services.do_send_code(tenant, f"1390000{i:04d}", ip="10.0.0.9", now=t0 + dt.timedelta(minutes=13))
    with pytest.raises(services.RateLimited):
        services.do_send_code(tenant, "13911112222", ip="10.0.0.9", now=t0 + dt.timedelta(minutes=13))
    services.do_send_code(tenant, "13911112222", ip="10.0.0.10", now=t0 + dt.timedelta(minutes=13))


def test_login_page_answers_the_same_for_known_and_unknown_numbers(client, tenant):
    Member.objects.create(tenant=tenant, display_name="阿丽", phone=PHONE, first_seen_at=timezone.now())
    url = reverse("portal:login", args=[tenant.slug])

    def page(phone: str) -> str:
        r = client.post(url, {"phone": phone, "action": "send"}, REMOTE_ADDR="10.1.1.1")
        assert r.status_code == 200
        return r.content.decode().replace(phone, "PHONE")

    known, unknown = page(PHONE), page("13987654321")
    strip = lambda html: "\n".join(ln for ln in html.splitlines() if "csrf" not in ln.lower())  # noqa: E731
    assert strip(known) == strip(unknown)
    assert "验证码已发送" in known


def test_code_sign_in_through_the_page_sets_a_member_session_not_a_staff_one(client, tenant):
    url = reverse("portal:login", args=[tenant.slug])
    client.post(url, {"phone": PHONE, "action": "send"})
    r = client.post(url, {"phone": PHONE, "action": "verify", "code": last_sms_code(tenant),
                          "next": f"/portal/{tenant.slug}/earnings/"})
    assert r.status_code == 302 and r["Location"] == f"/portal/{tenant.slug}/earnings/"
    assert "shequn_member" in r.cookies and "sessionid" not in r.cookies
    assert MemberSession.objects.count() == 1
    assert client.get(f"/portal/{tenant.slug}/earnings/").status_code == 200
    assert client.get("/console/").status_code == 302  # still not a console user
    # an open redirect is refused
    client.post(url, {"phone": "13700000000", "action": "send"})
    r = client.post(url, {"phone": "13700000000", "action": "verify", "code": last_sms_code(tenant),
                          "next": "https://evil.example/"})
    assert r["Location"] == f"/portal/{tenant.slug}/"
    # signing out revokes the session server-side
    client.post(f"/portal/{tenant.slug}/logout/")
    assert client.get(f"/portal/{tenant.slug}/earnings/").status_code == 302
    assert MemberSession.objects.filter(revoked_at__isnull=False).count() == 1


def test_a_session_of_one_tenant_is_nothing_in_another(client, tenant, other_tenant):
    member = Member.objects.create(tenant=tenant, display_name="阿丽", first_seen_at=timezone.now())
    client.post(reverse("portal:magic", args=[tenant.slug, services.make_magic_token(member)]))
    assert client.get(f"/portal/{tenant.slug}/orders/").status_code == 200
    assert client.get(f"/portal/{other_tenant.slug}/orders/").status_code == 302
    # a forged cookie (a session key without our signature) is nobody
    client.cookies[COOKIE] = "forged-key"
    assert client.get(f"/portal/{tenant.slug}/orders/").status_code == 302


def test_magic_link_once_untampered_unexpired_own_tenant(client, tenant, other_tenant):
    member = Member.objects.create(tenant=tenant, display_name="阿丽", first_seen_at=timezone.now())
    token = services.make_magic_token(member)
    with pytest.raises(Invalid):
        services.do_use_magic_token(other_tenant, token)
    with pytest.raises(Invalid):
        services.do_use_magic_token(tenant, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    url = reverse("portal:magic", args=[tenant.slug, token])
    assert client.get(url).status_code == 200  # a link preview does not use it up
    r = client.post(url)
    assert r.status_code == 302 and "shequn_member" in r.cookies
    assert client.post(url).status_code == 400  # once only
    old = services.make_magic_token(member)
    with mock.patch("django.core.signing.time.time", return_value=time.time() + 16 * 60), pytest.raises(Invalid):
        services.do_use_magic_token(tenant, old)
    assert services.do_use_magic_token(tenant, old).pk == member.pk
    assert "/portal/acme/magic/" in services.magic_link_url(member, tenant)


def _telegram(data: dict[str, str], token: str) -> dict[str, str]:
    check = "\n".join(f"{k}={data[k]}" for k in sorted(data))
    h = hmac.new(hashlib.sha256(token.encode()).digest(), check.encode(), hashlib.sha256).hexdigest()
    return {**data, "hash": h}


def test_telegram_login_widget_hash(tenant: Tenant):
    token = "123456:ABCDEF"
    data = {"id": "777", "first_name": "Ann", "username": "ann", "auth_date": str(int(time.time()))}
    signed = _telegram(data, token)
    assert services.check_telegram_login(signed, token) == "777"
    with pytest.raises(Invalid):
        services.check_telegram_login({**signed, "id": "778"}, token)
    with pytest.raises(Invalid):
        services.check_telegram_login(signed, "other:token")
    stale = _telegram({**data, "auth_date": str(int(time.time()) - 2 * 86400)}, token)
    with pytest.raises(Invalid):
        services.check_telegram_login(stale, token)
    m1 = services.do_telegram_sign_in(tenant, signed, token)
    m2 = services.do_telegram_sign_in(tenant, signed, token)
    assert m1.pk == m2.pk and Identity.objects.get(platform="telegram", external_id="777").verified


def test_portal_link_command_prints_a_working_magic_link(client, tenant):
    member = Member.objects.create(tenant=tenant, display_name="阿丽", first_seen_at=timezone.now())
    out = io.StringIO()
    call_command("portal_link", "--tenant", tenant.slug, "--member", str(member.pk), stdout=out)
    url = out.getvalue().strip().split(": ", 1)[1]
    path = url.split("://", 1)[1].split("/", 1)[1]
    r = client.post("/" + path)
    assert r.status_code == 302 and "shequn_member" in r.cookies


class _RecordedWeChat:
    """A local stand-in for api.weixin.qq.com replaying a recorded ``sns/oauth2/access_token`` exchange."""
    RECORDED = {"access_token": "ACCESS_TOKEN", "expires_in": 7200, "refresh_token": "REFRESH_TOKEN",
                "openid": "oLVPpjqs9BhvzwPj5A-vTYAX3GLc", "scope": "snsapi_base"}

    def __init__(self) -> None:
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                seen.append((url.path, q))
                ok = url.path == "/sns/oauth2/access_token" and q.get("code") == "CODE_FROM_WECHAT"
                body = _RecordedWeChat.RECORDED if ok else {"errcode": 40029, "errmsg": "invalid code"}
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_wechat_oauth_with_a_recorded_exchange(client, tenant):
    fake = _RecordedWeChat()
    try:
        do_configure_wechat_login(Principal.system(tenant.pk), app_id="wx1234567890", secret="s3cret",
                                  api_base=fake.base)
        ua = {"HTTP_USER_AGENT": "Mozilla/5.0 MicroMessenger/8.0.50"}
        assert "微信一键登录" in client.get(reverse("portal:login", args=[tenant.slug]), **ua).content.decode()
        r = client.get(reverse("portal:wechat", args=[tenant.slug]) + "?next=/portal/acme/earnings/", **ua)
        assert r.status_code == 302 and r["Location"].startswith("https://open.weixin.qq.com/connect/oauth2/authorize")
        q = parse_qs(urlparse(r["Location"]).query)
        assert q["appid"] == ["wx1234567890"] and q["scope"] == ["snsapi_base"]
        state = q["state"][0]
        cb = reverse("portal:wechat_callback", args=[tenant.slug])
        r = client.get(cb, {"code": "CODE_FROM_WECHAT", "state": state})
        assert r.status_code == 302 and r["Location"] == "/portal/acme/earnings/"
        member = Member.objects.get(identities__external_id="wechat:oLVPpjqs9BhvzwPj5A-vTYAX3GLc")
        assert fake.seen[0][1]["appid"] == "wx1234567890" and fake.seen[0][1]["secret"] == "s3cret"
        # the same WeChat user again: the same member
        r = client.get(cb, {"code": "CODE_FROM_WECHAT", "state": state})
        assert Member.objects.filter(identities__external_id__startswith="wechat:").count() == 1
        assert MemberSession.objects.filter(member=member, method="wechat").count() == 2
        # a bad code or a forged state signs nobody in
        assert client.get(cb, {"code": "WRONG", "state": state}).status_code == 400
        assert client.get(cb, {"code": "CODE_FROM_WECHAT", "state": "forged"}).status_code == 400
    finally:
        fake.close()


def test_the_wechat_app_secret_is_encrypted_at_rest_and_moved_out_of_settings(tenant):
    """Stored Fernet-encrypted like connector secrets, only a hint in clear; a secret an older version
    kept in clear in tenant.settings moves into the encrypted row (migration portal 0002)."""
    system = Principal.system(tenant.pk)
    with pytest.raises(Invalid) as exc:
        do_configure_wechat_login(system, app_id="wx1", secret="")
    assert exc.value.details["field"] == "secret"
    row = do_configure_wechat_login(system, app_id="wx1234567890", secret="a-very-long-app-secret-9f3c")
    raw = WeChatLogin.objects.filter(pk=row.pk).values_list("secret_encrypted", flat=True).get()
    assert "a-very-long-app-secret" not in raw and row.secret_hint == "••••9f3c"
    assert field_secrets.decrypt(raw) == {"secret": "a-very-long-app-secret-9f3c"}
    do_configure_wechat_login(system, app_id="wx1234567890", secret="", scope="snsapi_userinfo")  # blank keeps it
    assert field_secrets.decrypt(WeChatLogin.objects.get(pk=row.pk).secret_encrypted)["secret"].endswith("9f3c")
    assert AuditLog.objects.filter(action="portal.wechat_login").count() == 2
    assert not AuditLog.objects.filter(data__icontains="a-very-long").exists()

    WeChatLogin.objects.all().delete()
    tenant.settings = {"portal": {"wechat": {"app_id": "wxold", "secret": "old-plain-secret-1234"}, "refund_days": 3}}
    tenant.save()
    migration = importlib.import_module("shequn.portal.migrations.0002_wechat_login_encrypted")
    migration.move_secret_out_of_settings(django_apps, None)
    tenant.refresh_from_db()
    assert tenant.settings == {"portal": {"refund_days": 3}}
    moved = WeChatLogin.objects.get(tenant=tenant)
    assert moved.app_id == "wxold" and "old-plain" not in moved.secret_encrypted
    assert field_secrets.decrypt(moved.secret_encrypted) == {"secret": "old-plain-secret-1234"}


def test_the_console_form_saves_the_wechat_secret_through_the_service_and_never_shows_it(tenant):
    staff = StaffFactory(tenant=tenant)
    c = Client()
    c.force_login(staff.user)
    add = reverse("admin:portal_wechatlogin_add")
    page = c.get(add)
    assert page.status_code == 200 and 'type="password"' in page.content.decode()
    r = c.post(add, {"app_id": "wxconsole123", "secret": "console-typed-secret-abcd", "scope": "snsapi_base",
                     "api_base": ""})
    assert r.status_code == 302, r.content.decode()[:2000]
    row = WeChatLogin.objects.get(tenant=tenant)
    assert field_secrets.decrypt(row.secret_encrypted) == {"secret": "console-typed-secret-abcd"}
    change = c.get(reverse("admin:portal_wechatlogin_change", args=[row.pk])).content.decode()
    assert "console-typed-secret" not in change and "••••abcd" in change
    assert c.get(add).status_code == 403  # one per tenant
