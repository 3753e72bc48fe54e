"""Tenant-isolation probes of the commerce API (see ``shequn.api.tests.test_isolation``).

Objects in the state where the caller's own call succeeds: an unpaid order (get, pay, cancel), a
paid one (refund), a pending sandbox payment, a running flash sale and group buy, an open team, a
claimable coupon template and an unclaimed gift coupon (given by the spare member, claimed by the
caller's member). The payment callback names its tenant in the URL and is authenticated by the
provider's signature: it is exempt here and tested in ``test_api.py``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from shequn.commerce import services
from shequn.commerce.models import (
    Coupon,
    CouponTemplate,
    FlashSale,
    GroupBuyParticipant,
    Order,
    Payment,
    Refund,
    Sku,
)
from shequn.core.models import Tenant
from shequn.core.permissions import Principal

P = "/api/v1/commerce"


def _own_member(ids: dict[str, int]) -> dict[str, int]:
    return {"member_id": ids["member_id"]}


PROBES: dict[tuple[str, str], Any] = {
    ("get", f"{P}/orders/{{order_id}}"): None,
    ("post", f"{P}/orders/{{order_id}}/pay"): {"provider": "sandbox"},
    ("post", f"{P}/orders/{{order_id}}/cancel"): {},
    ("post", f"{P}/orders/{{order_id}}/refunds"): {"amount_fen": 100, "reason": "少发一件"},
    ("post", f"{P}/payments/sandbox/{{out_trade_no}}/pay"): None,
    ("post", f"{P}/flash-sales/{{flash_sale_id}}/buy"): lambda ids: {"member_id": ids["member_id"], "quantity": 1},
    ("post", f"{P}/group-buys/{{group_buy_id}}/teams"): _own_member,
    ("get", f"{P}/teams/{{share_token}}"): None,
    ("post", f"{P}/teams/{{share_token}}/join"): _own_member,
    ("post", f"{P}/coupons/{{template_id}}/claim"): _own_member,
    ("post", f"{P}/share-coupons/{{share_token}}/claim"): _own_member,
    ("get", f"{P}/members/{{member_id}}/coupons"): None,
    ("patch", f"{P}/products/{{product_id}}"): {"name": "新名称"},
    ("post", f"{P}/products/{{product_id}}/skus"): {"code": "ISO-NEW", "price_fen": 100},
    ("post", f"{P}/flash-sales/{{flash_sale_id}}/end"): None,
    ("post", f"{P}/group-buys/{{group_buy_id}}/pause"): None,
    ("post", f"{P}/group-buys/{{group_buy_id}}/resume"): None,
    ("post", f"{P}/coupon-templates/{{template_id}}/end"): None,
    ("post", f"{P}/live-sessions/{{live_session_id}}/end"): None,
    ("post", f"{P}/live-sessions/{{live_session_id}}/joins"): _own_member,
    ("patch", f"{P}/skus/{{sku_id}}"): {"name": "新规格"},
    ("patch", f"{P}/flash-sales/{{flash_sale_id}}"): {"name": "秒杀 (改名)"},
    ("patch", f"{P}/group-buys/{{group_buy_id}}"): {"name": "三人团 (改名)"},
    ("patch", f"{P}/coupon-templates/{{template_id}}"): {"name": "满减券 (改名)"},
    ("patch", f"{P}/live-sessions/{{live_session_id}}"): {"title": "周五直播 (改名)"},
}
PARAMS = {
    ("post", f"{P}/orders/{{order_id}}/refunds"): {"order_id": "paid_order_id"},
    ("get", f"{P}/teams/{{share_token}}"): {"share_token": "team_token"},
    ("post", f"{P}/teams/{{share_token}}/join"): {"share_token": "team_token"},
    ("post", f"{P}/share-coupons/{{share_token}}/claim"): {"share_token": "gift_token"},
}
HEADERS = {("post", f"{P}/orders/{{order_id}}/refunds"): {"Idempotency-Key": "iso-refund-1"}}
EXEMPT = {
    ("post", f"{P}/payments/callback/{{tenant_slug}}/{{provider}}"):
        "a provider webhook: the tenant is named by slug and the payment by the signed body — "
        "commerce/tests/test_api.py::test_callback_under_another_tenants_slug_changes_nothing",
}


def build_ids(tenant: Tenant, ids: dict[str, int]) -> dict[str, Any]:
    p = Principal.system(tenant.pk)
    now = timezone.now()
    spare = ids["spare_member_id"]
    product = services.do_create_product(p, name="车载香薰", skus=[
        {"code": "ISO-1", "name": "木质", "price_fen": 9900, "stock": 50}])
    sku = product.skus.get(code="ISO-1")
    gift = services.do_create_coupon_template(p, name="送好友一张", kind="fixed", amount_fen=500, is_share=True,
                                              valid_from=now - dt.timedelta(minutes=1),
                                              valid_until=now + dt.timedelta(days=1))
    product.gift_coupon_template = gift
    product.save(update_fields=["gift_coupon_template"])
    line = [{"sku_id": sku.pk, "quantity": 1}]
    unpaid = services.do_create_order(p, member_id=spare, lines=line)
    paid = services.do_create_order(p, member_id=spare, lines=line)
    services.do_sandbox_pay(services.do_start_payment(p, paid.pk).out_trade_no)
    to_pay = services.do_create_order(p, member_id=spare, lines=line)
    payment = services.do_start_payment(p, to_pay.pk)
    flash = services.do_create_flash_sale(p, name="秒杀", sku_id=sku.pk, price_fen=990, stock=3,
                                          starts_at=now - dt.timedelta(minutes=1), ends_at=now + dt.timedelta(hours=1))
    gb = services.do_create_group_buy(p, name="三人团", sku_id=sku.pk, price_fen=6600, team_size=3,
                                      starts_at=now - dt.timedelta(minutes=1), ends_at=now + dt.timedelta(hours=10),
                                      time_limit_minutes=60)
    team, _order = services.do_start_team(p, gb.pk, member_id=spare)
    template = services.do_create_coupon_template(p, name="满减券", kind="fixed", amount_fen=1000,
                                                  valid_from=now - dt.timedelta(minutes=1),
                                                  valid_until=now + dt.timedelta(days=1))
    share = Coupon.objects.get(tenant=tenant, source_order=paid, status=Coupon.Status.UNCLAIMED)
    live = services.do_create_live_session(p, title="周五直播", starts_at=now - dt.timedelta(minutes=5),
                                           community_id=ids["community_id"])
    return {"product_id": product.pk, "live_session_id": live.pk, "sku_id": sku.pk,
            "order_id": unpaid.pk, "paid_order_id": paid.pk, "out_trade_no": payment.out_trade_no,
            "flash_sale_id": flash.pk, "group_buy_id": gb.pk, "team_token": team.share_token,
            "template_id": template.pk, "gift_token": share.share_token}


def snapshot(tenant: Tenant) -> dict[str, Any]:
    return {
        "orders": list(Order.objects.filter(tenant=tenant).order_by("pk")
                       .values_list("pk", "status", "paid_fen", "refunded_fen")),
        "payments": list(Payment.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "status")),
        "refunds": Refund.objects.filter(tenant=tenant).count(),
        "stock": list(Sku.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "stock")),
        "flash": list(FlashSale.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "stock")),
        "participants": GroupBuyParticipant.objects.filter(tenant=tenant).count(),
        "templates": list(CouponTemplate.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "issued")),
        "coupons": list(Coupon.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "status", "owner_id")),
    }


def _foreign_member(own: dict[str, Any], foreign: dict[str, Any]) -> dict[str, Any]:
    return {"member_id": foreign["member_id"]}


MIXED = {
    ("post", f"{P}/live-sessions/{{live_session_id}}/joins"): _foreign_member,
    ("post", f"{P}/flash-sales/{{flash_sale_id}}/buy"): _foreign_member,
    ("post", f"{P}/group-buys/{{group_buy_id}}/teams"): _foreign_member,
    ("post", f"{P}/teams/{{share_token}}/join"): _foreign_member,
    ("post", f"{P}/coupons/{{template_id}}/claim"): _foreign_member,
    ("post", f"{P}/share-coupons/{{share_token}}/claim"): _foreign_member,
}
