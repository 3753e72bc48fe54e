"""The API contract of issue #12, one test per bug, through the HTTP test client: every bad input is
a 4xx in the one error shape naming the field, with nothing written; an Idempotency-Key replay is
the first response byte for byte; body size and content type are enforced."""

import io
import json
import re
import tempfile

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import DataError

import shequn.members.api as members_api
from shequn.api.main import API_ROOT, api, declared_query_parameters
from shequn.api.tests.test_isolation import HEADERS, PARAMS, PATH_PROBES, _body, _fill, all_ids
from shequn.commerce.models import Order, Refund
from shequn.communities.models import Community, JoinRequest
from shequn.communities.tests import test_join_requests as join_requests_tests
from shequn.connectors.services import connections as connector_connections
from shequn.core.errors import Invalid
from shequn.core.management.commands.serve import control_socket_args
from shequn.core.models import ApiKey, AuditLog, IdempotencyRecord
from shequn.core.permissions import Principal
from shequn.members.models import Member, Tag
from shequn.moderation import services as moderation_services
from shequn.moderation.models import ModerationPolicy
from shequn.referrals.models import CommissionPlan, InviteLink, LinkEvent, Withdrawal
from shequn.testing.client import ApiClient


def _idempotent_posts() -> set[tuple[str, str]]:
    out = set()
    for bound in api._get_bound_routers():
        for path, view in bound.path_operations.items():
            for op in view.operations:
                if getattr(op.view_func, "idempotent", False):
                    full = "/".join(p for p in f"{API_ROOT}/{bound.prefix}/{path}".split("/") if p)
                    out.add(("post", "/" + full))
    return out


IDEMPOTENT = _idempotent_posts()
#: POSTs without an id in the path: (path, body from the caller's own ids)
PLAIN_POSTS = {
    "/api/v1/members": lambda ids: {"display_name": "重放会员", "tags": ["重放"]},
    "/api/v1/members/merge": lambda ids: {"keep_id": ids["member_id"], "merge_id": ids["spare_member_id"]},
    "/api/v1/communities": lambda ids: {"name": "重放社群"},
    "/api/v1/api-keys": lambda ids: {"name": "重放", "scopes": ["members.read"]},
    "/api/v1/activity/events": lambda ids: {"events": [{"platform": "wecom", "event_id": "r-1", "kind": "message",
                                                        "sender": "wm-r", "occurred_at": "2026-03-01T09:00:00+08:00"}]},
    "/api/v1/referrals/links": lambda ids: {"kind": "member", "member_id": ids["member_id"], "campaign": "重放"},
    "/api/v1/referrals/plans": lambda ids: {"name": "重放方案", "rules": [{"rate_bps": 500}]},
    "/api/v1/referrals/bindings": lambda ids: {"member_id": ids["spare_member_id"], "referrer_id": ids["member_id"]},
    "/api/v1/moderation/reports": lambda ids: {"event_id": ids["event_id"],
                                               "reporter_member_id": ids["spare_member_id"]},
    "/api/v1/engagement/checkins": lambda ids: {"member_id": ids["member_id"]},
    # the campaign objects of issue #14
    "/api/v1/commerce/products": lambda ids: {"name": "重放商品", "skus": [{"code": "R-1", "price_fen": 1990}]},
    "/api/v1/commerce/coupon-templates": lambda ids: {"name": "重放券", "kind": "fixed", "amount_fen": 500,
                                                      "valid_from": "2030-01-01T00:00:00+08:00",
                                                      "valid_until": "2030-02-01T00:00:00+08:00"},
    "/api/v1/commerce/live-sessions": lambda ids: {"title": "重放直播", "starts_at": "2030-01-01T20:00:00+08:00",
                                                   "community_id": ids["community_id"]},
    "/api/v1/engagement/lotteries": lambda ids: {"title": "重放抽奖", "closes_at": "2099-01-01T00:00:00Z",
                                                 "draw_at": "2099-01-02T00:00:00Z",
                                                 "prizes": [{"name": "香薰", "stock": 1}]},
    "/api/v1/engagement/red-packets": lambda ids: {"total": 10, "count": 2},
    "/api/v1/engagement/badges": lambda ids: {"code": "replay", "name": "重放", "rule": "streak", "threshold": 3},
    "/api/v1/engagement/content-items": lambda ids: {"title": "欢迎", "body": "欢迎加入"},
    "/api/v1/referrals/fission-tasks": lambda ids: {"name": "邀三人", "threshold": 3, "reward_kind": "points",
                                                    "reward_value": 100},
    "/api/v1/referrals/alliances": lambda ids: {"name": "重放联盟"},
    "/api/v1/referrals/withdrawals": lambda ids: {"member_id": ids["member_id"], "amount_fen": 100,
                                                  "request_id": "replay-wd"},
    "/api/v1/commerce/orders": lambda ids: {"member_id": ids["member_id"],
                                            "lines": [{"sku_id": ids["sku_id"], "quantity": 1}]},
    "/api/v1/commerce/flash-sales": lambda ids: {"name": "重放秒杀", "sku_id": ids["sku_id"], "price_fen": 990,
                                                 "stock": 2, "starts_at": "2030-01-01T00:00:00+08:00",
                                                 "ends_at": "2030-01-02T00:00:00+08:00"},
    "/api/v1/commerce/group-buys": lambda ids: {"name": "重放团", "sku_id": ids["sku_id"], "price_fen": 6600,
                                                "team_size": 2, "starts_at": "2030-01-01T00:00:00+08:00",
                                                "ends_at": "2030-01-02T00:00:00+08:00"},
    "/api/v1/connectors/connections": lambda ids: {"platform": "telegram", "name": "重放连接",
                                                   "secrets": {"bot_token": "1:replay", "webhook_secret": "s"}},
    "/api/v1/engagement/content-schedules": lambda ids: {"content_id": ids["item_id"], "kind": "fixed",
                                                         "community_id": ids["community_id"],
                                                         "run_at": "2030-01-01T09:00:00+08:00"},
    "/api/v1/engagement/welcomes": lambda ids: {"community_id": ids["community_id"], "body": "欢迎 {name}"},
    "/api/v1/moderation/classify": lambda ids: {"text": "帮我砍一刀吧 https://p.pinduoduo.com/x"},
    "/api/v1/webhooks/endpoints": lambda ids: {"url": "https://example.com/hook", "event_types": ["order.paid"]},
    "/api/v1/analytics/segments": lambda ids: {"name": "重放人群", "min_orders": 1},
    "/api/v1/analytics/segments/count": lambda ids: {"max_orders": 0},
}
#: multipart POSTs: (path, form fields and files); each call gets fresh file objects
UPLOAD_POSTS = {
    "/api/v1/members/import": lambda: {"file": _upload("replay.csv", "昵称,手机号\n重放导入,13800009999\n")},
}


