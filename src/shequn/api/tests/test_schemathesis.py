"""Property-based conformance run of the whole API (schemathesis) against the in-process WSGI app.

Few examples per operation so it stays fast; checks: no 5xx, status codes declared in the schema,
response bodies valid against the schema, declared content types."""

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import checks

from shequn.api.testing import key_for
from shequn.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)

CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.response_schema_conformance,
          checks.content_type_conformance]


@pytest.fixture
def keep_test_connection():
    """Like Django's test Client: a raw WSGI call must not close the test transaction's connection
    (on PostgreSQL, close_old_connections closes a connection that is not in autocommit)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def auth_headers(tenant, keep_test_connection):
    _key, secret = key_for(tenant, ["*"])
    return {"Authorization": f"Bearer {secret}"}


@schema.parametrize()
@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_api_conforms_to_its_schema(case, auth_headers):
    case.call_and_validate(headers=auth_headers, checks=CHECKS)
