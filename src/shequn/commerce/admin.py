"""Console pages of commerce. Money and stock never change by editing a row: orders, payments,
refunds and events are read-only here and move through actions that call the services; stock and
issue counts are excluded from every save so a stale form cannot overwrite a concurrent decrement."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from shequn.core.admin_base import TenantScopedAdmin, TenantScopedTabularInline, request_principal
from shequn.core.errors import ShequnError

from . import services
from .models import (
    Coupon,
    CouponTemplate,
    FlashReservation,
    FlashSale,
    GroupBuy,
    GroupBuyTeam,
    LiveJoin,
    LiveSession,
    MemberPrice,
    Order,
    OrderEvent,
    OrderLine,
    Payment,
    Product,
    Refund,
    Sku,
    TierGrant,
)


def yuan(fen: int | None) -> str:
    return "" if fen is None else f"¥{fen / 100:,.2f}"


class _GuardedSave:
    """Saves of existing rows leave out the columns only services may move (stock, counters)."""

    guarded: tuple[str, ...] = ()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        ro = list(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        return [*ro, *self.guarded] if obj is not None else ro

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            fields = [f.name for f in obj._meta.concrete_fields
                      if f.name not in self.guarded and not f.primary_key and f.name != "tenant"]
            obj.save(update_fields=fields)
        else:
            super().save_model(request, obj, form, change)  # type: ignore[misc]


def _run(request: HttpRequest, modeladmin: Any, queryset: QuerySet[Any], fn: Any, done: str) -> None:
    p = request_principal(request)
    if p is None or not p.can("commerce.write"):
        modeladmin.message_user(request, _("没有权限: commerce.write"), messages.ERROR)
        return
    ok = 0
    for obj in queryset:
        try:
            fn(p, obj)
            ok += 1
        except ShequnError as exc:
            modeladmin.message_user(request, f"#{obj.pk}: {exc.message}", messages.WARNING)
    if ok:
        modeladmin.message_user(request, f"{done}: {ok}", messages.SUCCESS)


class SkuInline(TenantScopedTabularInline):
    model = Sku
    extra = 1
    permission_area = "commerce"
    fields = ("code", "name", "price_fen", "stock", "is_active")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("stock",) if obj is not None else ()


@admin.register(Product)
class ProductAdmin(TenantScopedAdmin):
    permission_area = "commerce"
    list_display = ("name", "kind", "is_active", "tier_community", "tier_code", "created_at")
    list_filter = ("kind", "is_active")
    search_fields = ("name",)
    filter_horizontal = ("visible_in",)
    inlines = (SkuInline,)
    fieldsets = (
        (None, {"fields": ("name", "kind", "description", "images", "is_active", "visible_in",
                           "gift_coupon_template")}),
        (_("付费社群等级"), {"fields": ("tier_community", "tier_code", "tier_rank", "tier_privileges",
                                     "tier_duration_days")}),
    )

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        instances = formset.save(commit=False)
        for obj in instances:
            if obj.pk is None:
                obj.tenant_id = form.instance.tenant_id
                obj.save()
            else:
                obj.save(update_fields=["code", "name", "price_fen", "is_active"])
        for obj in formset.deleted_objects:
            obj.delete()


@admin.register(Sku)
class SkuAdmin(_GuardedSave, TenantScopedAdmin):
    permission_area = "commerce"
    guarded = ("stock",)
    list_display = ("code", "product", "name", "price", "stock", "is_active")
    search_fields = ("code", "name", "product__name")
    actions = ("add_ten",)

    @admin.display(description=_("价格"))
    def price(self, obj: Sku) -> str:
        return yuan(obj.price_fen)

    @admin.action(description=_("库存 +10"))
    def add_ten(self, request: HttpRequest, queryset: QuerySet[Sku]) -> None:
        _run(request, self, queryset, lambda p, o: services.do_adjust_stock(p, o.pk, 10, reason="console"),
             str(_("已补货")))


@admin.register(MemberPrice)
class MemberPriceAdmin(TenantScopedAdmin):
    permission_area = "commerce"
    list_display = ("sku", "min_relationship_level", "tier_product", "price_fen")


class OrderLineInline(TenantScopedTabularInline):
    model = OrderLine
    extra = 0
    permission_area = "commerce"
    read_only_model = True
    fields = ("name", "product_kind", "quantity", "list_price_fen", "unit_price_fen", "discount_fen", "amount_fen")
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(TenantScopedAdmin):
    permission_area = "commerce"
    read_only_model = True
    list_display = ("id", "member", "status", "total", "paid", "refunded", "flash_sale", "team", "created_at")
    list_filter = ("status",)
    search_fields = ("id",)
    inlines = (OrderLineInline,)
    readonly_fields = ("attribution",)
    actions = ("fulfil", "complete", "cancel", "refund_rest")

    @admin.display(description=_("应付"))
    def total(self, obj: Order) -> str:
        return yuan(obj.total_fen)

    @admin.display(description=_("实付"))
    def paid(self, obj: Order) -> str:
        return yuan(obj.paid_fen)

    @admin.display(description=_("已退"))
    def refunded(self, obj: Order) -> str:
        return yuan(obj.refunded_fen)

    @admin.action(description=_("发货"))
    def fulfil(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        _run(request, self, queryset, lambda p, o: services.do_fulfil_order(p, o.pk), str(_("已发货")))

    @admin.action(description=_("完成"))
    def complete(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        _run(request, self, queryset, lambda p, o: services.do_complete_order(p, o.pk), str(_("已完成")))

    @admin.action(description=_("取消(未支付)"))
    def cancel(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        _run(request, self, queryset, lambda p, o: services.do_cancel_order(p, o.pk, reason=str(_("运营取消"))),
             str(_("已取消")))

    @admin.action(description=_("全额退款(剩余可退金额)"))
    def refund_rest(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        def go(p: Any, o: Order) -> None:
            left = o.paid_fen - o.refunded_fen
            services.do_request_refund(p, o.pk, amount_fen=left, reason=str(_("运营退款")),
                                       idempotency_key=f"console-full-{o.pk}-{o.refunded_fen}")

        _run(request, self, queryset, go, str(_("已提交退款")))


@admin.register(Payment)
class PaymentAdmin(TenantScopedAdmin):
    permission_area = "commerce"
    read_only_model = True
    list_display = ("out_trade_no", "order", "provider", "channel", "amount_fen", "status", "applied", "paid_at")
    list_filter = ("provider", "status", "applied")
    search_fields = ("out_trade_no", "provider_txn_id")


@admin.register(Refund)
class RefundAdmin(TenantScopedAdmin):
    permission_area = "commerce"
    read_only_model = True
    list_display = ("out_refund_no", "order", "amount_fen", "status", "reason", "created_at", "completed_at")
    list_filter = ("status",)


@admin.register(OrderEvent)
class OrderEventAdmin(TenantScopedAdmin):
    permission_area = "commerce"
    read_only_model = True
    list_display = ("id", "kind", "order", "amount_fen", "created_at")
    list_filter = ("kind",)


@admin.register(FlashSale)
class FlashSaleAdmin(_GuardedSave, TenantScopedAdmin):
    permission_area = "commerce"
    guarded = ("stock", "initial_stock", "sku")
    list_display = ("name", "sku", "price_fen", "stock", "initial_stock", "per_member_limit", "starts_at", "ends_at",
                    "use_redis_gate")
    exclude = ("stock",)

    def save_model(self, request: HttpRequest, obj: FlashSale, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        p = request_principal(request)
        assert p is not None
        created = services.do_create_flash_sale(
            p, name=obj.name, sku_id=obj.sku_id, price_fen=obj.price_fen, stock=obj.initial_stock,
            starts_at=obj.starts_at, ends_at=obj.ends_at, per_member_limit=obj.per_member_limit,
            reservation_ttl_seconds=obj.reservation_ttl_seconds, eligible_community_id=obj.eligible_community_id,
            eligible_tier_id=obj.eligible_tier_id, min_relationship_level=obj.min_relationship_level,
            use_redis_gate=obj.use_redis_gate,
        )
        obj.pk = created.pk
        obj.stock = created.stock


@admin.register(FlashReservation)
class FlashReservationAdmin(TenantScopedAdmin):
    permission_area = "commerce"
    read_only_model = True
    list_display = ("flash_sale", "member", "quantity", "status", "order", "expires_at")
    list_filter = ("status",)


@admin.register(GroupBuy)
class GroupBuyAdmin(TenantScopedAdmin):
    permission_area = "commerce"
    list_display = ("name", "sku", "price_fen", "team_size", "time_limit_minutes", "starts_at", "ends_at", "is_active")


@admin.register(GroupBuyTeam)
class GroupBuyTeamAdmin(TenantScopedAdmin):
    permission_area = "commerce"
    read_only_model = True
    list_display = ("id", "group_buy", "leader", "status", "share_token", "expires_at", "leader_rewarded")
    list_filter = ("status",)


@admin.register(CouponTemplate)
class CouponTemplateAdmin(_GuardedSave, TenantScopedAdmin):
    permission_area = "commerce"
    guarded = ("issued",)
    list_display = ("name", "kind", "amount_fen", "percent_off", "threshold_fen", "valid_from", "valid_until",
                    "issued", "total_quantity", "stackable", "is_share", "new_customers_only")
    list_filter = ("kind", "is_share")


@admin.register(Coupon)
class CouponAdmin(TenantScopedAdmin):
    permission_area = "commerce"
    read_only_model = True
    list_display = ("id", "template", "owner", "giver", "status", "used_order", "claimed_at")
    list_filter = ("status",)


@admin.register(TierGrant)
class TierGrantAdmin(TenantScopedAdmin):
    permission_area = "commerce"
    read_only_model = True
    list_display = ("member", "product", "community", "status", "starts_at", "expires_at", "order")
    list_filter = ("status", "product")


@admin.register(LiveSession)
class LiveSessionAdmin(TenantScopedAdmin):
    permission_area = "commerce"
    list_display = ("title", "platform", "host_name", "community", "starts_at", "ends_at", "joins", "paid_orders")

    @admin.display(description=_("入群"))
    def joins(self, obj: LiveSession) -> int:
        return obj.joins.count()

    @admin.display(description=_("成交订单"))
    def paid_orders(self, obj: LiveSession) -> int:
        return obj.orders.filter(paid_at__isnull=False).count()


@admin.register(LiveJoin)
class LiveJoinAdmin(TenantScopedAdmin):
    permission_area = "commerce"
    read_only_model = True
    list_display = ("session", "member", "community", "joined_at")