def _join_request_case(action: str):
    def setup(world):
        Community.objects.filter(pk=world.community.pk).update(entry_threshold="approval")
        join_requests_tests._ask(world, f"tg-replay-{action}", 1)
        pending = JoinRequest.objects.filter(tenant=world.tenant).order_by("-pk").first()
        return f"/api/v1/communities/join-requests/{pending.pk}/{action}", {"note": "重放"}
    return setup


def _partner_group_case(world):
    join_requests_tests._partner(world)
    return (f"/api/v1/communities/{world.community.pk}/partner-groups",
            {"member_id": world.other_member.pk, "platform": "telegram", "external_id": "-100999", "name": "重放群"})


#: POSTs whose target needs more than the isolation world: world -> (url, body)
SETUP_POSTS = {
    "/api/v1/communities/join-requests/{request_id}/approve": _join_request_case("approve"),
    "/api/v1/communities/join-requests/{request_id}/decline": _join_request_case("decline"),
    "/api/v1/communities/{community_id}/partner-groups": _partner_group_case,
}
REPLAY_CASES = sorted(
    [(p, "probe") for m, p in PATH_PROBES if m == "post" and ("post", p) in IDEMPOTENT and p not in SETUP_POSTS]
    + [(p, "plain") for p in PLAIN_POSTS if ("post", p) in IDEMPOTENT]
    + [(p, "upload") for p in UPLOAD_POSTS if ("post", p) in IDEMPOTENT]
    + [(p, "setup") for p in SETUP_POSTS if ("post", p) in IDEMPOTENT])


