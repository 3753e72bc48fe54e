"""The console sidebar (``settings.UNFOLD["SIDEBAR"]``, built with ``settings._nav``): every link
resolves and opens for the owner, and every link but the overview is shown only to roles whose
permission it names."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.utils.module_loading import import_string

from shequn.core.models import StaffRole
from shequn.core.permissions import permissions_for_role
from shequn.testing.factories import StaffFactory

ITEMS = [item for section in settings.UNFOLD["SIDEBAR"]["navigation"] for item in section["items"]]


def _permission(item: dict) -> str:
    """``shequn.console.navigation.can_members_read`` → ``members.read``."""
    area, _sep, action = item["permission"].rsplit(".", 1)[1].removeprefix("can_").rpartition("_")
    return f"{area}.{action}"


def test_every_link_but_the_overview_names_a_permission_callback():
    assert len(ITEMS) > 30
    gated = [item for item in ITEMS if "permission" in item]
    assert [str(item["link"]) for item in ITEMS if item not in gated] == ["/console/"]
    for item in gated:
        assert callable(import_string(item["permission"])), item["title"]


@pytest.mark.django_db
def test_every_link_opens_for_the_owner(tenant):
    c = Client()
    c.force_login(StaffFactory(tenant=tenant, role=StaffRole.OWNER).user)
    for item in ITEMS:
        r = c.get(str(item["link"]))
        assert r.status_code == 200, (str(item["title"]), str(item["link"]), r.status_code)


@pytest.mark.django_db
@pytest.mark.parametrize("role", [StaffRole.READONLY, StaffRole.CONTENT, StaffRole.FINANCE, StaffRole.CUSTOMER_SERVICE])
def test_each_role_sees_the_links_its_permissions_allow(tenant, role):
    staff = StaffFactory(tenant=tenant, role=role)
    c = Client()
    c.force_login(staff.user)
    request = c.get("/console/").wsgi_request  # the signed-in request, with its active tenant
    allowed = permissions_for_role(role)
    for item in (i for i in ITEMS if "permission" in i):
        shown = import_string(item["permission"])(request)
        assert shown == (_permission(item) in allowed), (role, str(item["title"]))
    assert any(_permission(i) not in allowed for i in ITEMS if "permission" in i), "the role sees everything"
