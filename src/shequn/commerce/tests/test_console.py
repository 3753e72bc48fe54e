from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import Client

from shequn.commerce import services
from shequn.commerce.models import SandboxTransaction
from shequn.core.models import StaffRole
from shequn.core.services import do_create_operator

from .conftest import pay, sku

PAGES = ["product", "sku", "memberprice", "order", "payment", "refund", "orderevent", "flashsale",
         "flashreservation", "groupbuy", "groupbuyteam", "coupontemplate", "coupon", "tiergrant", "livesession",
         "livejoin"]


@pytest.fixture
def console(tenant):
    staff = do_create_operator(tenant=tenant, username="op", password="pw-123456", role=StaffRole.OWNER)
    c = Client()
    c.force_login(staff.user)
    return c


def test_console_pages_render(console, system, member, product):
    o = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    pay(system, o.pk)
    for name in PAGES:
        r = console.get(f"/console/commerce/{name}/")
        assert r.status_code == 200, name
    assert console.get(f"/console/commerce/order/{o.pk}/change/").status_code == 200
    assert console.get(f"/console/commerce/product/{product.pk}/change/").status_code == 200


def test_console_refund_action_goes_through_services(console, system, member, product):
    o = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    pay(system, o.pk)
    r = console.post("/console/commerce/order/", {"action": "refund_rest", "_selected_action": [o.pk]})
    assert r.status_code in (200, 302)
    o.refresh_from_db()
    assert o.status == "refunded" and o.refunded_fen == 9900


def test_payments_reconcile_command(system, member, product, tenant):
    o = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    pay(system, o.pk)
    out = io.StringIO()
    call_command("payments", "reconcile", "--tenant", tenant.slug, stdout=out)
    assert "clean" in out.getvalue()
    SandboxTransaction.objects.update(status="failed")
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("payments", "reconcile", stdout=out)
    assert "status_mismatch" in out.getvalue()
