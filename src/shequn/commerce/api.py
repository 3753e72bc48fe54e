"""Member-facing commerce flows (browse, order, pay, flash sale, group buy, coupons) and the payment
callbacks. Handlers are thin: every rule lives in ``services``. Authenticated with the API principal
for now (``commerce.read`` / ``commerce.write``); the member portal will call the same services."""


import datetime as dt
import json
from typing import Annotated, Any, Literal

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from ninja import Field, Router, Schema

from shequn.core.errors import Invalid, NotFound, ShequnError
from shequn.core.http import (
    ERRORS,
    ApiDatetime,
    BodyIn,
    ErrorOut,
    Fen,
    Id,
    IpAddress,
    Limit,
    NonNegative,
    PositiveFen,
    Quantity,
    idempotent,
    max_len,
    patch_changes,
    require,
)
from shequn.core.middleware_api import register_body_rule
from shequn.core.models import Tenant
from shequn.core.pagination import KeysetPagination, paginate

from . import selectors, services
from .events import ATTRIBUTION_MAX_LENGTH
from .models import (
    Coupon,
    CouponTemplate,
    FlashSale,
    GroupBuy,
    GroupBuyTeam,
    LiveSession,
    Order,
    Payment,
    Product,
    Refund,
    Sku,
)

router = Router(tags=["commerce"])

# payment providers post their own formats (WeChat Pay v3 JSON; others may use XML): the callback
# reads the raw body, any content type
register_body_rule(r"^/api/v1/commerce/payments/callback/", content_types=None)

#: the attribution columns the order events feed (referrals: campaign 64, invite code 16): an order
#: whose attribution would not fit them is refused here, not when its commission is computed
ATTRIBUTION_CAMPAIGN_MAX = ATTRIBUTION_MAX_LENGTH["campaign"]
INVITE_CODE_MAX = ATTRIBUTION_MAX_LENGTH["invite_code"]


class AttributionIn(BodyIn):
    community_id: Id | None = None
    group_id: Id | None = None
    invite_code: str | None = Field(None, max_length=INVITE_CODE_MAX)
    referrer_member_id: Id | None = None
    live_session_id: Id | None = None
    campaign: str | None = Field(None, max_length=ATTRIBUTION_CAMPAIGN_MAX)


class LineIn(BodyIn):
    sku_id: Id
    quantity: Quantity


class OrderIn(BodyIn):
    member_id: Id
    lines: list[LineIn] = Field(min_length=1, max_length=100)
    coupon_ids: list[Id] = Field(default_factory=list, max_length=20)
    attribution: AttributionIn | None = None


class LineOut(Schema):
    id: int
    product_id: int
    sku_id: int
    product_kind: str
    name: str
    quantity: int
    list_price_fen: int
    unit_price_fen: int
    discount_fen: int
    amount_fen: int


class OrderOut(Schema):
    id: int
    member_id: int
    status: str
    goods_fen: int
    discount_fen: int
    total_fen: int
    paid_fen: int
    refunded_fen: int
    attribution: dict[str, Any]
    expires_at: dt.datetime | None
    created_at: dt.datetime
    paid_at: dt.datetime | None
    flash_sale_id: int | None
    team_id: int | None
    lines: list[LineOut]


class PayIn(BodyIn):
    provider: str | None = Field(None, max_length=max_len(Payment, "provider"))
    channel: str = Field("", max_length=max_len(Payment, "channel"))
    payer_openid: str = Field("", max_length=128)
    client_ip: IpAddress = ""


class PaymentOut(Schema):
    id: int
    order_id: int
    provider: str
    channel: str
    out_trade_no: str
    amount_fen: int
    status: str
    prepay: dict[str, Any]


class RefundIn(BodyIn):
    amount_fen: PositiveFen
    reason: str = Field("", max_length=max_len(Refund, "reason"))
    order_line_id: Id | None = None


class RefundOut(Schema):
    id: int
    order_id: int
    out_refund_no: str
    amount_fen: int
    status: str
    reason: str


class BuyerIn(BodyIn):
    member_id: Id
    attribution: AttributionIn | None = None


