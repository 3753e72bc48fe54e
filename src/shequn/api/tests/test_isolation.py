"""Tenant isolation: every API endpoint probed with another tenant's ids → 404, never its data.

The probe table is checked against the OpenAPI schema: an endpoint with an id in its path and no
probe fails ``test_every_id_path_is_probed``, so new endpoints cannot skip isolation.

Other apps add their probes without touching this file: a module ``shequn/<app>/tests/isolation.py``
with

* ``PROBES``: ``{(method, OpenAPI path): body}`` — body is ``None``, a JSON dict, or a callable
  ``ids -> dict`` given the *caller's own* ids (so a body may name the caller's own objects);
* ``build_ids(tenant, ids) -> dict[str, int | str]``: create that app's objects for ``tenant`` and
  return ``{path parameter name: id}`` (an id may be a string: a code, a share token, an
  ``out_trade_no``), each object in the state where the caller's own call succeeds (every test
  builds fresh worlds, so one-shot actions are fine); ``ids`` holds the core ids (``member_id``,
  ``spare_member_id``, ``community_id``, ``group_id``, ``membership_id``, ``role_id``, ``tag_id``,
  ``key_id``) and those of the apps built before it;
* optionally ``snapshot(tenant) -> object``: a picture of that tenant's rows that the probes must
  not change;
* optionally ``PARAMS``: ``{(method, OpenAPI path): {path parameter: ids key}}`` when one parameter
  name needs different objects on different paths (``order_id`` of an unpaid order for ``/pay``, of a
  paid one for ``/refunds``; the ``share_token`` of a team vs. of a gift coupon);
* optionally ``HEADERS``: ``{(method, OpenAPI path): {header: value}}`` sent with both calls (e.g. the
  ``Idempotency-Key`` a refund requires);
* optionally ``MIXED``: ``{(method, OpenAPI path): (own ids, foreign ids) -> body}``: the caller's own
  object in the path, another tenant's ids in the body (a member, a community) → 404 as well;
* optionally ``EXEMPT``: ``{(method, OpenAPI path): reason}`` for paths whose parameters are not a
  tenant's object ids (an enum, a webhook naming its tenant in the URL). An exempt path counts as
  covered here; the reason must name the test in that app that checks its isolation instead.

Each probe must answer 404 with the other tenant's ids and 200/201 with the caller's own."""

import importlib
import re
from types import ModuleType

import pytest

from shequn.activity.models import ActivityEvent
from shequn.api.main import ROUTED_APPS, api
from shequn.communities.models import Membership, RoleAssignment
from shequn.core.models import ApiKey
from shequn.members.models import Identity, Member, MemberTag
from shequn.testing.scenarios import ApiWorld


def _probe_modules() -> list[ModuleType]:
    out = []
    for app in ROUTED_APPS:
        name = f"shequn.{app}.tests.isolation"
        try:
            out.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name not in (name, f"shequn.{app}.tests"):
                raise
    return out


APP_MODULES = _probe_modules()

