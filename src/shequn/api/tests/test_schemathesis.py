"""Property-based conformance run of the whole API (schemathesis) against the in-process WSGI app.

Positive and negative data for every operation, with an API key holding every scope except the ones
whose operations reach external hosts (``connectors.write``: platform APIs). A failure is

* any 5xx (``not_a_server_error``),
* a schema-violating request that is accepted (``negative_data_rejection``: the schema states what
  the services enforce — strict integers, lengths, bounds, ISO timestamps),
* a response that does not match its schema (status code declared, body valid, content type).

Bounded for the test command (``SHEQUN_SCHEMATHESIS_EXAMPLES``, default 4 per operation, ~2 min on
2 cores); ``bench/api_fuzz.sh`` runs the same test with many more examples (the 5-minute run whose
outcome docs/subsystems/api.md records)."""

import os

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import checks

from shequn.core.permissions import ALL
from shequn.testing.scenarios import api_key_for
from shequn.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)

CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.response_schema_conformance,
          checks.content_type_conformance, checks.negative_data_rejection]
#: scopes whose operations call platform APIs on external hosts
EXTERNAL_SCOPES = {"connectors.write"}
EXAMPLES = int(os.environ.get("SHEQUN_SCHEMATHESIS_EXAMPLES", "4"))


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
    _key, secret = api_key_for(tenant, sorted(ALL - EXTERNAL_SCOPES))
    return {"Authorization": f"Bearer {secret}"}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_api_conforms_to_its_schema(case, auth_headers):
    case.call_and_validate(headers=auth_headers, checks=CHECKS)
