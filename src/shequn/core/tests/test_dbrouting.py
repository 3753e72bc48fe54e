"""The read-replica router (``shequn.core.dbrouting``) against the test settings' ``replica`` alias, a
TEST MIRROR of the default database (the same rows through a second connection): which reads go to
the replica, and every rule that keeps a read on the primary. The real streaming replica is
exercised by ``tests/faults/test_replica.py``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.db import connections, router, transaction
from django.test.utils import CaptureQueriesContext, override_settings

from shequn.core import dbrouting
from shequn.core.backends.postgresql import base as pgbase
from shequn.core.models import Tenant
from shequn.testing.client import ApiClient
from shequn.testing.scenarios import api_key_for

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "replica"])


@pytest.fixture(autouse=True)
def routing() -> Iterator[None]:
    dbrouting.reset_lag_cache()
    with override_settings(SHEQUN_REPLICA_ROUTING=True, SHEQUN_REPLICA_MAX_LAG=5.0, SHEQUN_REPLICA_STICKY=5):
        yield
    dbrouting.reset_lag_cache()


def read_db() -> str:
    return router.db_for_read(Tenant)


def test_only_marked_reads_go_to_the_replica_and_the_rows_are_the_primarys():
    Tenant.objects.create(slug="r1", name="一")
    with dbrouting.pinned_to_primary(False):
        assert read_db() == "default"  # not marked
        with dbrouting.replica_reads():
            assert read_db() == "replica"
            with CaptureQueriesContext(connections["replica"]) as on_replica:
                names = list(Tenant.objects.values_list("name", flat=True))
            assert names == ["一"] and len(on_replica) == 1
        assert read_db() == "default"


def test_writes_migrations_and_reads_inside_a_transaction_stay_on_the_primary():
    with dbrouting.pinned_to_primary(False), dbrouting.replica_reads():
        with transaction.atomic():
            assert read_db() == "default"
        assert router.db_for_write(Tenant) == "default"
    assert not router.allow_migrate("replica", "core")
    assert router.allow_migrate("default", "core")


def test_a_write_pins_the_rest_of_the_context_to_the_primary():
    with dbrouting.pinned_to_primary(False), dbrouting.replica_reads():
        assert read_db() == "replica"
        Tenant.objects.create(slug="r2", name="二")
        assert read_db() == "default"
        assert Tenant.objects.filter(slug="r2").exists()  # its own write, read back at once


def test_a_caller_pinned_by_a_recent_write_reads_the_primary():
    with dbrouting.pinned_to_primary(True), dbrouting.replica_reads():
        assert read_db() == "default"


def test_a_lagging_or_unreachable_replica_sends_reads_to_the_primary(monkeypatch):
    with dbrouting.pinned_to_primary(False), dbrouting.replica_reads():
        with override_settings(SHEQUN_REPLICA_MAX_LAG=-1.0):  # any lag is too much
            assert read_db() == "default"
        monkeypatch.setattr(dbrouting, "replica_lag", lambda **kw: float("inf"))
        assert read_db() == "default"


def test_without_a_replica_configured_everything_is_the_primarys():
    with override_settings(SHEQUN_REPLICA_ROUTING=False), dbrouting.pinned_to_primary(False), \
            dbrouting.replica_reads():
        assert read_db() == "default"


def test_the_lag_of_a_mirror_is_zero_and_measured_at_most_once_a_second():
    assert dbrouting.replica_lag(fresh=True) == 0.0
    with CaptureQueriesContext(connections["replica"]) as q:
        dbrouting.replica_lag()
        dbrouting.replica_lag()
    assert len(q) == 0  # cached


def _analytics(tenant: Tenant) -> ApiClient:
    _key, secret = api_key_for(tenant, ["analytics.read", "members.write", "members.read"])
    return ApiClient(secret)


def test_http_analytics_reads_use_the_replica_until_the_same_caller_writes():
    tenant = Tenant.objects.create(slug="http", name="HTTP")
    api = _analytics(tenant)
    with CaptureQueriesContext(connections["replica"]) as on_replica:
        assert api.get("/api/v1/analytics/trend", {"days": 7}).status_code == 200
    assert len(on_replica) >= 1, "analytics read not sent to the replica"

    # a write by the same API key pins its reads to the primary for the sticky window
    assert api.post("/api/v1/members", {"display_name": "新会员"}).status_code in (200, 201)
    api.client.cookies.clear()  # an API client keeps no cookies: the pin is the token's cache key
    with CaptureQueriesContext(connections["replica"]) as on_replica:
        assert api.get("/api/v1/analytics/trend", {"days": 7}).status_code == 200
    assert len(on_replica) == 0, "the caller's read after its write went to the replica"

    # another caller of the same tenant is not pinned
    other = _analytics(tenant)
    with CaptureQueriesContext(connections["replica"]) as on_replica:
        assert other.get("/api/v1/analytics/trend", {"days": 7}).status_code == 200
    assert len(on_replica) >= 1


def test_a_write_sets_the_pin_cookie_a_browser_sends_back():
    tenant = Tenant.objects.create(slug="ck", name="Cookie")
    api = _analytics(tenant)
    response = api.post("/api/v1/members", {"display_name": "会员"})
    assert response.status_code in (200, 201)
    assert dbrouting.COOKIE in response.cookies
    assert int(response.cookies[dbrouting.COOKIE]["max-age"]) == 5


@pytest.mark.postgres
def test_the_health_check_runs_at_most_once_a_second_per_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """``shequn.core.backends.postgresql``: a connection that passed a check less than a second ago
    skips the ``SELECT 1`` at the next request; an older one is checked (and closed if dead)."""
    connection = connections["default"]

    assert isinstance(connection, pgbase.DatabaseWrapper)
    connection.ensure_connection()
    checks: list[int] = []
    monkeypatch.setattr(connection, "is_usable", lambda: checks.append(1) or True)
    monkeypatch.setattr(connection, "health_check_enabled", True)
    connection.health_check_done = False
    connection._checked_at = time.monotonic()
    connection.close_if_health_check_failed()
    assert checks == [] and connection.health_check_done
    connection.health_check_done = False
    connection._checked_at = time.monotonic() - 2 * pgbase.HEALTH_CHECK_GAP
    connection.close_if_health_check_failed()
    assert checks == [1] and connection.health_check_done
    monkeypatch.setattr(connection, "is_usable", lambda: False)
    connection.health_check_done = False
    connection._checked_at = 0.0
    connection.close_if_health_check_failed()
    assert connection.connection is None  # a dead one is closed, as Django does
