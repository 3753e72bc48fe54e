"""Issue 12 bug 3: attribution text is checked where it enters. An order whose ``campaign`` or
``invite_code`` the order-event listeners cannot store (``events.ATTRIBUTION_MAX_LENGTH``) is refused
at creation — 422 naming ``attribution.<key>``, nothing written — instead of being accepted and then
failing its commission when it is paid."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from shequn.commerce import services
from shequn.commerce.events import ATTRIBUTION_MAX_LENGTH
from shequn.commerce.models import FlashSale, Order, Sku
from shequn.core.errors import Invalid
from shequn.core.models import DeliveryFailure
from shequn.core.services import do_create_api_key

from .conftest import sku, window

TOO_LONG = [(key, "码" * (limit + 1)) for key, limit in sorted(ATTRIBUTION_MAX_LENGTH.items())]


def test_the_limits_are_the_listeners_columns():
    assert ATTRIBUTION_MAX_LENGTH == {"campaign": 64, "invite_code": 16}


@pytest.mark.parametrize(("key", "value"), TOO_LONG)
def test_api_order_with_over_long_attribution_is_422_naming_it(system, member, product, key, value):
    _key, secret = do_create_api_key(system, name="t", scopes=["commerce.write"])
    c = Client(headers={"Authorization": f"Bearer {secret}"})
    stock = Sku.objects.get(pk=sku(product).pk).stock
    body = {"member_id": member.pk, "lines": [{"sku_id": sku(product).pk, "quantity": 1}],
            "attribution": {key: value}}
    r = c.post("/api/v1/commerce/orders", data=json.dumps(body), content_type="application/json",
               headers={"Idempotency-Key": f"long-{key}"})
    assert r.status_code == 422, r.content
    assert f"body.body.attribution.{key}" in {d["field"] for d in r.json()["details"]}
    assert not Order.objects.exists() and Sku.objects.get(pk=sku(product).pk).stock == stock
    body["attribution"] = {key: value[: ATTRIBUTION_MAX_LENGTH[key]]}  # at the limit: accepted
    ok = c.post("/api/v1/commerce/orders", data=json.dumps(body), content_type="application/json")
    assert ok.status_code == 200 and ok.json()["attribution"][key] == body["attribution"][key]


@pytest.mark.parametrize(("key", "value"), TOO_LONG)
def test_services_refuse_over_long_attribution_naming_it(system, member, product, key, value):
    """Every door into an order (order, flash sale, group buy) runs ``clean_attribution``."""
    with pytest.raises(Invalid) as exc:
        services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}],
                                 attribution={key: value})
    assert exc.value.details["field"] == f"attribution.{key}"
    start, end = window()
    fs = services.do_create_flash_sale(system, name="秒杀", sku_id=sku(product).pk, price_fen=990, stock=3,
                                       starts_at=start, ends_at=end, per_member_limit=1)
    with pytest.raises(Invalid) as exc:
        services.do_flash_buy(system, fs.pk, member_id=member.pk, attribution={key: value})
    assert exc.value.details["field"] == f"attribution.{key}"
    assert FlashSale.objects.get(pk=fs.pk).stock == 3
    gb = services.do_create_group_buy(system, name="拼团", sku_id=sku(product).pk, price_fen=500, team_size=2,
                                      starts_at=start, ends_at=end)
    with pytest.raises(Invalid) as exc:
        services.do_start_team(system, gb.pk, member_id=member.pk, attribution={key: value})
    assert exc.value.details["field"] == f"attribution.{key}"
    assert not Order.objects.exists()


def test_attribution_at_the_limit_is_paid_and_credited_without_a_listener_failure(system, member, product):
    attribution = {k: "x" * n for k, n in ATTRIBUTION_MAX_LENGTH.items()}
    order = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}],
                                     attribution=attribution)
    payment = services.do_start_payment(system, order.pk)
    services.do_sandbox_pay(payment.out_trade_no)
    assert Order.objects.get(pk=order.pk).attribution["campaign"] == "x" * 64
    assert not DeliveryFailure.objects.exists()