class FlashIn(BodyIn):
    member_id: Id
    quantity: Quantity = 1
    attribution: AttributionIn | None = None


class FlashOut(Schema):
    status: str
    order: OrderOut | None = None


class TeamOut(Schema):
    id: int
    group_buy_id: int
    status: str
    share_token: str
    expires_at: dt.datetime
    order: OrderOut | None = None


class CouponOut(Schema):
    id: int
    template_id: int
    status: str
    owner_id: int | None
    giver_id: int | None
    share_token: str | None


class OutcomeOut(Schema):
    outcome: str
    order_id: int | None = None


def _attr(a: AttributionIn | None) -> dict[str, Any] | None:
    return a.model_dump() if a is not None else None


def _order(tenant_id: int, order_id: Id) -> Order:
    return selectors.order(tenant_id, order_id)


@router.get("/products", response={200: list[dict[str, Any]], **ERRORS})
def list_products(request: HttpRequest, member_id: Id | None = None) -> Any:
    """The catalog as this member sees it (visibility and 会员价 applied)."""
    p = require(request, "commerce.read")
    return selectors.catalog_for_member(p.tenant_id, member_id)


@router.post("/orders", response={200: OrderOut, **ERRORS})
@idempotent
def create_order(request: HttpRequest, body: OrderIn) -> Any:
    """Create an order; the server computes every price and total. Send ``Idempotency-Key``."""
    p = require(request, "commerce.write")
    order = services.do_create_order(
        p, member_id=body.member_id, lines=[ln.model_dump() for ln in body.lines], coupon_ids=body.coupon_ids,
        attribution=_attr(body.attribution), idempotency_key=request.headers.get("Idempotency-Key"),
    )
    return OrderOut.from_orm(order)


@router.get("/orders", response={200: list[OrderOut], **ERRORS})
@paginate(KeysetPagination)
def list_orders(request: HttpRequest, member_id: Id | None = None, status: str | None = None) -> Any:
    p = require(request, "commerce.read")
    return selectors.orders(p.tenant_id, member_id=member_id, status=status).prefetch_related("lines")


@router.get("/orders/{order_id}", response={200: OrderOut, **ERRORS})
def get_order(request: HttpRequest, order_id: Id) -> Any:
    p = require(request, "commerce.read")
    return _order(p.tenant_id, order_id)


@router.post("/orders/{order_id}/pay", response={200: PaymentOut, **ERRORS})
@idempotent
def pay_order(request: HttpRequest, order_id: Id, body: PayIn) -> Any:
    """Open a payment (sandbox by default) and return what the payer's client needs."""
    p = require(request, "commerce.write")
    payment = services.do_start_payment(p, order_id, provider=body.provider, channel=body.channel,
                                        payer_openid=body.payer_openid, client_ip=body.client_ip,
                                        idempotency_key=request.headers.get("Idempotency-Key"))
    return PaymentOut.from_orm(payment)


@router.post("/orders/{order_id}/cancel", response={200: OrderOut, **ERRORS})
@idempotent
def cancel_order(request: HttpRequest, order_id: Id) -> Any:
    p = require(request, "commerce.write")
    return services.do_cancel_order(p, order_id, reason=_("会员取消"))


@router.post("/orders/{order_id}/refunds", response={200: RefundOut, **ERRORS})
@idempotent
def refund_order(request: HttpRequest, order_id: Id, body: RefundIn) -> Any:
    """Refund part or all of an order; ``Idempotency-Key`` is required."""
    p = require(request, "commerce.write")
    key = request.headers.get("Idempotency-Key")
    if not key:
        raise Invalid(_("退款需要 Idempotency-Key"), details={"field": "header.Idempotency-Key"})
    refund: Refund = services.do_request_refund(p, order_id, amount_fen=body.amount_fen, reason=body.reason,
                                                order_line_id=body.order_line_id, idempotency_key=key)
    return RefundOut.from_orm(refund)


