"""Test helpers for the REST API: real API keys made through the service, a JSON client, and a
small populated "world" per tenant. The root ``conftest.py`` loads this module as a pytest plugin, so
the fixtures ``make_client``, ``world`` and ``other_world`` are available to every test; import the
helpers (``ApiClient``, ``key_for``, ``build_world``) as usual.
"""

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from shequn.activity.services import do_ingest
from shequn.communities.models import ChatGroup, Community, Membership, RoleAssignment
from shequn.communities.services import do_add_group, do_assign_role, do_create_community, do_join
from shequn.core.models import ApiKey, AuditLog, Tenant
from shequn.core.permissions import Principal
from shequn.core.services import do_create_api_key
from shequn.members.models import Member, Tag
from shequn.members.services import do_create_member


class ApiClient:
    """A Django test client that sends an API key and JSON bodies."""

    def __init__(self, secret: str | None = None, *, language: str | None = None, client: Client | None = None):
        self.client = client or Client()
        self.headers: dict[str, str] = {}
        if secret:
            self.headers["Authorization"] = f"Bearer {secret}"
        if language:
            self.headers["Accept-Language"] = language

    def request(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
                **kwargs: Any) -> Any:
        hdrs = {**self.headers, **(headers or {})}
        fn = getattr(self.client, method.lower())
        if body is not None and method.upper() in ("POST", "PATCH", "PUT", "DELETE"):
            return fn(path, data=json.dumps(body), content_type="application/json", headers=hdrs, **kwargs)
        if body is not None:
            return fn(path, data=body, headers=hdrs, **kwargs)
        return fn(path, headers=hdrs, **kwargs)

    def get(self, path: str, params: Any = None, **kw: Any) -> Any:
        return self.request("GET", path, params, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body if body is not None else {}, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PATCH", path, body if body is not None else {}, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)


def key_for(tenant: Tenant, scopes: list[str] | None = None, name: str = "test") -> tuple[ApiKey, str]:
    return do_create_api_key(Principal.system(tenant.pk), name=name, scopes=scopes or ["*"])


@pytest.fixture
def make_client(db: None) -> Any:
    """``make_client(tenant, scopes=["members.read"], language="en") -> ApiClient``"""

    def make(tenant: Tenant, scopes: list[str] | None = None, language: str | None = None) -> ApiClient:
        _key, secret = key_for(tenant, scopes)
        return ApiClient(secret, language=language)

    return make


@dataclass
class World:
    tenant: Tenant
    member: Member
    other_member: Member
    community: Community
    group: ChatGroup
    membership: Membership
    role: RoleAssignment
    tag: Tag
    api_key: ApiKey
    event_id: int
    audit: AuditLog


def build_world(tenant: Tenant, label: str) -> World:
    """A member with phone, tags and a telegram identity, a second member, a community with a
    telegram group, an open membership, a role, one ingested event and an API key."""
    p = Principal.system(tenant.pk)
    n = tenant.pk
    member = do_create_member(p, display_name=f"{label}会员", phone=f"1380000{n:04d}",
                              email=f"t{n}@example.cn", tags=[f"{label}标签"],
                              identities=[{"platform": "telegram", "external_id": f"tg-{label}"}])
    other = do_create_member(p, display_name=f"{label}另一位", phone=f"1390000{n:04d}")
    community = do_create_community(p, name=f"{label}社群", theme=f"{label}主题")
    group = do_add_group(p, community, platform="telegram", external_id=f"room-{label}", name=f"{label}一群")
    membership = do_join(p, member, community, group=group)
    role = do_assign_role(p, community, member, role="advocate")
    tag = Tag.objects.get(tenant=tenant, name=f"{label}标签")
    key, _secret = key_for(tenant, ["members.read"], name=f"{label}-key")
    res = do_ingest(tenant.pk, [{
        "platform": "telegram", "event_id": f"ev-{label}-1", "kind": "message", "sender": f"tg-{label}",
        "group": f"room-{label}", "occurred_at": (timezone.now() - dt.timedelta(hours=1)).isoformat(),
        "payload": {"text": f"{label}你好"},
    }])
    assert res.stored == 1, res
    return World(tenant=tenant, member=member, other_member=other, community=community, group=group,
                 membership=membership, role=role, tag=tag, api_key=key, event_id=res.event_ids[0],
                 audit=AuditLog.objects.filter(tenant=tenant).order_by("-pk").first())  # type: ignore[arg-type]


@pytest.fixture
def world(tenant: Tenant) -> World:
    return build_world(tenant, "甲")


@pytest.fixture
def other_world(other_tenant: Tenant) -> World:
    return build_world(other_tenant, "乙")
