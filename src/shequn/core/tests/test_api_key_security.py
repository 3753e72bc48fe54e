"""API keys: expiry, last-used time, and throttled failures (per address and per key prefix)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from shequn.core import throttle
from shequn.core.models import ApiKey, AuditLog, StaffRole, Tenant
from shequn.core.permissions import Principal
from shequn.core.services import API_KEYS, do_create_api_key, do_revoke_api_key
from shequn.testing.client import ApiClient
from shequn.testing.factories import StaffFactory

pytestmark = pytest.mark.django_db


def _key(tenant: Tenant, **kw: Any) -> tuple[ApiKey, str]:
    return do_create_api_key(Principal.system(tenant.pk), name="erp", scopes=["members.read"], **kw)


def test_an_expired_key_stops_working(tenant: Tenant) -> None:
    key, secret = _key(tenant, expires_at=timezone.now() + dt.timedelta(days=30))
    api = ApiClient(secret)
    assert api.get("/api/v1/me").status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is not None
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    API_KEYS.clear()  # what every process sees once its few seconds of cache have passed
    resp = api.get("/api/v1/me")
    assert resp.status_code == 401 and resp.json()["code"] == "unauthorized"


def test_a_cached_key_stops_at_its_expiry_at_once(tenant: Tenant) -> None:
    """The per-process cache keeps the key's expiry: a key that expires while cached stops then, not
    seconds later."""
    _key_row, secret = _key(tenant, expires_at=timezone.now() + dt.timedelta(seconds=1.5))
    api = ApiClient(secret)
    assert api.get("/api/v1/me").status_code == 200
    assert len(API_KEYS._data) == 1  # cached, for longer than the key has left
    time.sleep(1.6)
    assert api.get("/api/v1/me").status_code == 401


def test_a_revoked_key_stops_at_once_in_this_process_and_within_seconds_in_others(
        tenant: Tenant, django_capture_on_commit_callbacks: Any) -> None:
    key, secret = _key(tenant)
    api = ApiClient(secret)
    assert api.get("/api/v1/me").status_code == 200
    # revoked by another process (the row changes, this process's cache does not): still served
    # until the cache's seconds pass
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    assert api.get("/api/v1/me").status_code == 200
    API_KEYS.clear()
    assert api.get("/api/v1/me").status_code == 401
    # revoked through the service in this process: at once
    key2, secret2 = _key(tenant)
    api2 = ApiClient(secret2)
    assert api2.get("/api/v1/me").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        do_revoke_api_key(Principal.system(tenant.pk), key2)
    assert api2.get("/api/v1/me").status_code == 401


def test_a_key_cannot_be_made_already_expired(tenant: Tenant) -> None:
    owner = StaffFactory(tenant=tenant, role=StaffRole.OWNER)
    c = Client()
    c.force_login(owner.user)
    resp = c.post("/api/v1/api-keys", {"name": "x", "scopes": ["members.read"], "expires_at": "2001-01-01T00:00:00Z"},
                  content_type="application/json")
    assert resp.status_code == 422 and resp.json()["details"]["field"] == "expires_at"
    ok = c.post("/api/v1/api-keys", {"name": "x", "scopes": ["members.read"],
                                     "expires_at": (timezone.now() + dt.timedelta(days=7)).isoformat()},
                content_type="application/json")
    assert ok.status_code == 201 and ok.json()["expires_at"]


def test_the_console_list_shows_expiry_and_last_use(tenant: Tenant) -> None:
    _key(tenant, expires_at=timezone.now() + dt.timedelta(days=30))
    old, _secret = _key(tenant, expires_at=timezone.now() + dt.timedelta(days=1))
    ApiKey.objects.filter(pk=old.pk).update(expires_at=timezone.now() - dt.timedelta(days=1))
    c = Client()
    c.force_login(StaffFactory(tenant=tenant, role=StaffRole.OWNER).user)
    html = c.get("/console/core/apikey/").content.decode()
    assert "过期时间" in html and "最近使用" in html and "已过期" in html


def test_guessing_keys_from_one_address_is_locked_out_even_for_a_good_key(
        tenant: Tenant, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.REDIS_URL = None
    key, secret = _key(tenant)
    wrong = f"sq_{key.prefix}_{'x' * 43}"
    for _i in range(throttle.API_KEY_PREFIX.limit):
        assert ApiClient(wrong).get("/api/v1/me").status_code == 401
    resp = ApiClient(secret).get("/api/v1/me")
    assert resp.status_code == 429
    assert resp.json()["code"] == "rate_limited" and "分钟后再试" in resp.json()["message"]
    lockouts = AuditLog.objects.filter(tenant=tenant, action="security.lockout")
    assert {r.data["rule"] for r in lockouts} == {"apikey.address", "apikey.prefix"}
    assert secret not in str([r.data for r in lockouts])
    real = timezone.now
    monkeypatch.setattr(throttle.timezone, "now", lambda: real() + dt.timedelta(seconds=601))
    assert ApiClient(secret).get("/api/v1/me").status_code == 200


def test_unknown_keys_count_per_address(tenant: Tenant, settings: Any) -> None:
    settings.REDIS_URL = None
    _key_row, secret = _key(tenant)
    for i in range(throttle.API_KEY_ADDRESS.limit):
        ApiClient(f"sq_nope{i}_x").get("/api/v1/me", REMOTE_ADDR="203.0.113.5")
    assert ApiClient(secret).get("/api/v1/me", REMOTE_ADDR="203.0.113.5").status_code == 429
    assert ApiClient(secret).get("/api/v1/me", REMOTE_ADDR="203.0.113.6").status_code == 200