@router.post("/payments/sandbox/{out_trade_no}/pay", response={200: OutcomeOut, **ERRORS})
@idempotent
def sandbox_pay(request: HttpRequest, out_trade_no: str) -> Any:
    """The sandbox payer pays: its signed notification is delivered to our callback handler."""
    p = require(request, "commerce.write")
    if not Payment.objects.filter(tenant_id=p.tenant_id, out_trade_no=out_trade_no, provider="sandbox").exists():
        raise NotFound(_("支付单不存在"), details={"field": "out_trade_no"})
    out = services.do_sandbox_pay(out_trade_no)
    return {"outcome": out["outcome"], "order_id": out.get("order_id")}


class ProviderAckOut(Schema):
    """The payment provider's own acknowledgement shape (WeChat Pay v3), not our error shape."""

    code: str
    message: str


@router.post("/payments/callback/{tenant_slug}/{provider}", auth=None,
             response=dict.fromkeys((200, 400, 401, 403, 404, 409, 422), ProviderAckOut),
             openapi_extra={"x-shequn-webhook": True})
def payment_callback(request: HttpRequest, tenant_slug: str, provider: str) -> HttpResponse:
    """Provider notifications (sandbox, wechatpay). Answers 200 ``{"code": "SUCCESS"}`` once applied
    (also for duplicates), otherwise 4xx ``{"code": "FAIL", "message": …}`` so the provider retries:
    404 unknown tenant, else the service error's status (422 forged or wrong amount). A webhook: no
    Idempotency-Key — replays are recognised by the provider's transaction id."""
    tenant = Tenant.objects.filter(slug=tenant_slug, is_active=True).first()
    if tenant is None:
        return HttpResponse(json.dumps({"code": "FAIL", "message": "unknown tenant"}), status=404,
                            content_type="application/json")
    try:
        services.do_handle_notification(provider, dict(request.headers), request.body, tenant_id=tenant.pk)
    except ShequnError as exc:
        return HttpResponse(json.dumps({"code": "FAIL", "message": exc.message}, ensure_ascii=False),
                            status=exc.status if exc.status >= 400 else 400, content_type="application/json")
    return HttpResponse(json.dumps({"code": "SUCCESS", "message": "成功"}, ensure_ascii=False),
                        content_type="application/json")


@router.post("/flash-sales/{flash_sale_id}/buy", response={200: FlashOut, 202: FlashOut, **ERRORS, 503: ErrorOut})
@idempotent
def flash_buy(request: HttpRequest, flash_sale_id: Id, body: FlashIn) -> Any:
    """秒杀: 200 with the order, or 202 ``queued`` when the Redis gate accepted and the order follows."""
    p = require(request, "commerce.write")
    res = services.do_flash_buy(p, flash_sale_id, member_id=body.member_id, quantity=body.quantity,
                                attribution=_attr(body.attribution),
                                idempotency_key=request.headers.get("Idempotency-Key"))
    if res.order is None:
        return 202, {"status": res.status, "order": None}
    return 200, {"status": res.status, "order": OrderOut.from_orm(res.order)}


def _team_out(team: GroupBuyTeam, order: Order | None) -> dict[str, Any]:
    return {"id": team.pk, "group_buy_id": team.group_buy_id, "status": team.status, "share_token": team.share_token,
            "expires_at": team.expires_at, "order": OrderOut.from_orm(order) if order else None}


@router.post("/group-buys/{group_buy_id}/teams", response={200: TeamOut, **ERRORS})
@idempotent
def start_team(request: HttpRequest, group_buy_id: Id, body: BuyerIn) -> Any:
    """开团: the leader's order and the share token for the join link."""
    p = require(request, "commerce.write")
    team, order = services.do_start_team(p, group_buy_id, member_id=body.member_id, attribution=_attr(body.attribution))
    return _team_out(team, order)


@router.get("/teams/{share_token}", response={200: TeamOut, **ERRORS})
def get_team(request: HttpRequest, share_token: str) -> Any:
    p = require(request, "commerce.read")
    return _team_out(selectors.team_by_token(p.tenant_id, share_token), None)