#: POSTs that cannot honour Idempotency-Key, with the reason (docs/subsystems/api.md)
NOT_IDEMPOTENT = {
    # a provider webhook: no API key (no tenant to scope a key by) and the provider sends no
    # Idempotency-Key; a repeated notification is recognised by the provider's transaction id
    "/api/v1/commerce/payments/callback/{tenant_slug}/{provider}": "provider webhook",
}


def _schema_posts() -> set[str]:
    return {path for path, item in api.get_openapi_schema()["paths"].items() if "post" in item}


def test_every_post_honours_the_idempotency_key():
    """Generated from the schema: a new POST without ``@idempotent`` (or without a replay case
    below) fails here, unless it is listed in NOT_IDEMPOTENT with its reason."""
    posts = _schema_posts()
    assert set(NOT_IDEMPOTENT) <= posts, "stale NOT_IDEMPOTENT entry"
    assert posts - set(NOT_IDEMPOTENT) == {p for _m, p in IDEMPOTENT}
    assert not set(NOT_IDEMPOTENT) & {p for _m, p in IDEMPOTENT}
    assert {p for p, _k in REPLAY_CASES} == posts - set(NOT_IDEMPOTENT), "every POST needs a replay case"
    assert len(REPLAY_CASES) == len({p for p, _k in REPLAY_CASES})


def test_replay_cases_cover_the_issue_endpoints():
    paths = {p for p, _k in REPLAY_CASES}
    for wanted in ("/api/v1/referrals/links", "/api/v1/commerce/flash-sales/{flash_sale_id}/buy",
                   "/api/v1/commerce/group-buys/{group_buy_id}/teams",
                   "/api/v1/moderation/violations/{violation_id}/review",
                   "/api/v1/moderation/violations/{violation_id}/appeal"):
        assert wanted in paths, wanted
    assert len(paths) >= 90


@pytest.mark.parametrize(("path", "kind"), REPLAY_CASES)
def test_idempotency_replay_is_the_first_response_byte_for_byte(path, kind, world, make_client, monkeypatch):
    client = make_client(world.tenant)
    # creating a connection checks the credentials with the platform: no network in this test
    monkeypatch.setattr(connector_connections, "verify_connection", lambda platform, config, secrets: dict(config))
    ids = all_ids(world)
    ids["event_id"] = world.event_id
    if kind == "probe":
        url, body = _fill("post", path, ids), _body(PATH_PROBES[("post", path)], ids)
        headers = dict(HEADERS.get(("post", path), {}))
    elif kind == "plain":
        url, body, headers = path, PLAIN_POSTS[path](ids), {}
    elif kind == "setup":
        (url, body), headers = SETUP_POSTS[path](world), {}
    else:
        url, body, headers = path, None, {}
    headers["Idempotency-Key"] = f"replay-{kind}-{path}"[:128]

    def call():
        if kind == "upload":
            return client.client.post(url, UPLOAD_POSTS[path](), headers={**client.headers, **headers})
        return client.request("POST", url, body if body is not None else {}, headers=headers)

    first = call()
    assert first.status_code in (200, 201, 202), (url, first.status_code, first.content)
    audit_rows = AuditLog.objects.count()
    second = call()
    assert (second.status_code, second["Content-Type"], second.content) == (
        first.status_code, first["Content-Type"], first.content)
    assert AuditLog.objects.count() == audit_rows  # the replay wrote nothing
    assert IdempotencyRecord.objects.filter(tenant=world.tenant, key=headers["Idempotency-Key"]).count() == 1


def test_idempotency_key_is_declared_only_where_it_is_honoured():
    """A client reads the schema to know which retries are safe: the header is on every operation
    that replays (``core.http.idempotent``) and on no other."""
    schema = api.get_openapi_schema()
    declared = {(method, path) for path, item in schema["paths"].items() for method, op in item.items()
                if any(p["name"] == "Idempotency-Key" for p in op.get("parameters", []))}
    assert declared == IDEMPOTENT
    assert {p for _m, p in declared} == _schema_posts() - set(NOT_IDEMPOTENT)


def test_params_of_the_probes_are_known():
    assert set(PARAMS) <= set(PATH_PROBES)


# --- strictness: money, quantities, lengths, timestamps, IPs -----------------------------------

def _fields(resp):
    assert resp.status_code == 422, resp.content
    body = resp.json()
    assert set(body) == {"code", "message", "details"}
    return {d["field"] for d in body["details"]} if isinstance(body["details"], list) else body["details"]