# (method, OpenAPI path) → body that succeeds with the caller's own ids
CORE_PROBES = {
    ("get", "/api/v1/members/{member_id}"): None,
    ("patch", "/api/v1/members/{member_id}"): {"display_name": "被篡改"},
    ("post", "/api/v1/members/{member_id}/identities"): {"platform": "matrix", "external_id": "@x:hs"},
    ("post", "/api/v1/members/{member_id}/tags"): {"tags": ["入侵"]},
    ("delete", "/api/v1/members/{member_id}/tags/{tag_id}"): None,
    ("get", "/api/v1/members/{member_id}/export"): None,
    ("post", "/api/v1/members/{member_id}/erase"): {"reason": "隔离测试"},
    ("get", "/api/v1/communities/{community_id}"): None,
    ("patch", "/api/v1/communities/{community_id}"): {"theme": "被篡改"},
    ("get", "/api/v1/analytics/communities/{community_id}/dashboard"): None,
    ("get", "/api/v1/communities/{community_id}/groups"): None,
    ("post", "/api/v1/communities/{community_id}/groups"): {"platform": "wecom", "external_id": "wr-x"},
    ("get", "/api/v1/communities/{community_id}/memberships"): None,
    ("post", "/api/v1/communities/{community_id}/memberships"): lambda ids: {"member_id": ids["spare_member_id"]},
    ("get", "/api/v1/communities/{community_id}/roles"): None,
    ("post", "/api/v1/communities/{community_id}/roles"):
        lambda ids: {"member_id": ids["spare_member_id"], "role": "guest"},
    ("post", "/api/v1/communities/memberships/{membership_id}/leave"): {"reason": "x"},
    ("post", "/api/v1/communities/roles/{role_id}/end"): {"reason": "x"},
    ("post", "/api/v1/api-keys/{key_id}/revoke"): {},
}
PATH_PROBES = dict(CORE_PROBES)
PARAMS: dict[tuple[str, str], dict[str, str]] = {}
HEADERS: dict[tuple[str, str], dict[str, str]] = {}
EXEMPT: dict[tuple[str, str], str] = {}
MIXED: dict[tuple[str, str], object] = {}
for _mod in APP_MODULES:
    _overlap = (set(PATH_PROBES) | set(EXEMPT)) & (set(_mod.PROBES) | set(getattr(_mod, "EXEMPT", {})))
    assert not _overlap, f"{_mod.__name__} redefines probes {_overlap}"
    PATH_PROBES.update(_mod.PROBES)
    PARAMS.update(getattr(_mod, "PARAMS", {}))
    HEADERS.update(getattr(_mod, "HEADERS", {}))
    EXEMPT.update(getattr(_mod, "EXEMPT", {}))
    MIXED.update(getattr(_mod, "MIXED", {}))


def core_ids(w: ApiWorld) -> dict[str, int]:
    return {"member_id": w.member.pk, "spare_member_id": w.other_member.pk, "community_id": w.community.pk,
            "group_id": w.group.pk, "membership_id": w.membership.pk, "role_id": w.role.pk, "tag_id": w.tag.pk,
            "key_id": w.api_key.pk}


def all_ids(w: ApiWorld) -> dict[str, int]:
    ids = core_ids(w)
    for mod in APP_MODULES:
        built = mod.build_ids(w.tenant, dict(ids))
        # two apps naming different objects with one key would make a probe act on the wrong object
        # (it only shows where primary keys differ, e.g. PostgreSQL sequences); map it with PARAMS
        clash = sorted(k for k in set(built) & set(ids) if built[k] != ids[k])
        assert not clash, f"{mod.__name__} reuses ids keys {clash}; give them their own name and map them in PARAMS"
        ids.update(built)
    return ids


def _source(method: str, path: str, name: str) -> str:
    """The ids key that fills path parameter ``name`` of this probe."""
    return PARAMS.get((method, path), {}).get(name, name)


def _fill(method: str, path: str, ids: dict[str, int]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(ids[_source(method, path, m.group(1))]), path)


def _body(spec, own: dict[str, int]):
    return spec(own) if callable(spec) else spec


def _snapshot(w: ApiWorld) -> dict:
    return {
        "member": Member.objects.filter(pk=w.member.pk).values("display_name", "phone").get(),
        "identities": Identity.objects.filter(member=w.member).count(),
        "tags": MemberTag.objects.filter(member=w.member).count(),
        "community": w.community.__class__.objects.filter(pk=w.community.pk).values("theme").get(),
        "groups": w.group.__class__.objects.filter(tenant=w.tenant).count(),
        "memberships": list(Membership.objects.filter(tenant=w.tenant).values_list("pk", "left_at")),
        "roles": list(RoleAssignment.objects.filter(tenant=w.tenant).values_list("pk", "until")),
        "key": ApiKey.objects.filter(pk=w.api_key.pk).values_list("revoked_at", flat=True).get(),
        **{mod.__name__: mod.snapshot(w.tenant) for mod in APP_MODULES if hasattr(mod, "snapshot")},
    }