@router.post("/teams/{share_token}/join", response={200: OrderOut, **ERRORS})
@idempotent
def join_team(request: HttpRequest, share_token: str, body: BuyerIn) -> Any:
    """参团 by share link."""
    p = require(request, "commerce.write")
    order = services.do_join_team(p, share_token, member_id=body.member_id, attribution=_attr(body.attribution))
    return OrderOut.from_orm(order)


@router.post("/coupons/{template_id}/claim", response={200: CouponOut, **ERRORS})
@idempotent
def claim_coupon(request: HttpRequest, template_id: Id, body: BuyerIn) -> Any:
    p = require(request, "commerce.write")
    c: Coupon = services.do_claim_coupon(p, template_id, member_id=body.member_id)
    return CouponOut.from_orm(c)


@router.post("/share-coupons/{share_token}/claim", response={200: CouponOut, **ERRORS})
@idempotent
def claim_share_coupon(request: HttpRequest, share_token: str, body: BuyerIn) -> Any:
    """买一赠一: a friend claims the gift coupon from the buyer's link."""
    p = require(request, "commerce.write")
    return CouponOut.from_orm(services.do_claim_share_coupon(p, share_token, member_id=body.member_id))


@router.get("/members/{member_id}/coupons", response={200: list[CouponOut], **ERRORS})
def member_coupons(request: HttpRequest, member_id: Id) -> Any:
    p = require(request, "commerce.read")
    services.check_member(p.tenant_id, member_id)
    return list(selectors.member_coupons(p.tenant_id, member_id))


@router.get("/live-sessions/stats", response={200: list[dict[str, Any]], **ERRORS})
def live_stats(request: HttpRequest) -> Any:
    p = require(request, "commerce.read")
    return selectors.live_session_stats(p.tenant_id)


class OrderEventOut(Schema):
    id: int
    kind: str
    order_id: int
    amount_fen: int
    data: dict[str, Any]
    created_at: dt.datetime


@router.get("/order-events", response={200: list[OrderEventOut], **ERRORS})
def order_events(request: HttpRequest, after_id: NonNegative = 0, limit: Limit = 200) -> Any:
    """Order events in id order, for integrations that poll (engines use the in-process listeners)."""
    p = require(request, "commerce.read")
    return list(selectors.order_events(p.tenant_id, after_id=after_id)[: max(1, min(limit, 1000))])


# --- campaign objects: create, change, pause, end -------------------------------------------------
# Every rule is the service's (``check_*``, run by the ``do_*`` writer); the console's add forms call
# the same checks, so both answer with the same message naming the same field.


class SkuIn(BodyIn):
    code: str = Field(min_length=1, max_length=max_len(Sku, "code"))
    name: str = Field("", max_length=max_len(Sku, "name"))
    price_fen: PositiveFen
    stock: Annotated[int, Field(ge=0, le=10_000_000)] = 0


class TierPrivilegesIn(BodyIn):
    """A paid tier's rights (real fields; the portal lists them, engines enforce them)."""

    courses: str = Field("", max_length=64, description="course level the tier unlocks, e.g. entry")
    free_courses: bool = False
    may_create_groups: bool = Field(False, description="the partner's own-group right")
    member_price: bool = False


class TierIn(BodyIn):
    community_id: Id
    code: str = Field(min_length=1, max_length=max_len(Product, "tier_code"))
    rank: Annotated[int, Field(ge=0, le=100)] = 0
    duration_days: Annotated[int, Field(ge=1, le=36_500)] | None = None
    privileges: TierPrivilegesIn = Field(default_factory=lambda: TierPrivilegesIn.model_validate({}))


class ProductIn(BodyIn):
    name: str = Field(min_length=1, max_length=max_len(Product, "name"))
    kind: Literal["goods", "tier"] = "goods"
    description: str = Field("", max_length=10_000)
    visible_in: list[Id] = Field(default_factory=list, max_length=100)
    skus: list[SkuIn] = Field(min_length=1, max_length=100)
    tier: TierIn | None = None


