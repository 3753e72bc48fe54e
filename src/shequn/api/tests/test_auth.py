"""Authentication and authorisation: API keys (scopes, revocation), console sessions with CSRF,
and the staff-role matrix enforced by the API."""

import pytest
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client

from shequn.core.models import ApiKey, StaffRole
from shequn.core.permissions import Principal
from shequn.core.services import do_create_operator, do_revoke_api_key
from shequn.members.models import Member
from shequn.testing.client import ApiClient
from shequn.testing.scenarios import api_key_for


def staff_client(tenant, role, *, csrf=False, username=None):
    staff = do_create_operator(tenant=tenant, username=username or f"u-{role}", password="pw-123456789", role=role)
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(staff.user)
    return ApiClient(client=client)


# --- API keys -------------------------------------------------------------------------------------

def test_no_credentials_is_401(world):
    for method, url in (("GET", "/api/v1/members"), ("POST", "/api/v1/members"), ("GET", "/api/v1/me")):
        resp = ApiClient().request(method, url, {} if method == "POST" else None)
        assert resp.status_code == 401, (method, url)
        assert resp.json()["code"] == "unauthorized"


def test_garbage_and_revoked_keys_are_401(world):
    key, secret = api_key_for(world.tenant, ["*"])
    c = ApiClient(secret)
    assert c.get("/api/v1/me").status_code == 200
    do_revoke_api_key(Principal.system(world.tenant.pk), key)
    assert c.get("/api/v1/me").status_code == 401
    # a POST with a revoked key is 401 too, even with CSRF enforced (no session → no CSRF question)
    strict = ApiClient(secret, client=Client(enforce_csrf_checks=True))
    assert strict.post("/api/v1/members", {"display_name": "x"}).status_code == 401
    assert ApiClient(secret[:-2] + "xx").get("/api/v1/me").status_code == 401
    assert ApiClient("sq_nope_nope").get("/api/v1/me").status_code == 401
    assert ApiClient("not-a-key").get("/api/v1/me").status_code == 401


def test_x_api_key_header(world):
    _key, secret = api_key_for(world.tenant, ["members.read"])
    resp = ApiClient().get("/api/v1/me", headers={"X-API-Key": secret})
    assert resp.status_code == 200
    assert resp.json()["kind"] == "api_key"


def test_missing_scope_is_403_naming_the_permission(world, make_client):
    reader = make_client(world.tenant, ["members.read"])
    assert reader.get("/api/v1/members").status_code == 200
    resp = reader.post("/api/v1/members", {"display_name": "新人"})
    assert resp.status_code == 403
    assert resp.json()["code"] == "forbidden"
    assert resp.json()["details"] == {"permission": "members.write"}
    assert reader.get("/api/v1/communities").status_code == 403
    assert reader.get("/api/v1/audit-log").status_code == 403
    writer = make_client(world.tenant, ["members.write"])  # write implies read
    assert writer.get("/api/v1/members").status_code == 200
    assert writer.post("/api/v1/members", {"display_name": "新人"}).status_code == 201
    assert writer.post("/api/v1/activity/events", {"events": [{}]}).status_code == 403


def test_me(world, make_client):
    resp = make_client(world.tenant, ["members.write", "activity.read"]).get("/api/v1/me")
    assert resp.status_code == 200
    body = resp.json()
    assert body["tenant"]["id"] == world.tenant.pk and body["tenant"]["slug"] == world.tenant.slug
    assert body["kind"] == "api_key"
    assert body["permissions"] == ["activity.read", "members.read", "members.write"]


