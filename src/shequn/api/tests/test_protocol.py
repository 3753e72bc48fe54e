"""Cross-cutting API protocol: Idempotency-Key, error shape, 422 field paths, languages, OpenAPI."""

import json
import logging

import pytest
from django.http import Http404
from django.test import Client
from openapi_spec_validator import validate

from shequn.activity.models import ActivityEvent
from shequn.api.main import api
from shequn.communities.models import Community
from shequn.core.models import AuditLog
from shequn.members import api as members_api
from shequn.members import selectors
from shequn.members.models import Member
from shequn.testing.client import ApiClient

# --- Idempotency-Key ----------------------------------------------------------------------------


def test_same_key_same_body_replays_and_writes_once(world, make_client):
    c = make_client(world.tenant)
    hdr = {"Idempotency-Key": "create-1"}
    body = {"display_name": "幂等会员", "phone": "13912345678"}
    first = c.post("/api/v1/members", body, headers=hdr)
    second = c.post("/api/v1/members", body, headers=hdr)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert Member.objects.filter(tenant=world.tenant, display_name="幂等会员").count() == 1
    assert AuditLog.objects.filter(tenant=world.tenant, action="member.create",
                                   object_id=str(first.json()["id"])).count() == 1
    # without the header a second call creates a second member
    assert c.post("/api/v1/members", {"display_name": "幂等会员"}).status_code == 201
    assert Member.objects.filter(tenant=world.tenant, display_name="幂等会员").count() == 2


def test_same_key_other_body_is_409(world, make_client):
    c = make_client(world.tenant)
    hdr = {"Idempotency-Key": "k-2"}
    assert c.post("/api/v1/communities", {"name": "一号"}, headers=hdr).status_code == 201
    resp = c.post("/api/v1/communities", {"name": "二号"}, headers=hdr)
    assert resp.status_code == 409
    assert resp.json()["code"] == "idempotency_mismatch"
    assert not Community.objects.filter(name="二号").exists()


def test_failed_request_releases_its_key(world, make_client):
    c = make_client(world.tenant)
    hdr = {"Idempotency-Key": "k-3"}
    bad = c.post("/api/v1/members", {"display_name": "x", "phone": "12345"}, headers=hdr)
    assert bad.status_code == 422
    # the failure rolled the key back with it: the corrected retry (another body) is not a 409
    good = c.post("/api/v1/members", {"display_name": "x", "phone": "13812345678"}, headers=hdr)
    assert good.status_code == 201, good.content
    again = c.post("/api/v1/members", {"display_name": "x", "phone": "13812345678"}, headers=hdr)
    assert again.json() == good.json()
    assert Member.objects.filter(tenant=world.tenant, phone="13812345678").count() == 1


def test_idempotency_is_per_tenant(world, other_tenant, make_client):
    hdr = {"Idempotency-Key": "shared"}
    a = make_client(world.tenant).post("/api/v1/members", {"display_name": "甲方"}, headers=hdr)
    b = make_client(other_tenant).post("/api/v1/members", {"display_name": "乙方"}, headers=hdr)
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"] and b.json()["display_name"] == "乙方"


def test_ingest_replay_with_key(world, make_client):
    c = make_client(world.tenant)
    events = {"events": [{"platform": "wecom", "event_id": "w-1", "kind": "message", "sender": "wm-1",
                          "occurred_at": "2026-03-01T09:00:00+08:00"}]}
    first = c.post("/api/v1/activity/events", events, headers={"Idempotency-Key": "batch-1"})
    second = c.post("/api/v1/activity/events", events, headers={"Idempotency-Key": "batch-1"})
    assert first.json() == second.json() == {"stored": 1, "duplicates": 0, "created_members": 1, "errors": []}
    third = c.post("/api/v1/activity/events", events)  # no key: ingest itself de-duplicates
    assert third.json()["stored"] == 0 and third.json()["duplicates"] == 1
    assert ActivityEvent.objects.filter(tenant=world.tenant, platform_event_id="w-1").count() == 1