class TierPatch(BodyIn):
    """A paid tier's fields to change (left out: unchanged)."""

    community_id: Id | None = Field(None, description="a tier needs one: null is refused by the service")
    code: str | None = Field(None, min_length=1, max_length=max_len(Product, "tier_code"))
    rank: Annotated[int, Field(ge=0, le=100)] | None = None
    duration_days: Annotated[int, Field(ge=1, le=36_500)] | None = Field(None, description="null: no end")
    privileges: TierPrivilegesIn | None = None


class ProductPatch(BodyIn):
    """Fields to change; a field left out is unchanged. Rules: ``commerce.services.edits``."""

    name: str | None = Field(None, min_length=1, max_length=max_len(Product, "name"))
    description: str | None = Field(None, max_length=10_000)
    is_active: bool | None = Field(None, description="false: off sale (下架); true: back on sale")
    visible_in: list[Id] | None = Field(None, max_length=100, description="[]: every community")
    privileges: TierPrivilegesIn | None = Field(None, description="same as tier.privileges")
    duration_days: Annotated[int, Field(ge=1, le=36_500)] | None = Field(None, description="same as tier.duration_days")
    tier: TierPatch | None = None


class SkuPatch(BodyIn):
    """A SKU's fields to change. Stock is not set here: it moves by adjustments (never overwritten)."""

    code: str | None = Field(None, min_length=1, max_length=max_len(Sku, "code"))
    name: str | None = Field(None, max_length=max_len(Sku, "name"))
    price_fen: PositiveFen | None = Field(None, description="applies to orders created afterwards")
    is_active: bool | None = None


class SkuOut(Schema):
    id: int
    code: str
    name: str
    price_fen: int
    stock: int
    is_active: bool


class ProductOut(Schema):
    id: int
    name: str
    kind: str
    description: str
    is_active: bool
    tier_community_id: int | None
    tier_code: str
    tier_rank: int
    tier_duration_days: int | None
    tier_privileges: dict[str, Any]
    skus: list[SkuOut]


def _product_out(product: Product) -> dict[str, Any]:
    return {**{k: getattr(product, k) for k in ("id", "name", "kind", "description", "is_active",
                                                 "tier_community_id", "tier_code", "tier_rank",
                                                 "tier_duration_days", "tier_privileges")},
            "skus": list(product.skus.order_by("pk"))}


@router.post("/products", response={200: ProductOut, **ERRORS}, summary="创建商品或付费等级")
@idempotent
def create_product(request: HttpRequest, body: ProductIn) -> Any:
    p = require(request, "commerce.write")
    tier = body.tier
    if body.kind == "tier" and tier is None:
        raise Invalid(_("付费等级必须指定开通的社群"), details={"field": "tier_community_id"})
    product = services.do_create_product(p, services.NewProduct(
        name=body.name, kind=body.kind, description=body.description, visible_in=body.visible_in,
        skus=[s.model_dump() for s in body.skus],
        tier_community_id=tier.community_id if tier else None, tier_code=tier.code if tier else "",
        tier_rank=tier.rank if tier else 0, tier_duration_days=tier.duration_days if tier else None,
        tier_privileges=tier.privileges.model_dump() if tier else None,
    ))
    return _product_out(product)


@router.patch("/products/{product_id}", response={200: ProductOut, **ERRORS}, summary="修改、上架或下架商品")
def update_product(request: HttpRequest, product_id: Id, body: ProductPatch) -> Any:
    p = require(request, "commerce.write")
    changes = patch_changes(body, nullable=("duration_days",),
                            rename={"privileges": "tier_privileges", "duration_days": "tier_duration_days"})
    tier = changes.pop("tier", None)
    if tier is not None:
        tier_body = body.tier
        assert tier_body is not None
        changes.update(patch_changes(tier_body, nullable=("duration_days", "community_id"), param="body.tier",
                                     rename={k: f"tier_{k}" for k in ("community_id", "code", "rank",
                                                                      "duration_days", "privileges")}))
    privileges = body.tier.privileges if body.tier is not None and body.tier.privileges else body.privileges
    if privileges is not None:  # the privileges are replaced as a whole (left-out rights: false)
        changes["tier_privileges"] = privileges.model_dump()
    return _product_out(services.do_update_product(p, product_id, **changes))