def test_every_id_path_is_probed():
    schema = api.get_openapi_schema()
    id_ops = {(m, p) for p, ops in schema["paths"].items() if "{" in p for m in ops}
    missing = id_ops - set(PATH_PROBES) - set(EXEMPT)
    assert not missing, (f"endpoints without a tenant-isolation probe: {sorted(missing)} — add them to "
                         "shequn/<app>/tests/isolation.py (see this module's docstring)")
    stale = (set(PATH_PROBES) | set(EXEMPT) | set(PARAMS) | set(HEADERS) | set(MIXED)) - id_ops
    assert not stale, f"probes or exemptions for endpoints that no longer exist: {sorted(stale)}"
    unused = (set(PARAMS) | set(HEADERS)) - set(PATH_PROBES)
    assert not unused, f"PARAMS/HEADERS without a probe: {sorted(unused)}"
    for key, reason in EXEMPT.items():  # the reason names the test that checks the path's isolation
        found = re.search(r"(\w+)/tests/(\w+)\.py::(\w+)", reason)
        assert found, f"exemption {key} must name its isolation test as <app>/tests/<module>.py::<test>"
        module = importlib.import_module(f"shequn.{found[1]}.tests.{found[2]}")
        assert callable(getattr(module, found[3], None)), f"exemption {key} names a missing test: {found[0]}"
    both = set(PATH_PROBES) & set(EXEMPT)
    assert not both, f"paths both probed and exempt: {sorted(both)}"


def test_every_path_parameter_has_an_id_source(world):
    ids = all_ids(world)
    for m, p in PATH_PROBES:
        for name in re.findall(r"\{(\w+)\}", p):
            assert _source(m, p, name) in ids, f"no id source for path parameter {name} in {p}"
        for name in PARAMS.get((m, p), {}):
            assert "{" + name + "}" in p, f"PARAMS names {name}, which is not a parameter of {p}"


@pytest.mark.parametrize(("method", "path"), sorted(PATH_PROBES))
def test_other_tenants_ids_are_not_found(method, path, world, other_world, make_client):
    client = make_client(world.tenant)  # owner-level key of tenant A
    own, foreign = all_ids(world), all_ids(other_world)
    before = _snapshot(other_world)
    # control: with our own ids the same call is not a 404 (so the probe really exercises the route)
    url_own = _fill(method, path, own)
    url = _fill(method, path, foreign)
    headers = HEADERS.get((method, path))
    resp = client.request(method.upper(), url, _body(PATH_PROBES[(method, path)], own), headers=headers)
    assert resp.status_code == 404, (url, resp.status_code, resp.content)
    body = resp.json()
    assert body["code"] == "not_found"
    text = resp.content.decode()
    assert "乙" not in text and str(other_world.member.phone) not in text
    assert _snapshot(other_world) == before
    mine = client.request(method.upper(), url_own, _body(PATH_PROBES[(method, path)], own), headers=headers)
    assert mine.status_code in (200, 201), (url_own, mine.status_code, mine.content)


@pytest.mark.parametrize(("method", "path"), sorted(MIXED))
def test_own_path_with_foreign_ids_in_the_body(method, path, world, other_world, make_client):
    """The apps' ``MIXED`` cases: own object in the path, another tenant's ids in the body → 404,
    nothing of the other tenant changed or shown."""
    client = make_client(world.tenant)
    own, foreign = all_ids(world), all_ids(other_world)
    before = _snapshot(other_world)
    body = MIXED[(method, path)](own, foreign)  # type: ignore[operator]
    resp = client.request(method.upper(), _fill(method, path, own), body, headers=HEADERS.get((method, path)))
    assert resp.status_code == 404, (path, body, resp.status_code, resp.content)
    assert resp.json()["code"] == "not_found"
    assert "乙" not in resp.content.decode()
    assert _snapshot(other_world) == before