def test_overlong_idempotency_key_is_422(world, make_client):
    resp = make_client(world.tenant).post("/api/v1/members", {"display_name": "x"},
                                          headers={"Idempotency-Key": "k" * 200})
    assert resp.status_code == 422


# --- errors and 422 field paths -------------------------------------------------------------------

@pytest.mark.parametrize(("url", "body", "field"), [
    ("/api/v1/members", {}, "body.payload.display_name"),
    ("/api/v1/members", {"display_name": ""}, "body.payload.display_name"),
    ("/api/v1/members", {"display_name": "a", "identities": [{"platform": "qq", "external_id": "1"}]},
     "body.payload.identities.0.platform"),
    ("/api/v1/communities", {"name": "c", "purpose": "nonsense"}, "body.payload.purpose"),
    ("/api/v1/activity/events", {"events": "nope"}, "body.payload.events"),
    ("/api/v1/activity/events", {}, "body.payload.events"),
    ("/api/v1/activity/events", {"events": []}, "body.payload.events"),
])
def test_malformed_payload_is_422_with_field_path(world, make_client, url, body, field):
    resp = make_client(world.tenant).post(url, body)
    assert resp.status_code == 422, resp.content
    out = resp.json()
    assert out["code"] == "validation_error"
    assert field in [d["field"] for d in out["details"]], out


def test_not_json_is_an_error_in_the_one_shape(world, make_client):
    c = make_client(world.tenant)
    resp = c.client.post("/api/v1/members", data="{not json", content_type="application/json", headers=c.headers)
    assert resp.status_code == 400
    assert resp.json() == {"code": "malformed_body", "message": "请求体无法解析, 需要合法的 JSON", "details": None}


def test_bad_query_and_cursor(world, make_client):
    c = make_client(world.tenant)
    resp = c.get("/api/v1/members?limit=0")
    assert resp.status_code == 422 and resp.json()["details"][0]["field"] == "query.limit"
    resp = c.get("/api/v1/members?cursor=%%%")
    assert resp.status_code == 422 and resp.json()["details"][0]["field"] == "query.cursor"
    assert c.get("/api/v1/members/notanumber").status_code in (404, 422)


def test_messages_follow_accept_language(world, make_client):
    zh = make_client(world.tenant).get("/api/v1/members/999999")
    assert zh.status_code == 404
    assert zh.json()["message"] == "会员不存在"
    assert zh["Content-Language"] == "zh-hans"
    en = make_client(world.tenant, language="en").get("/api/v1/members/999999")
    assert en.status_code == 404
    assert en["Content-Language"] == "en"


def test_validation_messages_follow_accept_language(world, make_client):
    body = {"display_name": "", "identities": [{"platform": "qq", "external_id": "1"}]}
    zh = make_client(world.tenant).post("/api/v1/members", body).json()
    assert zh["message"] == "请求数据不合法"
    by_field = {d["field"]: d["message"] for d in zh["details"]}
    assert by_field["body.payload.display_name"] == "至少 1 个字符"
    assert by_field["body.payload.identities.0.platform"].startswith("取值无效, 可选: ")
    en = make_client(world.tenant, language="en").post("/api/v1/members", body).json()
    assert en["message"] == "The request data is invalid"
    by_field = {d["field"]: d["message"] for d in en["details"]}
    assert "at least 1 character" in by_field["body.payload.display_name"]
    assert ApiClient(language="en").get("/api/v1/me").json()["message"] == "Log in or send a valid API key"
    assert ApiClient().get("/api/v1/me").json()["message"] == "需要登录或有效的 API 密钥"


# --- OpenAPI ------------------------------------------------------------------------------------