@router.patch("/skus/{sku_id}", response={200: SkuOut, **ERRORS}, summary="修改 SKU (编码、规格、价格、上下架)")
def update_sku(request: HttpRequest, sku_id: Id, body: SkuPatch) -> Any:
    p = require(request, "commerce.write")
    return services.do_update_sku(p, sku_id, **patch_changes(body))


@router.post("/products/{product_id}/skus", response={200: SkuOut, **ERRORS}, summary="添加 SKU")
@idempotent
def add_sku(request: HttpRequest, product_id: Id, body: SkuIn) -> Any:
    p = require(request, "commerce.write")
    return services.do_add_sku(p, product_id, code=body.code, name=body.name, price_fen=body.price_fen,
                               stock=body.stock)


class FlashSaleIn(BodyIn):
    name: str = Field(min_length=1, max_length=max_len(FlashSale, "name"))
    sku_id: Id
    price_fen: PositiveFen
    stock: Quantity
    starts_at: ApiDatetime
    ends_at: ApiDatetime
    per_member_limit: Quantity = 1
    reservation_ttl_seconds: Annotated[int, Field(ge=60, le=86_400)] = 900
    eligible_community_id: Id | None = None
    eligible_tier_id: Id | None = None
    min_relationship_level: Annotated[int, Field(ge=0, le=10)] | None = None


class FlashSaleOut(Schema):
    id: int
    name: str
    sku_id: int
    price_fen: int
    initial_stock: int
    stock: int
    per_member_limit: int
    starts_at: dt.datetime
    ends_at: dt.datetime


@router.post("/flash-sales", response={200: FlashSaleOut, **ERRORS}, summary="创建秒杀")
@idempotent
def create_flash_sale(request: HttpRequest, body: FlashSaleIn) -> Any:
    p = require(request, "commerce.write")
    return services.do_create_flash_sale(p, **body.model_dump())


class FlashSalePatch(BodyIn):
    """Fields to change (left out: unchanged). Once the sale started, price, start and gate are fixed;
    ``stock`` (the sale's total) may grow from the SKU or shrink down to what is sold."""

    name: str | None = Field(None, min_length=1, max_length=max_len(FlashSale, "name"))
    price_fen: PositiveFen | None = None
    stock: Quantity | None = Field(None, description="the sale's total stock (initial_stock)")
    starts_at: ApiDatetime | None = None
    ends_at: ApiDatetime | None = None
    per_member_limit: Quantity | None = None
    reservation_ttl_seconds: Annotated[int, Field(ge=60, le=86_400)] | None = None
    eligible_community_id: Id | None = Field(None, description="null: any community")
    eligible_tier_id: Id | None = Field(None, description="null: any member")
    min_relationship_level: Annotated[int, Field(ge=0, le=10)] | None = Field(None, description="null: none")


@router.patch("/flash-sales/{flash_sale_id}", response={200: FlashSaleOut, **ERRORS}, summary="修改秒杀")
def update_flash_sale(request: HttpRequest, flash_sale_id: Id, body: FlashSalePatch) -> Any:
    p = require(request, "commerce.write")
    changes = patch_changes(body, nullable=("eligible_community_id", "eligible_tier_id", "min_relationship_level"))
    return services.do_update_flash_sale(p, flash_sale_id, **changes)


@router.post("/flash-sales/{flash_sale_id}/end", response={200: FlashSaleOut, **ERRORS}, summary="立即结束秒杀")
@idempotent
def end_flash_sale(request: HttpRequest, flash_sale_id: Id) -> Any:
    p = require(request, "commerce.write")
    return services.do_end_flash_sale(p, flash_sale_id)


class GroupBuyIn(BodyIn):
    name: str = Field(min_length=1, max_length=max_len(GroupBuy, "name"))
    sku_id: Id
    price_fen: PositiveFen
    team_size: Annotated[int, Field(ge=2, le=100)]
    starts_at: ApiDatetime
    ends_at: ApiDatetime
    time_limit_minutes: Annotated[int, Field(ge=1, le=43_200)] = 1440
    leader_reward_template_id: Id | None = None