def test_api_key_lifecycle_never_leaks_secret(world, make_client):
    owner = make_client(world.tenant, ["*"])
    resp = owner.post("/api/v1/api-keys", {"name": "CRM 同步", "scopes": ["members.read"]})
    assert resp.status_code == 201, resp.content
    created = resp.json()
    secret = created["secret"]
    assert secret.startswith("sq_") and created["scopes"] == ["members.read"]
    row = ApiKey.objects.get(pk=created["id"])
    assert row.key_hash != secret and secret not in row.key_hash
    new = ApiClient(secret)
    assert new.get("/api/v1/members").status_code == 200
    listing = owner.get("/api/v1/api-keys")
    assert listing.status_code == 200
    text = listing.content.decode()
    assert secret not in text and row.key_hash not in text and "secret" not in text and "hash" not in text
    assert created["id"] in [k["id"] for k in listing.json()["items"]]
    revoked = owner.post(f"/api/v1/api-keys/{created['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert new.get("/api/v1/members").status_code == 401


def test_api_key_cannot_grant_more_than_its_creator(world, make_client):
    admin = make_client(world.tenant, ["settings.write", "members.read"])
    resp = admin.post("/api/v1/api-keys", {"name": "x", "scopes": ["*"]})
    assert resp.status_code == 403
    assert admin.post("/api/v1/api-keys", {"name": "x", "scopes": ["members.write"]}).status_code == 403
    assert admin.post("/api/v1/api-keys", {"name": "x", "scopes": ["members.read"]}).status_code == 201
    bad = admin.post("/api/v1/api-keys", {"name": "x", "scopes": ["nope.read"]})
    assert bad.status_code == 422
    assert ApiKey.objects.filter(tenant=world.tenant, name="x").count() == 1


# --- console sessions -------------------------------------------------------------------------------

def test_console_session_with_csrf(world):
    c = staff_client(world.tenant, StaffRole.OWNER, csrf=True)
    me = c.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["kind"] == "staff"
    resp = c.post("/api/v1/members", {"display_name": "无 CSRF"})
    assert resp.status_code == 403 and resp.json()["code"] == "csrf_failed"
    assert not Member.objects.filter(display_name="无 CSRF").exists()
    token = _get_new_csrf_string()
    c.client.cookies["csrftoken"] = token
    resp = c.post("/api/v1/members", {"display_name": "有 CSRF"}, headers={"X-CSRFToken": token})
    assert resp.status_code == 201, resp.content
    assert Member.objects.filter(tenant=world.tenant, display_name="有 CSRF").exists()


def test_staff_of_other_tenant_sees_only_its_own(world, other_tenant):
    c = staff_client(other_tenant, StaffRole.OWNER)
    assert c.get(f"/api/v1/members/{world.member.pk}").status_code == 404
    assert c.get("/api/v1/members").json()["items"] == []


# --- staff-role matrix --------------------------------------------------------------------------

# (role, method, url template, body, expected status)
MATRIX = [
    (StaffRole.READONLY, "GET", "/api/v1/members", None, 200),
    (StaffRole.READONLY, "POST", "/api/v1/members", {"display_name": "n"}, 403),
    (StaffRole.READONLY, "PATCH", "/api/v1/members/{member}", {"note": "n"}, 403),
    (StaffRole.READONLY, "POST", "/api/v1/members/{member}/tags", {"tags": ["t"]}, 403),
    (StaffRole.READONLY, "GET", "/api/v1/audit-log", None, 200),
    (StaffRole.READONLY, "GET", "/api/v1/api-keys", None, 403),
    (StaffRole.CONTENT, "GET", "/api/v1/members/{member}", None, 200),
    (StaffRole.CONTENT, "POST", "/api/v1/members", {"display_name": "n"}, 403),
    (StaffRole.CONTENT, "PATCH", "/api/v1/members/{member}", {"note": "n"}, 403),
    (StaffRole.CONTENT, "POST", "/api/v1/communities", {"name": "c"}, 403),
    (StaffRole.CONTENT, "POST", "/api/v1/activity/events", {"events": [{}]}, 403),
    (StaffRole.CUSTOMER_SERVICE, "POST", "/api/v1/members", {"display_name": "n"}, 201),
    (StaffRole.CUSTOMER_SERVICE, "PATCH", "/api/v1/members/{member}", {"note": "n"}, 200),
    (StaffRole.CUSTOMER_SERVICE, "POST", "/api/v1/members/merge", {"keep_id": 999999999, "merge_id": 999999998}, 404),
    (StaffRole.CUSTOMER_SERVICE, "POST", "/api/v1/communities", {"name": "c"}, 403),
    (StaffRole.CUSTOMER_SERVICE, "POST", "/api/v1/communities/{community}/roles",
     {"member_id": 999999999, "role": "guest"}, 403),
    (StaffRole.FINANCE, "GET", "/api/v1/communities", None, 200),
    (StaffRole.FINANCE, "POST", "/api/v1/communities", {"name": "c"}, 403),
    (StaffRole.FINANCE, "PATCH", "/api/v1/communities/{community}", {"theme": "t"}, 403),
    (StaffRole.FINANCE, "POST", "/api/v1/communities/{community}/groups", {"platform": "wecom", "external_id": "g"},
     403),
    (StaffRole.FINANCE, "POST", "/api/v1/communities/{community}/memberships", {"member_id": 999999999}, 403),
    (StaffRole.FINANCE, "POST", "/api/v1/communities/memberships/{membership}/leave", {}, 403),
    (StaffRole.FINANCE, "POST", "/api/v1/communities/roles/{role}/end", {}, 403),
    (StaffRole.FINANCE, "POST", "/api/v1/members", {"display_name": "n"}, 403),
    (StaffRole.OPERATOR, "POST", "/api/v1/communities", {"name": "c"}, 201),
    (StaffRole.OPERATOR, "POST", "/api/v1/activity/events",
     {"events": [{"platform": "manual", "event_id": "e", "kind": "other", "occurred_at": 0}]}, 200),
    (StaffRole.OPERATOR, "POST", "/api/v1/api-keys", {"name": "k", "scopes": ["members.read"]}, 403),
    (StaffRole.OWNER, "POST", "/api/v1/api-keys", {"name": "k", "scopes": ["members.read"]}, 201),
]


@pytest.mark.parametrize(("role", "method", "url", "body", "expected"), MATRIX,
                         ids=[f"{r}-{m}-{u}" for r, m, u, _b, _e in MATRIX])
def test_staff_role_matrix(world, role, method, url, body, expected):
    c = staff_client(world.tenant, role)
    url = url.format(member=world.member.pk, community=world.community.pk, membership=world.membership.pk,
                     role=world.role.pk)
    before = Member.objects.filter(tenant=world.tenant).count()
    resp = c.request(method, url, body)
    assert resp.status_code == expected, resp.content
    if expected == 403:
        assert resp.json()["code"] == "forbidden"
        assert Member.objects.filter(tenant=world.tenant).count() == before


@pytest.mark.parametrize(("role", "full"), [(StaffRole.READONLY, False), (StaffRole.CONTENT, False),
                                            (StaffRole.FINANCE, False), (StaffRole.CUSTOMER_SERVICE, True),
                                            (StaffRole.OWNER, True)])
def test_phone_full_only_for_member_writers(world, role, full):
    c = staff_client(world.tenant, role)
    body = c.get(f"/api/v1/members/{world.member.pk}").json()
    assert body["contact_masked"] is (not full)
    assert (body["phone"] == world.member.phone) is full
    if not full:
        assert body["phone"] == world.member.phone[:3] + "****" + world.member.phone[-4:]
        assert body["email"] != world.member.email