def test_mixed_own_and_foreign_ids(world, other_world, make_client):
    """Own member + foreign tag, own community + foreign member/group/inviter, merge across tenants."""
    c = make_client(world.tenant)
    before = _snapshot(other_world)
    w, o = world, other_world
    cases = [
        ("DELETE", f"/api/v1/members/{w.member.pk}/tags/{o.tag.pk}", None),
        ("POST", f"/api/v1/communities/{w.community.pk}/memberships", {"member_id": o.member.pk}),
        ("POST", f"/api/v1/communities/{w.community.pk}/memberships",
         {"member_id": w.other_member.pk, "group_id": o.group.pk}),
        ("POST", f"/api/v1/communities/{w.community.pk}/memberships",
         {"member_id": w.other_member.pk, "inviter_id": o.member.pk}),
        ("POST", f"/api/v1/communities/{w.community.pk}/roles", {"member_id": o.member.pk, "role": "guest"}),
        ("POST", "/api/v1/members/merge", {"keep_id": w.member.pk, "merge_id": o.member.pk}),
        ("POST", "/api/v1/members/merge", {"keep_id": o.member.pk, "merge_id": w.member.pk}),
    ]
    for method, url, body in cases:
        resp = c.request(method, url, body)
        assert resp.status_code == 404, (method, url, body, resp.content)
        assert "乙" not in resp.content.decode()
    assert _snapshot(other_world) == before
    assert Member.objects.get(pk=w.member.pk).merged_into_id is None


def test_lists_and_filters_never_show_other_tenant(world, other_world, make_client):
    c = make_client(world.tenant)
    o = other_world
    urls = [
        "/api/v1/members", f"/api/v1/members?community_id={o.community.pk}", "/api/v1/members?q=乙会员",
        f"/api/v1/members?q={o.member.phone}", "/api/v1/members/tags", "/api/v1/members/merge-suggestions",
        "/api/v1/members/export", "/api/v1/members/export?format=csv",
        "/api/v1/communities", "/api/v1/communities/memberships",
        f"/api/v1/communities/memberships?member_id={o.member.pk}",
        "/api/v1/activity/events", f"/api/v1/activity/events?member_id={o.member.pk}",
        f"/api/v1/activity/events?community_id={o.community.pk}",
        "/api/v1/audit-log", f"/api/v1/audit-log?object_id={o.member.pk}&object_type=Member",
        "/api/v1/api-keys", "/api/v1/me",
    ]
    for url in urls:
        resp = c.get(url)
        assert resp.status_code == 200, (url, resp.content)
        text = resp.content.decode("utf-8-sig")
        assert "乙" not in text, url
    assert c.get(f"/api/v1/members?community_id={o.community.pk}").json()["items"] == []
    assert c.get(f"/api/v1/activity/events?member_id={o.member.pk}").json()["items"] == []


def test_ingest_with_other_tenants_member_id_is_reported(world, other_world, make_client):
    c = make_client(world.tenant)
    resp = c.post("/api/v1/activity/events", {"events": [
        {"platform": "telegram", "event_id": "x-1", "kind": "message", "occurred_at": "2026-01-01T10:00:00+08:00",
         "member_id": other_world.member.pk},
        # other tenant's room id: not resolved to their group/community
        {"platform": "telegram", "event_id": "x-2", "kind": "message", "occurred_at": "2026-01-01T10:00:00+08:00",
         "sender": "tg-甲", "group": "room-乙"},
    ]})
    assert resp.status_code == 200
    body = resp.json()
    assert body["stored"] == 1
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(0, "member_id")]
    ev = ActivityEvent.objects.get(tenant=world.tenant, platform_event_id="x-2")
    assert ev.group_id is None and ev.community_id is None and ev.member_id == world.member.pk
    assert not ActivityEvent.objects.filter(tenant=other_world.tenant, platform_event_id__startswith="x-").exists()