class GroupBuyOut(Schema):
    id: int
    name: str
    sku_id: int
    price_fen: int
    team_size: int
    time_limit_minutes: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    is_active: bool


@router.post("/group-buys", response={200: GroupBuyOut, **ERRORS}, summary="创建拼团")
@idempotent
def create_group_buy(request: HttpRequest, body: GroupBuyIn) -> Any:
    p = require(request, "commerce.write")
    return services.do_create_group_buy(p, **body.model_dump())


class GroupBuyPatch(BodyIn):
    """Fields to change. Once a team was opened, SKU, price and team size are fixed."""

    name: str | None = Field(None, min_length=1, max_length=max_len(GroupBuy, "name"))
    price_fen: PositiveFen | None = None
    team_size: Annotated[int, Field(ge=2, le=100)] | None = None
    starts_at: ApiDatetime | None = None
    ends_at: ApiDatetime | None = None
    time_limit_minutes: Annotated[int, Field(ge=1, le=43_200)] | None = None
    leader_reward_template_id: Id | None = Field(None, description="null: no leader reward")
    is_active: bool | None = Field(None, description="false: paused (no new teams)")


@router.patch("/group-buys/{group_buy_id}", response={200: GroupBuyOut, **ERRORS}, summary="修改、暂停或恢复拼团")
def update_group_buy(request: HttpRequest, group_buy_id: Id, body: GroupBuyPatch) -> Any:
    p = require(request, "commerce.write")
    return services.do_update_group_buy(p, group_buy_id,
                                        **patch_changes(body, nullable=("leader_reward_template_id",)))


@router.post("/group-buys/{group_buy_id}/pause", response={200: GroupBuyOut, **ERRORS}, summary="暂停拼团 (不再开新团)")
@idempotent
def pause_group_buy(request: HttpRequest, group_buy_id: Id) -> Any:
    return services.do_set_group_buy_active(require(request, "commerce.write"), group_buy_id, active=False)


@router.post("/group-buys/{group_buy_id}/resume", response={200: GroupBuyOut, **ERRORS}, summary="恢复拼团")
@idempotent
def resume_group_buy(request: HttpRequest, group_buy_id: Id) -> Any:
    return services.do_set_group_buy_active(require(request, "commerce.write"), group_buy_id, active=True)


class CouponTemplateIn(BodyIn):
    name: str = Field(min_length=1, max_length=max_len(CouponTemplate, "name"))
    kind: Literal["fixed", "percent", "threshold"]
    valid_from: ApiDatetime
    valid_until: ApiDatetime
    amount_fen: Fen = 0
    percent_off: Annotated[int, Field(ge=0, le=100)] = 0
    threshold_fen: Fen = 0
    per_member_limit: Quantity = 1
    total_quantity: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    stackable: bool = False
    is_share: bool = Field(False, description="a share coupon (买一赠一): issued to the buyer to give away")
    new_customers_only: bool = False
    product_id: Id | None = None


class CouponTemplateOut(Schema):
    id: int
    name: str
    kind: str
    amount_fen: int
    percent_off: int
    threshold_fen: int
    valid_from: dt.datetime
    valid_until: dt.datetime
    per_member_limit: int
    total_quantity: int | None
    issued: int
    is_share: bool


@router.post("/coupon-templates", response={200: CouponTemplateOut, **ERRORS}, summary="创建优惠券 (含分享券)")
@idempotent
def create_coupon_template(request: HttpRequest, body: CouponTemplateIn) -> Any:
    p = require(request, "commerce.write")
    return services.do_create_coupon_template(p, **body.model_dump())


