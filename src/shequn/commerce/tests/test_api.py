from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client
from django.utils import timezone

from shequn.commerce import services
from shequn.commerce.gateways import SandboxGateway
from shequn.commerce.models import Order, Payment, PaymentCallback
from shequn.core.permissions import Principal
from shequn.core.services import do_create_api_key
from shequn.members.models import Member

from .conftest import sku


@pytest.fixture
def api(system):
    _key, secret = do_create_api_key(system, name="portal", scopes=["commerce.write"])
    c = Client(headers={"Authorization": f"Bearer {secret}"})
    return c


def post(c, url, body, **headers):
    return c.post(url, data=json.dumps(body), content_type="application/json", headers=headers)


def test_browse_order_pay_flow(api, member, product, tenant):
    r = api.get(f"/api/v1/commerce/products?member_id={member.pk}")
    assert r.status_code == 200 and r.json()[0]["skus"][0]["your_price_fen"] == 9900
    body = {"member_id": member.pk, "lines": [{"sku_id": sku(product).pk, "quantity": 2}],
            "attribution": {"campaign": "双11"}}
    r1 = post(api, "/api/v1/commerce/orders", body, **{"Idempotency-Key": "o-1"})
    r2 = post(api, "/api/v1/commerce/orders", body, **{"Idempotency-Key": "o-1"})
    assert r1.status_code == 200 and r1.json() == r2.json()
    order = r1.json()
    assert order["total_fen"] == 19800 and Order.objects.count() == 1
    assert order["attribution"]["campaign"] == "双11"
    pay = post(api, f"/api/v1/commerce/orders/{order['id']}/pay", {}, **{"Idempotency-Key": "p-1"})
    assert pay.status_code == 200 and pay.json()["provider"] == "sandbox"
    no = pay.json()["out_trade_no"]
    done = post(api, f"/api/v1/commerce/payments/sandbox/{no}/pay", {})
    assert done.json()["outcome"] == "paid"
    assert api.get(f"/api/v1/commerce/orders/{order['id']}").json()["status"] == "paid"
    refund = post(api, f"/api/v1/commerce/orders/{order['id']}/refunds", {"amount_fen": 99999},
                  **{"Idempotency-Key": "r-1"})
    assert refund.status_code == 422 and refund.json()["code"] == "refund_exceeds_paid"


def test_price_tampering_is_impossible(api, member, product):
    body = {"member_id": member.pk, "lines": [{"sku_id": sku(product).pk, "quantity": 1, "price_fen": 1}],
            "total_fen": 1, "discount_fen": 9899}
    r = post(api, "/api/v1/commerce/orders", body)
    assert r.status_code == 200 and r.json()["total_fen"] == 9900
    p = post(api, f"/api/v1/commerce/orders/{r.json()['id']}/pay", {}).json()
    assert p["amount_fen"] == 9900
    # the payer pays 1 fen: the callback is refused, the order stays unpaid
    headers, cb = SandboxGateway.notification({"kind": "payment", "out_trade_no": p["out_trade_no"],
                                               "amount_fen": 1, "status": "succeeded"})
    resp = Client().post("/api/v1/commerce/payments/callback/acme/sandbox", data=cb, content_type="application/json",
                         headers=headers)
    assert resp.status_code == 422 and resp.json()["code"] == "FAIL"
    assert Order.objects.get().status == "created"


def test_callback_endpoint_verifies_and_is_idempotent(api, member, product):
    r = post(api, "/api/v1/commerce/orders", {"member_id": member.pk, "lines": [{"sku_id": sku(product).pk,
                                                                                 "quantity": 1}]})
    p = post(api, f"/api/v1/commerce/orders/{r.json()['id']}/pay", {}).json()
    headers, cb = SandboxGateway().pay(p["out_trade_no"], p["amount_fen"])
    anon = Client()
    forged = dict(headers, **{"X-Sandbox-Signature": "00"})
    assert anon.post("/api/v1/commerce/payments/callback/acme/sandbox", data=cb, content_type="application/json",
                     headers=forged).status_code == 422
    for _ in range(2):
        ok = anon.post("/api/v1/commerce/payments/callback/acme/sandbox", data=cb, content_type="application/json",
                       headers=headers)
        assert ok.status_code == 200 and ok.json()["code"] == "SUCCESS"
    assert Payment.objects.get().status == "succeeded"
    assert Order.objects.get().paid_fen == 9900


