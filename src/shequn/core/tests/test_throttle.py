"""The one throttle (core.throttle) on both backends: the database, and Redis when configured."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from shequn.core import throttle
from shequn.core.models import AuditLog, Tenant, ThrottleHit
from shequn.core.permissions import Principal

RULE = throttle.Rule("test.rule", 3, 600)


@pytest.fixture(params=["db", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest, settings: object) -> Iterator[str]:
    if request.param == "db":
        settings.REDIS_URL = None  # type: ignore[attr-defined]
    else:
        assert django_settings.REDIS_URL
        client = throttle._redis()
        assert client is not None
        for key in client.scan_iter("sq:thr:test.rule:*"):
            client.delete(key)
    yield request.param


@pytest.mark.django_db
def test_locks_at_the_limit_and_opens_when_the_window_has_passed(backend: str) -> None:
    t0 = timezone.now()
    for i in range(RULE.limit):
        assert throttle.retry_after(RULE, "alice", t0 + dt.timedelta(seconds=i)) == 0
        throttle.do_hit(RULE, "alice", t0 + dt.timedelta(seconds=i))
    wait = throttle.retry_after(RULE, "alice", t0 + dt.timedelta(seconds=10))
    # the oldest attempt (t0) leaves the window at t0 + 600 s
    assert 589 <= wait <= 590
    assert throttle.retry_after(RULE, "bob", t0 + dt.timedelta(seconds=10)) == 0  # per key
    assert throttle.retry_after(RULE, "alice", t0 + dt.timedelta(seconds=600, milliseconds=1)) == 0
    throttle.do_reset(RULE, "alice")
    assert throttle.count(RULE, "alice", t0 + dt.timedelta(seconds=10)) == 0


@pytest.mark.django_db
def test_the_window_slides(backend: str) -> None:
    t0 = timezone.now()
    throttle.do_hit(RULE, "k", t0)
    throttle.do_hit(RULE, "k", t0 + dt.timedelta(seconds=300))
    throttle.do_hit(RULE, "k", t0 + dt.timedelta(seconds=500))
    assert throttle.retry_after(RULE, "k", t0 + dt.timedelta(seconds=501)) == 99
    # at t0 + 601 only two attempts are in the window: open again, and one more locks it until t0 + 900
    assert throttle.retry_after(RULE, "k", t0 + dt.timedelta(seconds=601)) == 0
    throttle.do_hit(RULE, "k", t0 + dt.timedelta(seconds=601))
    assert throttle.retry_after(RULE, "k", t0 + dt.timedelta(seconds=602)) == 298


@pytest.mark.django_db
def test_nothing_is_stored_in_clear(settings: object) -> None:
    settings.REDIS_URL = None  # type: ignore[attr-defined]
    throttle.do_hit(RULE, "13812345678")
    throttle.do_hit(RULE, "203.0.113.9")
    stored = list(ThrottleHit.objects.values_list("key", flat=True))
    assert len(stored) == 2
    assert not any("138" in k or "203.0" in k for k in stored)


@pytest.mark.django_db
def test_the_attempt_that_locks_writes_one_audit_row(backend: str, tenant: Tenant) -> None:
    p = Principal.system(tenant.pk, label="test")
    for _i in range(RULE.limit + 2):
        throttle.do_hit_audited(RULE, "mallory", p, label="mal***")
    rows = list(AuditLog.objects.filter(tenant=tenant, action="security.lockout"))
    assert len(rows) == 1
    assert rows[0].data["rule"] == "test.rule" and rows[0].data["account"] == "mal***"
    assert "mallory" not in str(rows[0].data)


def test_wait_message_is_chinese_minutes() -> None:
    assert throttle.wait_message(61) == "尝试次数过多, 请 2 分钟后再试"
    assert throttle.wait_message(5) == "尝试次数过多, 请 1 分钟后再试"