class CouponTemplatePatch(BodyIn):
    """Fields to change. Once a coupon was issued, its terms are fixed and the total may not go
    below what was issued."""

    name: str | None = Field(None, min_length=1, max_length=max_len(CouponTemplate, "name"))
    kind: Literal["fixed", "percent", "threshold"] | None = None
    valid_from: ApiDatetime | None = None
    valid_until: ApiDatetime | None = None
    amount_fen: Fen | None = None
    percent_off: Annotated[int, Field(ge=0, le=100)] | None = None
    threshold_fen: Fen | None = None
    per_member_limit: Quantity | None = None
    total_quantity: Annotated[int, Field(ge=1, le=10_000_000)] | None = Field(None, description="null: unlimited")
    stackable: bool | None = None
    is_share: bool | None = None
    new_customers_only: bool | None = None
    product_id: Id | None = Field(None, description="null: any product")


@router.patch("/coupon-templates/{template_id}", response={200: CouponTemplateOut, **ERRORS}, summary="修改优惠券")
def update_coupon_template(request: HttpRequest, template_id: Id, body: CouponTemplatePatch) -> Any:
    p = require(request, "commerce.write")
    return services.do_update_coupon_template(p, template_id,
                                              **patch_changes(body, nullable=("total_quantity", "product_id")))


@router.post("/coupon-templates/{template_id}/end", response={200: CouponTemplateOut, **ERRORS},
             summary="停止发放优惠券")
@idempotent
def end_coupon_template(request: HttpRequest, template_id: Id) -> Any:
    return services.do_end_coupon_template(require(request, "commerce.write"), template_id)


class LiveSessionIn(BodyIn):
    title: str = Field(min_length=1, max_length=max_len(LiveSession, "title"))
    starts_at: ApiDatetime
    ends_at: ApiDatetime | None = None
    platform: str = Field("wechat_channels", min_length=1, max_length=max_len(LiveSession, "platform"))
    host_member_id: Id | None = None
    host_name: str = Field("", max_length=max_len(LiveSession, "host_name"))
    community_id: Id | None = None


class LiveSessionOut(Schema):
    id: int
    title: str
    platform: str
    starts_at: dt.datetime
    ends_at: dt.datetime | None
    community_id: int | None
    host_name: str


class LiveJoinIn(BodyIn):
    member_id: Id
    community_id: Id | None = None


class LiveJoinOut(Schema):
    id: int
    session_id: int
    member_id: int
    community_id: int
    joined_at: dt.datetime


@router.post("/live-sessions", response={200: LiveSessionOut, **ERRORS}, summary="创建直播场次")
@idempotent
def create_live_session(request: HttpRequest, body: LiveSessionIn) -> Any:
    p = require(request, "commerce.write")
    return services.do_create_live_session(p, **body.model_dump())


class LiveSessionPatch(BodyIn):
    title: str | None = Field(None, min_length=1, max_length=max_len(LiveSession, "title"))
    starts_at: ApiDatetime | None = None
    ends_at: ApiDatetime | None = Field(None, description="null: not ended")
    platform: str | None = Field(None, min_length=1, max_length=max_len(LiveSession, "platform"))
    host_member_id: Id | None = None
    host_name: str | None = Field(None, max_length=max_len(LiveSession, "host_name"))
    community_id: Id | None = Field(None, description="fixed once joins were recorded")


@router.patch("/live-sessions/{live_session_id}", response={200: LiveSessionOut, **ERRORS}, summary="修改直播场次")
def update_live_session(request: HttpRequest, live_session_id: Id, body: LiveSessionPatch) -> Any:
    p = require(request, "commerce.write")
    changes = patch_changes(body, nullable=("ends_at", "host_member_id", "community_id"))
    return services.do_update_live_session(p, live_session_id, **changes)


@router.post("/live-sessions/{live_session_id}/end", response={200: LiveSessionOut, **ERRORS}, summary="结束直播")
@idempotent
def end_live_session(request: HttpRequest, live_session_id: Id) -> Any:
    return services.do_end_live_session(require(request, "commerce.write"), live_session_id)


@router.post("/live-sessions/{live_session_id}/joins", response={200: LiveJoinOut, **ERRORS},
             summary="记录从直播入群的会员")
@idempotent
def record_live_join(request: HttpRequest, live_session_id: Id, body: LiveJoinIn) -> Any:
    p = require(request, "commerce.write")
    return services.do_record_live_join(p, live_session_id, body.member_id, body.community_id)