def test_bad_input_gets_clear_errors(api, member, product):
    r = post(api, "/api/v1/commerce/orders", {"member_id": member.pk, "lines": [{"sku_id": sku(product).pk,
                                                                                 "quantity": -1}]})
    # the schema states the bound (Quantity ≥ 1): a 422 naming the field before the service runs
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "body.body.lines.0.quantity"
    r = post(api, "/api/v1/commerce/orders", {"member_id": member.pk, "lines": [{"sku_id": 424242, "quantity": 1}]})
    assert r.status_code == 404 and r.json()["details"]["field"] == "lines[0].sku_id"
    r = post(api, "/api/v1/commerce/orders", {"member_id": member.pk, "lines": [{"sku_id": "x", "quantity": 1}]})
    assert r.status_code == 422
    assert Order.objects.count() == 0


def test_share_coupon_and_group_buy_endpoints(api, system, member, friend, product):
    now = timezone.now()
    gb = services.do_create_group_buy(system, name="二人团", sku_id=sku(product).pk, price_fen=5000, team_size=2,
                                      starts_at=now - dt.timedelta(minutes=1), ends_at=now + dt.timedelta(hours=1))
    team = post(api, f"/api/v1/commerce/group-buys/{gb.pk}/teams", {"member_id": member.pk}).json()
    assert team["status"] == "open" and team["order"]["total_fen"] == 5000
    joined = post(api, f"/api/v1/commerce/teams/{team['share_token']}/join", {"member_id": friend.pk})
    assert joined.status_code == 200 and joined.json()["attribution"]["referrer_member_id"] == member.pk
    r = post(api, "/api/v1/commerce/share-coupons/nope/claim", {"member_id": friend.pk})
    assert r.status_code == 404


def test_other_tenant_order_is_not_found(api, other_tenant, product, member):
    op = Principal.system(other_tenant.pk)
    m = Member.objects.create(tenant=other_tenant, display_name="x", first_seen_at=timezone.now())
    p = services.do_create_product(op, services.NewProduct(name="别家",
                                                           skus=[{"code": "Z", "price_fen": 1, "stock": 1}]))
    o = services.do_create_order(op, member_id=m.pk, lines=[{"sku_id": p.skus.get().pk, "quantity": 1}])
    assert api.get(f"/api/v1/commerce/orders/{o.pk}").status_code == 404
    assert post(api, f"/api/v1/commerce/orders/{o.pk}/pay", {}).status_code == 404


def test_callback_under_another_tenants_slug_changes_nothing(api, member, product, tenant, other_tenant):
    """The isolation test of the (exempt) payment callback: a notification validly signed for this
    tenant's payment, posted under another tenant's slug, is refused (404, the provider's FAIL shape)
    and neither tenant's payment, order or money moves; under its own tenant's slug it applies."""
    r = post(api, "/api/v1/commerce/orders", {"member_id": member.pk, "lines": [{"sku_id": sku(product).pk,
                                                                                 "quantity": 1}]})
    p = post(api, f"/api/v1/commerce/orders/{r.json()['id']}/pay", {}).json()
    headers, cb = SandboxGateway().pay(p["out_trade_no"], p["amount_fen"])
    anon = Client()
    for slug in (other_tenant.slug, "no-such-tenant"):
        resp = anon.post(f"/api/v1/commerce/payments/callback/{slug}/sandbox", data=cb,
                         content_type="application/json", headers=headers)
        assert resp.status_code == 404, (slug, resp.content)
        assert resp.json()["code"] == "FAIL"
        assert tenant.name not in resp.content.decode() and member.display_name not in resp.content.decode()
    assert Payment.objects.get().status == "pending"
    assert Order.objects.get().status == "created" and Order.objects.get().paid_fen == 0
    assert not PaymentCallback.objects.filter(tenant_id=other_tenant.pk).exclude(outcome="unknown_payment").exists()
    ok = anon.post(f"/api/v1/commerce/payments/callback/{tenant.slug}/sandbox", data=cb,
                   content_type="application/json", headers=headers)
    assert ok.status_code == 200 and ok.json()["code"] == "SUCCESS"
    assert Order.objects.get().status == "paid"