@pytest.mark.parametrize("bad", ["10", True, 10.0, -5, 0])
def test_refund_amount_is_a_strict_positive_integer(world, make_client, bad):
    c = make_client(world.tenant)
    resp = c.post("/api/v1/commerce/orders/1/refunds", {"amount_fen": bad}, headers={"Idempotency-Key": "r"})
    assert "body.body.amount_fen" in _fields(resp)
    assert not Refund.objects.exists()


@pytest.mark.parametrize("bad", ["100", True, 0, 10**9])
def test_quantity_is_a_strict_bounded_integer(world, make_client, bad):
    c = make_client(world.tenant)
    resp = c.post("/api/v1/commerce/orders", {"member_id": world.member.pk, "lines": [{"sku_id": 1, "quantity": bad}]})
    assert "body.body.lines.0.quantity" in _fields(resp)
    resp = c.post("/api/v1/commerce/flash-sales/1/buy", {"member_id": world.member.pk, "quantity": bad})
    assert "body.body.quantity" in _fields(resp)
    assert not Order.objects.exists()


@pytest.mark.parametrize(("url", "body", "field"), [
    ("/api/v1/referrals/plans", {"name": "x" * 121, "rules": []}, "body.body.name"),
    ("/api/v1/referrals/plans", {"name": "p", "campaign": "c" * 65, "rules": []}, "body.body.campaign"),
    ("/api/v1/referrals/plans", {"name": "p", "rules": [{"product_id": "9" * 65}]}, "body.body.rules.0.product_id"),
    ("/api/v1/referrals/plans", {"name": "p", "rules": [], "cap_per_order_fen": -1}, "body.body.cap_per_order_fen"),
    ("/api/v1/referrals/plans", {"name": "p", "rules": [{"cap_fen": -1}]}, "body.body.rules.0.cap_fen"),
    ("/api/v1/referrals/links", {"campaign": "c" * 65}, "body.body.campaign"),
    ("/api/v1/referrals/links", {"channel": "c" * 65}, "body.body.channel"),
    ("/api/v1/referrals/links", {"label": "c" * 121}, "body.body.label"),
    ("/api/v1/referrals/withdrawals", {"member_id": 1, "amount_fen": 100, "payee": "p" * 129, "request_id": "r"},
     "body.body.payee"),
    ("/api/v1/referrals/withdrawals", {"member_id": 1, "amount_fen": 100, "request_id": "r" * 129},
     "body.body.request_id"),
    ("/api/v1/referrals/withdrawals", {"member_id": 1, "amount_fen": "100", "request_id": "r"},
     "body.body.amount_fen"),
    ("/api/v1/referrals/links/ABC/click", {"ip": "abc"}, "body.body.ip"),
    ("/api/v1/commerce/orders", {"member_id": 1, "lines": [{"sku_id": 1, "quantity": 1}],
                                 "attribution": {"campaign": "c" * 65}}, "body.body.attribution.campaign"),
    ("/api/v1/moderation/classify", {"text": ""}, "body.body.text"),
])
def test_overlong_or_malformed_input_is_422_naming_the_field(world, make_client, url, body, field):
    c = make_client(world.tenant)
    assert field in _fields(c.post(url, body))
    assert not CommissionPlan.objects.exists() and not InviteLink.objects.exists()
    assert not Withdrawal.objects.exists() and not LinkEvent.objects.exists() and not Order.objects.exists()


@pytest.mark.parametrize(("body", "field"), [
    ({"warn_window_days": 40000}, "body.body.warn_window_days"),
    ({"report_threshold": -1}, "body.body.report_threshold"),
    ({"report_threshold": 10**9}, "body.body.report_threshold"),
    ({"enabled": "yes"}, "body.body.enabled"),
    ([None, None], "body.body"),
])
def test_moderation_policy_bounds(world, make_client, body, field):
    c = make_client(world.tenant)
    resp = c.request("PUT", f"/api/v1/moderation/communities/{world.community.pk}/policy", body)
    assert field in _fields(resp)
    assert not ModerationPolicy.objects.exists()


