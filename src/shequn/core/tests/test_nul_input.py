"""NUL characters are refused at the door on both databases (PostgreSQL cannot store them: a 500
before; SQLite stored them)."""

from __future__ import annotations

import io

import pytest
from django.test import Client

from shequn.members.models import Member
from shequn.testing.scenarios import api_key_for

pytestmark = pytest.mark.django_db


def _client(tenant) -> Client:
    _key, secret = api_key_for(tenant)
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}", HTTP_ACCEPT_LANGUAGE="zh-hans")


def test_query_parameter_with_nul_is_422_naming_it(tenant):
    resp = _client(tenant).get("/api/v1/ledger/accounts", {"owner_type": "mem\x00ber", "owner_id": 1})
    assert resp.status_code == 422
    assert resp.json() == {"code": "invalid", "message": "输入不能包含 NUL (\\u0000) 字符",
                           "details": {"field": "owner_type"}}


def test_json_body_with_escaped_nul_is_refused_and_nothing_is_written(tenant):
    before = Member.objects.count()
    resp = _client(tenant).post("/api/v1/members", data='{"display_name": "a\\u0000b"}',
                                content_type="application/json")
    assert resp.status_code == 422 and resp.json()["details"] == {"field": "body"}
    assert Member.objects.count() == before


def test_console_search_with_nul_is_a_bad_request_not_a_server_error(tenant):
    assert Client().get("/console/login/", {"next": "/console/\x00"}).status_code == 400


def test_uploaded_files_may_contain_nul_bytes(tenant):
    """An XLSX is a zip full of NUL bytes: multipart uploads are not inspected."""
    f = io.BytesIO(b"PK\x03\x04\x00\x00 not really a workbook")
    f.name = "members.xlsx"
    resp = _client(tenant).post("/api/v1/members/import", {"file": f, "dry_run": "true"})
    # the import's own report answers (a broken workbook), not the NUL guard
    assert resp.json().get("details") != {"field": "body"}
    assert "NUL" not in resp.json()["message"]
