"""Core endpoints: the audit log (filters, cursor) and concurrent Idempotency-Key use."""


import pytest

from shequn.core.models import Tenant
from shequn.core.testing import race
from shequn.members.models import Member
from shequn.testing.client import ApiClient
from shequn.testing.scenarios import api_key_for


def test_audit_log_filters_and_cursor(world, make_client):
    c = make_client(world.tenant)
    url = f"/api/v1/members/{world.member.pk}"
    c.patch(url, {"note": "一"})
    c.patch(url, {"note": "二"})
    c.post(f"{url}/tags", {"tags": ["审计"]})
    rows = c.get("/api/v1/audit-log", {"object_type": "Member", "object_id": str(world.member.pk)}).json()["items"]
    assert [r["action"] for r in rows][:3] == ["member.tag", "member.update", "member.update"]
    assert rows[0]["actor_type"] == "api_key" and rows[0]["actor_label"] == "test"
    assert rows[1]["data"] == {"fields": ["note"]}  # which fields changed, never their values
    only = c.get("/api/v1/audit-log", {"action": "member.update"}).json()["items"]
    assert {r["action"] for r in only} == {"member.update"} and len(only) == 2
    first = c.get("/api/v1/audit-log", {"limit": 2}).json()
    second = c.get("/api/v1/audit-log", {"limit": 2, "cursor": first["next_cursor"]}).json()
    assert first["items"][-1]["id"] > second["items"][0]["id"]
    assert c.get("/api/v1/audit-log", {"object_type": "Nothing"}).json()["items"] == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_write_once():
    """Two clients race with the same Idempotency-Key: one member, both answers identical."""
    tenant = Tenant.objects.create(slug="race", name="race")
    _key, secret = api_key_for(tenant)

    def worker(_i: int) -> tuple[int, object]:
        resp = ApiClient(secret).post("/api/v1/members", {"display_name": "并发"},
                                      headers={"Idempotency-Key": "race-1"})
        return resp.status_code, resp.json()

    results = race(worker, 4)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert Member.objects.filter(tenant=tenant, display_name="并发").count() == 1
    ok = [body for status, body in results if status == 201]
    assert ok and all(body == ok[0] for body in ok)
    # a loser that saw the first request still running gets 409 in_progress, never a second write
    assert all(status in (201, 409) for status, _ in results)