def test_policy_service_turns_full_clean_errors_into_invalid(world):
    with pytest.raises(Invalid) as exc:
        moderation_services.do_save_policy(Principal.system(world.tenant.pk), world.community.pk,
                                           warn_window_days=40000)
    assert exc.value.details["field"] == "warn_window_days"
    with pytest.raises(Invalid) as exc:
        moderation_services.do_save_policy(Principal.system(world.tenant.pk), world.community.pk,
                                           on_ad="delete", final_step="nope")
    assert exc.value.details["field"] == "final_step"
    assert not ModerationPolicy.objects.exists()


@pytest.mark.parametrize(("query", "field"), [
    ("since=0611-03-01T00:00:00%2B05:53", "query.since"),
    ("until=0.5", "query.until"),
    ("since=1700000000", "query.since"),
    ("until=2101-01-01T00:00:00Z", "query.until"),
])
def test_timestamps_are_iso_and_in_a_sane_range(world, make_client, query, field):
    c = make_client(world.tenant)
    resp = c.client.get(f"/api/v1/activity/events?{query}", headers=c.headers)
    assert field in _fields(resp)
    ok = c.client.get("/api/v1/activity/events?since=2026-01-01T00:00:00Z", headers=c.headers)
    assert ok.status_code == 200


def test_repeated_query_parameter_is_422(world, make_client):
    c = make_client(world.tenant)
    resp = c.client.get("/api/v1/referrals/withdrawals?status=a&status=b", headers=c.headers)
    assert "query.status" in _fields(resp)


def _get_operations() -> list[str]:
    schema = api.get_openapi_schema()
    return sorted(path for path, item in schema["paths"].items() if "get" in item)


GET_PATHS = _get_operations()


def _own_url(path: str, ids: dict[str, int]) -> str:
    """``path`` with the caller's own ids (``1`` where no probe names a source)."""
    return re.sub(r"\{(\w+)\}", lambda m: str(ids.get(m.group(1), 1)), path)


def test_every_operation_declares_the_query_parameters_its_schema_lists():
    """The refusal reads the operation's query models; the schema is generated from the same models.
    If they ever disagree, a documented parameter would be refused (or an undocumented one taken)."""
    schema = api.get_openapi_schema()
    listed = {o["operationId"]: {p["name"] for p in o.get("parameters", []) if p["in"] == "query"}
              for item in schema["paths"].values() for o in item.values()}
    checked = 0
    for bound in api._get_bound_routers():
        for view in bound.path_operations.values():
            for op in view.operations:
                op_id = op.operation_id or api.get_openapi_operation_id(op)
                assert declared_query_parameters(op) == listed[op_id], op_id
                checked += 1
    assert checked == len(listed)


def test_dates_in_a_query_are_iso_strings(world, make_client):
    c = make_client(world.tenant)
    assert "query.start" in _fields(c.client.get("/api/v1/analytics/funnel?start=0", headers=c.headers))
    assert "query.end" in _fields(c.client.get("/api/v1/analytics/funnel?end=1899-01-01", headers=c.headers))
    assert c.client.get("/api/v1/analytics/funnel?start=2026-01-01", headers=c.headers).status_code == 200


@pytest.mark.parametrize("path", GET_PATHS)
def test_unknown_query_parameter_is_422_naming_it(path, world, make_client):
    c = make_client(world.tenant)
    url = _own_url(path, all_ids(world))
    resp = c.client.get(f"{url}?zz_unknown=1", headers=c.headers)
    assert "query.zz_unknown" in _fields(resp), (path, resp.content)
    assert resp.json()["code"] == "validation_error"
    plain = c.client.get(url, headers=c.headers)  # the same call without it is not refused for it
    assert plain.status_code != 422 or "query.zz_unknown" not in _fields(plain)


def test_exploded_object_for_a_query_parameter_is_422(world, make_client):
    """Schemathesis' finding: an object sent for ``status`` (form/explode style: its keys become
    parameters) was answered 200 on these two lists."""
    c = make_client(world.tenant, language="en")
    for path in ("/api/v1/connectors/human-tasks", "/api/v1/referrals/withdrawals"):
        resp = c.client.get(f"{path}?a=1&b=x&limit=10", headers=c.headers)
        assert _fields(resp) == {"query.a", "query.b"}, resp.content
        assert c.client.get(f"{path}?limit=10", headers=c.headers).status_code == 200
    resp = c.client.get("/api/v1/referrals/withdrawals?limit=0&stauts=open", headers=c.headers)
    assert _fields(resp) == {"query.limit", "query.stauts"}  # reported with the declared ones' errors
    zh_client = make_client(world.tenant)
    zh = zh_client.client.get("/api/v1/referrals/withdrawals?x=1", headers=zh_client.headers)
    assert zh.json()["details"][0]["message"] == "不支持的参数"


