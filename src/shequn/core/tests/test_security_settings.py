"""HTTPS production mode and the security headers, in both modes.

The env → settings mapping is read in a fresh interpreter (settings are evaluated once per process);
the headers are checked through the test client with the production values overridden."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client, override_settings

from shequn.communities.models import Community
from shequn.core.models import StaffRole
from shequn.testing.factories import StaffFactory

SRC = Path(__file__).resolve().parents[3]

_PROBE = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({k: getattr(s, k, None) for k in (
    "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER", "X_FRAME_OPTIONS",
    "HTTPS", "TRUSTED_PROXY")} | {"csp": s.SECURE_CSP}))
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHEQUN_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update(PYTHONPATH=str(SRC), DJANGO_SETTINGS_MODULE="shequn.settings", SHEQUN_HOME=str(tmp_path),
               SHEQUN_SECRET_KEY=secrets.token_urlsafe(50), SHEQUN_ALLOWED_HOSTS="shequn.example.com")
    env.update(extra)
    return env


def _settings(tmp_path: Path, **extra: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", _PROBE], env=_env(tmp_path, **extra), capture_output=True,
                         text=True, timeout=120, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _deploy_check(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shequn.cli", "check", "--deploy", "--fail-level", "WARNING"],
                          check=False, env=_env(tmp_path, **extra), capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_deploy_check_is_clean_in_https_mode(tmp_path: Path) -> None:
    done = _deploy_check(tmp_path, SHEQUN_HTTPS="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout + done.stderr


@pytest.mark.slow
def test_deploy_check_fails_in_development_mode(tmp_path: Path) -> None:
    """The same check without SHEQUN_HTTPS: the warnings the issue listed are still reported."""
    done = _deploy_check(tmp_path)
    assert done.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in done.stdout + done.stderr


@pytest.mark.slow
def test_https_mode_settings(tmp_path: Path) -> None:
    dev = _settings(tmp_path)
    assert not dev["SESSION_COOKIE_SECURE"] and not dev["SECURE_SSL_REDIRECT"] and not dev["SECURE_HSTS_SECONDS"]
    assert dev["X_FRAME_OPTIONS"] == "DENY"  # always
    assert dev["SECURE_PROXY_SSL_HEADER"] is None

    https = _settings(tmp_path, SHEQUN_HTTPS="1")
    assert https["SESSION_COOKIE_SECURE"] and https["CSRF_COOKIE_SECURE"] and https["SECURE_SSL_REDIRECT"]
    assert https["SECURE_HSTS_SECONDS"] == 365 * 24 * 3600 and https["SECURE_HSTS_PRELOAD"]
    # a client's X-Forwarded-Proto is not believed without a trusted proxy
    assert https["SECURE_PROXY_SSL_HEADER"] is None
    assert "upgrade-insecure-requests" in https["csp"]  # type: ignore[operator]

    proxied = _settings(tmp_path, SHEQUN_TRUSTED_PROXY="1")
    assert proxied["HTTPS"] and proxied["SESSION_COOKIE_SECURE"]
    assert proxied["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def _policy(response: object) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]  # type: ignore[index]
    return {d.split()[0]: d.split()[1:] for d in header.split("; ") if d}


@pytest.mark.django_db
def test_development_mode_serves_plain_http_with_the_headers() -> None:
    c = Client()
    resp = c.get("/console/login/")
    assert resp.status_code == 200
    assert resp["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in resp
    policy = _policy(resp)
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in policy["script-src"]
    # the console runs Alpine.js (Function() for its expressions): 'unsafe-eval' there and only there
    assert "'unsafe-eval'" in policy["script-src"]


@pytest.mark.django_db
def test_portal_and_api_docs_get_the_strict_policy(tenant: object) -> None:
    c = Client()
    for url in ("/api/v1/docs", f"/portal/{tenant.slug}/login/"):  # type: ignore[attr-defined]
        resp = c.get(url)
        assert resp.status_code == 200, url
        policy = _policy(resp)
        assert "'unsafe-eval'" not in policy["script-src"] and "'unsafe-inline'" not in policy["script-src"], url
        html = resp.content.decode()
        for src in re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html):
            assert src.startswith(("/", "data:")), f"{url} loads {src} from elsewhere"
    docs = c.get("/api/v1/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in docs  # the vendored copy, not a CDN


@pytest.mark.django_db
def test_inline_scripts_carry_the_nonce_of_the_header(tenant: object, request: pytest.FixtureRequest) -> None:
    community = Community.objects.create(tenant=tenant, name="车友会")
    request.addfinalizer(cache.clear)  # the dashboard caches its (empty) series under reusable ids
    c = Client()
    c.force_login(StaffFactory(tenant=tenant, role=StaffRole.OWNER).user)
    resp = c.get(f"/console/shequn/communities/{community.pk}/dashboard/")
    assert resp.status_code == 200
    nonce = re.search(r"'nonce-([^']+)'", resp["Content-Security-Policy"])
    assert nonce is not None
    html = resp.content.decode()
    inline = re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)([^>]*)>", html)
    assert inline, "the dashboard has its inline chart script"
    assert all(f'nonce="{nonce.group(1)}"' in attrs for attrs in inline)


@pytest.mark.django_db
@override_settings(SECURE_SSL_REDIRECT=True, SECURE_HSTS_SECONDS=31536000, SECURE_HSTS_INCLUDE_SUBDOMAINS=True,
                   SESSION_COOKIE_SECURE=True, CSRF_COOKIE_SECURE=True)
def test_https_mode_redirects_http_and_sends_hsts() -> None:
    c = Client()
    resp = c.get("/console/login/")
    assert resp.status_code == 301 and resp["Location"].startswith("https://")
    secure = c.get("/console/login/", secure=True)
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")
    assert secure.cookies["csrftoken"]["secure"]
    # without a trusted proxy a forged X-Forwarded-Proto changes nothing
    assert c.get("/console/login/", HTTP_X_FORWARDED_PROTO="https").status_code == 301


@pytest.mark.django_db
@override_settings(SECURE_SSL_REDIRECT=True, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
def test_behind_a_trusted_proxy_the_forwarded_scheme_counts() -> None:
    c = Client()
    assert c.get("/console/login/", HTTP_X_FORWARDED_PROTO="https").status_code == 200
    assert c.get("/console/login/").status_code == 301