def test_openapi_is_served_and_declares_errors(db):
    resp = Client().get("/api/v1/openapi.json")
    assert resp.status_code == 200
    schema = json.loads(resp.content)
    assert schema["openapi"].startswith("3.")
    assert "ErrorOut" in json.dumps(schema["components"]["schemas"])
    ops = [(p, m, o) for p, item in schema["paths"].items() for m, o in item.items()]
    assert len(ops) >= 25
    for path, method, op in ops:
        codes = set(op["responses"])
        if op.get("x-shequn-webhook"):  # provider-facing: the provider's ack shape, its own replay ids
            assert {"200", "400", "401", "404", "422"} <= codes, (method, path, codes)
            continue
        assert {"400", "401", "403", "404", "409", "422", "500"} <= codes, (method, path, codes)
        assert codes & {"200", "201"}, (method, path)
    # the Idempotency-Key header sits on exactly the operations that honour it:
    # test_contract.py::test_idempotency_key_is_declared_only_where_it_is_honoured
    assert Client().get("/api/v1/docs").status_code == 200


def test_openapi_validates_against_the_spec(db):

    # as served: JSON (ninja keys responses by int status codes in Python)
    validate(json.loads(json.dumps(api.get_openapi_schema(path_prefix="/api/v1"))))


# --- unhandled errors ---------------------------------------------------------------------------

SECRET = "password=hunter2 token=sq_live_0123456789"


def _boom(*_args, **_kwargs):
    raise RuntimeError(f"database exploded: {SECRET}")


@pytest.mark.parametrize("debug", [False, True])
def test_unhandled_error_is_500_in_the_error_shape_and_logged(world, make_client, monkeypatch, caplog, settings,
                                                              debug):
    """A bug inside a handler: 500 ``internal_error`` as JSON in the caller's language, no traceback or
    exception text in the body (not even with DEBUG on), and the traceback in the log."""
    settings.DEBUG = debug
    monkeypatch.setattr(selectors, "merge_suggestions", _boom)
    with caplog.at_level(logging.ERROR, logger="shequn.api.main"):
        resp = make_client(world.tenant).get("/api/v1/members/merge-suggestions")
    assert resp.status_code == 500
    assert resp["Content-Type"].startswith("application/json")
    assert resp.json() == {"code": "internal_error", "message": "服务器内部错误, 请稍后重试", "details": None}
    text = resp.content.decode()
    assert "hunter2" not in text and "Traceback" not in text and "RuntimeError" not in text
    logged = [r for r in caplog.records if r.name == "shequn.api.main" and r.exc_info]
    assert len(logged) == 1
    assert logged[0].exc_info[0] is RuntimeError and "/api/v1/members/merge-suggestions" in logged[0].getMessage()
    assert "Traceback" in caplog.text and "_boom" in caplog.text

    en = make_client(world.tenant, language="en").get("/api/v1/members/merge-suggestions")
    assert en.status_code == 500
    assert en.json()["message"] == "Internal server error; please try again later"


def test_unhandled_error_in_an_idempotent_post_rolls_back_and_frees_the_key(world, make_client, monkeypatch):
    c = make_client(world.tenant)
    hdr = {"Idempotency-Key": "boom-1"}
    body = {"display_name": "半途而废"}
    monkeypatch.setattr(members_api, "member_out", _boom)
    resp = c.post("/api/v1/members", body, headers=hdr)
    assert resp.status_code == 500 and resp.json()["code"] == "internal_error"
    assert not Member.objects.filter(tenant=world.tenant, display_name="半途而废").exists()
    monkeypatch.undo()
    again = c.post("/api/v1/members", body, headers=hdr)
    assert again.status_code == 201
    assert Member.objects.filter(tenant=world.tenant, display_name="半途而废").count() == 1


def test_django_http404_in_a_handler_is_the_error_shape(world, make_client, monkeypatch):
    def missing(*_args, **_kwargs):
        raise Http404("No Member matches the given query.")

    monkeypatch.setattr(selectors, "merge_suggestions", missing)
    resp = make_client(world.tenant).get("/api/v1/members/merge-suggestions")
    assert resp.status_code == 404
    assert resp.json() == {"code": "not_found", "message": "资源不存在", "details": None}