def test_unknown_query_parameter_without_a_key_is_401(world):
    resp = ApiClient().client.get("/api/v1/referrals/withdrawals?zz=1")
    assert resp.status_code == 401


def test_provider_webhooks_take_any_query_parameters(world, make_client):
    resp = ApiClient().client.post(f"/api/v1/commerce/payments/callback/{world.tenant.slug}/sandbox?sign=x",
                                   data="{}", content_type="application/json")
    assert resp.status_code != 422 or "query.sign" not in json.dumps(resp.json())


def test_member_tag_too_long_is_422_not_truncated(world, make_client):
    c = make_client(world.tenant)
    before = Member.objects.count()
    resp = c.post("/api/v1/members", {"display_name": "长标签", "tags": ["t" * 10_000]})
    assert "body.payload.tags.0" in _fields(resp)
    assert Member.objects.count() == before
    assert not Tag.objects.filter(name__startswith="ttt").exists()


def test_import_refuses_long_names_and_header_only_files(world, make_client):
    c = make_client(world.tenant)
    audits = AuditLog.objects.filter(action="member.import").count()
    long_name = "昵称,手机号\n" + "名" * 121 + ",13800001111\n"
    resp = c.client.post("/api/v1/members/import", {"file": _upload("m.csv", long_name)}, headers=c.headers)
    assert resp.status_code == 422 and resp.json()["code"] == "import_invalid"
    assert resp.json()["details"]["errors"][0]["row"] == 2 and resp.json()["details"]["errors"][0]["column"] == "昵称"
    assert not Member.objects.filter(phone="13800001111").exists()
    resp = c.client.post("/api/v1/members/import", {"file": _upload("h.csv", "昵称,手机号\n")}, headers=c.headers)
    assert resp.status_code == 422 and resp.json()["code"] == "import_invalid"
    assert AuditLog.objects.filter(action="member.import").count() == audits


def _upload(name: str, text: str) -> io.BytesIO:
    f = io.BytesIO(text.encode("utf-8"))
    f.name = name
    return f


# --- body size, content type, Django's own errors ----------------------------------------------

def test_body_over_the_limit_is_413_in_the_error_shape(world, make_client, settings):
    settings.SHEQUN_API_MAX_BODY = 64 * 1024
    c = make_client(world.tenant)
    before = Member.objects.count()
    resp = c.post("/api/v1/members", {"display_name": "大", "note": "x" * 100_000})
    assert resp.status_code == 413 and resp["Content-Type"].startswith("application/json")
    assert resp.json()["code"] == "payload_too_large" and resp.json()["details"]["max_bytes"] == 64 * 1024
    assert Member.objects.count() == before


def test_default_limit_is_one_mebibyte_and_bulk_ingest_allows_more(world, make_client):
    c = make_client(world.tenant)
    big = c.post("/api/v1/communities", {"name": "大", "rules": "x" * (1024 * 1024)})
    assert big.status_code == 413
    events = [{"platform": "wecom", "event_id": f"big-{i}", "kind": "message", "sender": "wm-big",
               "occurred_at": "2026-03-01T09:00:00+08:00", "payload": {"text": "y" * 900}} for i in range(1500)]
    assert c.post("/api/v1/activity/events", {"events": events}).status_code == 200


def test_djangos_own_400_is_in_the_error_shape(world, make_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    c = make_client(world.tenant)
    events = [{"platform": "wecom", "event_id": f"e-{i}", "kind": "message", "sender": "wm-1",
               "occurred_at": "2026-03-01T09:00:00+08:00"} for i in range(100)]
    resp = c.post("/api/v1/activity/events", {"events": events})
    assert resp.status_code in (400, 413) and resp["Content-Type"].startswith("application/json")
    assert set(resp.json()) == {"code", "message", "details"}
    unknown = c.get("/api/v1/no-such-endpoint")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"


@pytest.mark.parametrize(("content_type", "data"), [
    ("text/plain", json.dumps({"display_name": "纯文本"})),
    ("application/x-www-form-urlencoded", "display_name=%E8%A1%A8%E5%8D%95"),
    ("application/xml", "<member><display_name>xml</display_name></member>"),
    ("multipart/form-data; boundary=BoUnDaRy",
     '--BoUnDaRy\r\nContent-Disposition: form-data; name="display_name"\r\n\r\nmp\r\n--BoUnDaRy--\r\n'),
])
def test_wrong_content_type_is_415(world, make_client, content_type, data):
    c = make_client(world.tenant)
    before = Member.objects.count()
    resp = c.client.post("/api/v1/members", data=data, content_type=content_type, headers=c.headers)
    assert resp.status_code == 415, resp.content
    assert resp.json()["code"] == "unsupported_media_type"
    assert resp.json()["details"]["content_type"] == content_type.split(";")[0]
    assert Member.objects.count() == before


def test_json_with_charset_and_bodyless_posts_are_accepted(world, make_client):
    c = make_client(world.tenant)
    resp = c.client.post("/api/v1/members", data=json.dumps({"display_name": "字符集"}),
                         content_type="application/json; charset=utf-8", headers=c.headers)
    assert resp.status_code == 201
    # an operation without a body ignores what the client sends (the Django client sends multipart)
    key = ApiKey.objects.filter(tenant=world.tenant).first()
    assert c.client.post(f"/api/v1/api-keys/{key.pk}/revoke", headers=c.headers).status_code == 200


# --- database and model errors that reach the API ----------------------------------------------

def test_validation_and_data_errors_are_4xx_naming_the_field(world, make_client, monkeypatch):
    c = make_client(world.tenant)

    def refuse(*_a, **_k):
        raise ValidationError({"display_name": ["坏"]})

    monkeypatch.setattr(members_api, "do_create_member", refuse)
    resp = c.post("/api/v1/members", {"display_name": "x"})
    assert resp.status_code == 422 and "body.display_name" in _fields(resp)

    def too_long(*_a, **_k):
        raise DataError('value too long for type character varying(64) column "campaign"')

    monkeypatch.setattr(members_api, "do_create_member", too_long)
    resp = c.post("/api/v1/members", {"display_name": "x"})
    assert resp.status_code == 422 and resp.json()["code"] == "invalid"


def test_huge_ids_are_422_not_500(world, make_client):
    c = make_client(world.tenant)
    assert "path.member_id" in _fields(c.get(f"/api/v1/members/{2**70}"))
    assert c.get(f"/api/v1/members/{2**62}").status_code == 404


# --- operations: gunicorn control socket, apikey command ---------------------------------------

def test_serve_gives_each_instance_its_own_control_socket(settings):
    tmp_path = tempfile.mkdtemp(prefix="sq", dir="/tmp")
    settings.HOME = tmp_path
    a = control_socket_args("127.0.0.1", 8000)
    b = control_socket_args("127.0.0.1", 8001)
    assert a[0] == b[0] == "--control-socket" and a[1] != b[1]
    assert a[1].startswith(str(tmp_path)) and ".gunicorn" not in a[1]
    assert control_socket_args("h", 1, disabled=True) == ["--no-control-socket"]
    assert control_socket_args("h", 1, path="/x" * 100) == ["--no-control-socket"]


def test_apikey_command_creates_lists_and_revokes(world):
    out, err = io.StringIO(), io.StringIO()
    call_command("apikey", "create", "--tenant", world.tenant.slug, "--name", "erp",
                 "--scopes", "members.read,communities.read", stdout=out, stderr=err)
    secret = out.getvalue().strip()
    assert re.fullmatch(r"sq_\w+_[\w-]+", secret) and "shown once" in err.getvalue()
    client = ApiClient(secret)
    assert client.get("/api/v1/members").status_code == 200
    assert client.post("/api/v1/members", {"display_name": "x"}).status_code == 403
    key = ApiKey.objects.get(tenant=world.tenant, name="erp")
    assert AuditLog.objects.filter(action="api_key.create", object_id=str(key.pk)).exists()
    listing = io.StringIO()
    call_command("apikey", "list", "--tenant", world.tenant.slug, stdout=listing)
    assert "erp" in listing.getvalue() and secret not in listing.getvalue()
    call_command("apikey", "revoke", "--tenant", world.tenant.slug, str(key.pk), stdout=io.StringIO())
    assert client.get("/api/v1/members").status_code == 401
