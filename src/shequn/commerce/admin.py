"""Console pages of commerce. Money and stock never change by editing a row: orders, payments,
refunds and events are read-only here and move through actions that call the services; campaign
objects are created and changed through ``do_create_*`` / ``do_update_*`` (``services/edits.py``),
and stock and issue counts are never in a form, so a stale form cannot overwrite a concurrent
decrement."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from shequn.core.admin_base import (
    ServiceCreateMixin,
    TenantScopedAdmin,
    TenantScopedTabularInline,
    request_principal,
)
from shequn.core.errors import Invalid, ShequnError
from shequn.core.money import YuanField, yuan

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
from .services import TIER_PRIVILEGES


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


class SkuInlineForm(forms.ModelForm):  # type: ignore[type-arg]
    """A SKU row of a product: checked by the services (``check_sku`` / ``check_update_sku``) and
    written by them (``do_add_sku`` / ``do_update_sku`` in :meth:`ProductAdmin.save_formset`)."""

    class Meta:
        model = Sku
        fields = ("code", "name", "price_fen", "stock", "is_active")

    def clean(self) -> Any:
        super().clean()
        data = self.cleaned_data
        tenant_id = self.instance.tenant_id
        if self.errors or tenant_id is None or data.get("DELETE") or not self.has_changed():
            return data
        try:
            if self.instance.pk is None:
                services.check_sku(tenant_id, code=data.get("code") or "", price_fen=data.get("price_fen"),
                                   stock=data.get("stock") or 0)
            else:
                services.check_update_sku(tenant_id, self.instance.pk, **_sku_changes(data))
        except ShequnError as exc:
            field = exc.details.get("field") if isinstance(exc.details, dict) else None
            self.add_error(field if field in self.fields else None, exc.message)
        return data


def _sku_changes(data: dict[str, Any]) -> dict[str, Any]:
    return {"code": data.get("code") or "", "name": data.get("name") or "", "price_fen": data.get("price_fen"),
            "is_active": bool(data.get("is_active"))}


class SkuInline(TenantScopedTabularInline):
    model = Sku
    form = SkuInlineForm
    extra = 0
    permission_area = "commerce"
    fields = ("code", "name", "price_fen", "stock", "is_active")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("stock",) if obj is not None else ()


#: the seeds' tier codes in words (other codes, chosen by the operator, show as entered)
TIER_CODE_LABELS = {"entry": _("入门"), "partner": _("合伙人")}


class ProductForm(forms.ModelForm):  # type: ignore[type-arg]
    """Images one address a line, the tier's privileges as check boxes, and (on add) the first SKU:
    a product is created with at least one SKU by ``do_create_product``."""

    images_text = forms.CharField(label=_("图片"), required=False, widget=forms.Textarea(attrs={"rows": 3}),
                                  help_text=_("每行一个图片地址"))
    sku_code = forms.CharField(label=_("SKU 编码"), max_length=64, required=False)
    sku_name = forms.CharField(label=_("规格"), max_length=120, required=False)
    sku_price_fen = YuanField(label=_("价格(元)"), required=False)
    sku_stock = forms.IntegerField(label=_("库存"), min_value=0, required=False, initial=0)
    priv_courses = forms.CharField(label=_("课程"), max_length=64, required=False,
                                   help_text=_("该等级开放的课程级别, 如 entry"))
    priv_free_courses = forms.BooleanField(label=_("全部课程免费"), required=False)
    priv_may_create_groups = forms.BooleanField(label=_("可自建群"), required=False,
                                                help_text=_("合伙人权益: 在社群下开自己的群"))
    priv_member_price = forms.BooleanField(label=_("会员价购物"), required=False)

    class Meta:
        model = Product
        fields = ("name", "kind", "description", "is_active", "visible_in", "gift_coupon_template", "tier_community",
                  "tier_code", "tier_rank", "tier_duration_days")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inst = self.instance
        self.fields["images_text"].initial = "\n".join(str(x) for x in (inst.images or []))
        privileges = inst.tier_privileges or {}
        for key in TIER_PRIVILEGES:
            self.fields[f"priv_{key}"].initial = privileges.get(key, self.fields[f"priv_{key}"].initial)

    def privileges(self) -> dict[str, Any]:
        d = self.cleaned_data
        return {key: d.get(f"priv_{key}") or ("" if kind is str else False) for key, kind in TIER_PRIVILEGES.items()}

    def images(self) -> list[str]:
        return [line.strip() for line in (self.cleaned_data.get("images_text") or "").splitlines() if line.strip()]


@admin.register(Product)
class ProductAdmin(ServiceCreateMixin, TenantScopedAdmin):
    """New products (and paid tiers) go through ``do_create_product`` with their first SKU; more
    SKUs are added in the SKU rows of an existing product."""

    permission_area = "commerce"
    form = ProductForm
    create_service = staticmethod(services.do_create_product)
    check_service = staticmethod(services.check_product)
    change_service = staticmethod(services.do_update_product)
    change_check = staticmethod(services.check_update_product)
    change_fields = ("name", "description", "images", "is_active", "visible_in", "tier_community_id", "tier_code",
                     "tier_rank", "tier_duration_days", "tier_privileges")
    field_map = {"skus[0].code": "sku_code", "skus[0].price_fen": "sku_price_fen", "skus[0].stock": "sku_stock",
                 "tier_community_id": "tier_community", "visible_in": "visible_in", "skus": "sku_code",
                 **{f"tier_privileges.{k}": f"priv_{k}" for k in TIER_PRIVILEGES}}
    list_display = ("name", "kind", "is_active", "tier_community", "tier_level", "created_at")
    list_filter = ("kind", "is_active")
    search_fields = ("name",)
    filter_horizontal = ("visible_in",)
    inlines = (SkuInline,)
    actions = ("take_off_sale", "put_on_sale")

    @admin.display(description=_("等级"), ordering="tier_rank")
    def tier_level(self, obj: Product) -> str:
        if obj.kind != "tier":
            return "-"
        return str(TIER_CODE_LABELS.get(obj.tier_code, obj.tier_code))

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        first = (None, {"fields": ("name", "kind", "description", "images_text", "is_active", "visible_in",
                                   "gift_coupon_template")})
        tier = (_("付费社群等级"), {"fields": ("tier_community", "tier_code", "tier_rank", "tier_duration_days",
                                          "priv_courses", "priv_free_courses", "priv_may_create_groups",
                                          "priv_member_price")})
        if obj is None:
            return (first, (_("第一个 SKU"), {"fields": ("sku_code", "sku_name", "sku_price_fen", "sku_stock")}), tier)
        return (first, tier)

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj is not None else ()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        ro = list(super().get_readonly_fields(request, obj))
        return [*ro, "kind"] if obj is not None else ro  # the kind never changes (edits.py)

    def change_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        kwargs = super().change_kwargs(request, data)
        form = data.get("_form")
        if form is not None and form.instance.kind != "tier":
            kwargs = {k: v for k, v in kwargs.items() if not k.startswith("tier_")}
        return kwargs

    def service_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        community = data.get("tier_community")
        form = data.get("_form")
        return {
            "name": data.get("name") or "", "kind": data.get("kind") or "goods",
            "description": data.get("description") or "",
            "images": form.images() if form else [],
            "visible_in": [c.pk for c in data.get("visible_in") or []],
            "skus": [{"code": data.get("sku_code") or "", "name": data.get("sku_name") or "",
                      "price_fen": data.get("sku_price_fen"), "stock": data.get("sku_stock") or 0}],
            "tier_community_id": community.pk if community else None, "tier_code": data.get("tier_code") or "",
            "tier_rank": data.get("tier_rank") or 0, "tier_duration_days": data.get("tier_duration_days"),
            "tier_privileges": form.privileges() if form else {},
        }

    def check_form(self, request: HttpRequest, form: Any) -> None:
        form.cleaned_data["_form"] = form
        try:
            super().check_form(request, form)
        finally:
            form.cleaned_data.pop("_form", None)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        form.cleaned_data["_form"] = form
        try:
            super().save_model(request, obj, form, change)
        finally:
            form.cleaned_data.pop("_form", None)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """SKU rows through the services: new ones by ``do_add_sku``, changed ones by ``do_update_sku``
        (never their stock, which moves by adjustments)."""
        p = request_principal(request)
        assert p is not None
        for row in formset.forms:
            if not row.has_changed() or not hasattr(row, "cleaned_data") or row in formset.deleted_forms:
                continue
            data = row.cleaned_data
            if row.instance.pk is None:
                services.do_add_sku(p, form.instance.pk, code=data.get("code") or "", name=data.get("name") or "",
                                    price_fen=data.get("price_fen"), stock=data.get("stock") or 0)
            else:
                services.do_update_sku(p, row.instance.pk, **_sku_changes(data))
        for row in formset.deleted_forms:
            if row.instance.pk is not None:
                row.instance.delete()
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def _set_active(self, request: HttpRequest, queryset: QuerySet[Product], active: bool) -> None:
        _run(request, self, queryset, lambda p, o: services.do_update_product(p, o.pk, is_active=active),
             str(_("已上架") if active else _("已下架")))

    @admin.action(description=_("下架"))
    def take_off_sale(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        self._set_active(request, queryset, False)

    @admin.action(description=_("上架"))
    def put_on_sale(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        self._set_active(request, queryset, True)


@admin.register(Sku)
class SkuAdmin(ServiceCreateMixin, TenantScopedAdmin):
    """SKUs are added by ``do_add_sku`` and changed by ``do_update_sku``; stock only by adjustments."""

    permission_area = "commerce"
    fields = ("product", "code", "name", "price_fen", "stock", "is_active")
    change_fields = ("code", "name", "price_fen", "is_active")
    field_map = {"product_id": "product"}
    change_service = staticmethod(services.do_update_sku)
    change_check = staticmethod(services.check_update_sku)
    list_display = ("code", "product", "name", "price", "stock", "is_active")
    search_fields = ("code", "name", "product__name")
    actions = ("add_ten",)

    @admin.display(description=_("价格"))
    def price(self, obj: Sku) -> str:
        return yuan(obj.price_fen)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("product", "stock") if obj is not None else ()

    def check_service(self, tenant_id: int, **kwargs: Any) -> None:
        if kwargs["product_id"] is None:
            raise Invalid(str(_("商品不存在")), details={"field": "product_id"})
        services.check_sku(tenant_id, code=kwargs["code"], price_fen=kwargs["price_fen"], stock=kwargs["stock"])

    def create_service(self, principal: Any, **kwargs: Any) -> Any:
        return services.do_add_sku(principal, kwargs.pop("product_id"), **kwargs)

    def service_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        return {"product_id": _pk(data.get("product")), "code": data.get("code") or "",
                "name": data.get("name") or "", "price_fen": data.get("price_fen"), "stock": data.get("stock") or 0,
                "is_active": bool(data.get("is_active"))}

    def change_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        return _sku_changes(data)

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


def _aware(data: dict[str, Any], name: str) -> Any:
    return data.get(name) or timezone.now()


@admin.register(FlashSale)
class FlashSaleAdmin(ServiceCreateMixin, TenantScopedAdmin):
    """New flash sales go through ``do_create_flash_sale`` (their stock is carved out of the SKU's),
    changes through ``do_update_flash_sale`` (its state rules: price fixed once started, stock between
    what is sold and what the SKU can give), ending by the action."""

    permission_area = "commerce"
    create_service = staticmethod(services.do_create_flash_sale)
    check_service = staticmethod(services.check_flash_sale)
    change_service = staticmethod(services.do_update_flash_sale)
    change_check = staticmethod(services.check_update_flash_sale)
    change_fields = ("name", "price_fen", "stock", "starts_at", "ends_at", "per_member_limit",
                     "reservation_ttl_seconds", "eligible_community_id", "eligible_tier_id", "min_relationship_level",
                     "use_redis_gate")
    field_map = {"stock": "initial_stock", "sku_id": "sku", "eligible_community_id": "eligible_community",
                 "eligible_tier_id": "eligible_tier"}
    list_display = ("name", "sku", "price_fen", "stock", "initial_stock", "per_member_limit", "starts_at", "ends_at",
                    "use_redis_gate")
    exclude = ("stock",)
    actions = ("end_now",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("sku",) if obj is not None else ()  # its stock was carved out of that SKU

    def service_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": data.get("name") or "", "sku_id": _pk(data.get("sku")), "price_fen": data.get("price_fen"),
            "stock": data.get("initial_stock"), "starts_at": _aware(data, "starts_at"),
            "ends_at": _aware(data, "ends_at"), "per_member_limit": data.get("per_member_limit") or 1,
            "reservation_ttl_seconds": data.get("reservation_ttl_seconds") or 900,
            "eligible_community_id": _pk(data.get("eligible_community")),
            "eligible_tier_id": _pk(data.get("eligible_tier")),
            "min_relationship_level": data.get("min_relationship_level"),
            "use_redis_gate": bool(data.get("use_redis_gate")),
        }

    @admin.action(description=_("立即结束"))
    def end_now(self, request: HttpRequest, queryset: QuerySet[FlashSale]) -> None:
        _run(request, self, queryset, lambda p, o: services.do_end_flash_sale(p, o.pk), str(_("已结束")))


def _pk(obj: Any) -> int | None:
    return None if obj is None else int(obj.pk)


@admin.register(FlashReservation)
class FlashReservationAdmin(TenantScopedAdmin):
    permission_area = "commerce"
    read_only_model = True
    list_display = ("flash_sale", "member", "quantity", "status", "order", "expires_at")
    list_filter = ("status",)


@admin.register(GroupBuy)
class GroupBuyAdmin(ServiceCreateMixin, TenantScopedAdmin):
    permission_area = "commerce"
    create_service = staticmethod(services.do_create_group_buy)
    check_service = staticmethod(services.check_group_buy)
    change_service = staticmethod(services.do_update_group_buy)
    change_check = staticmethod(services.check_update_group_buy)
    change_fields = ("name", "sku_id", "price_fen", "team_size", "starts_at", "ends_at", "time_limit_minutes",
                     "leader_reward_template_id")
    field_map = {"sku_id": "sku", "leader_reward_template_id": "leader_reward_template"}
    list_display = ("name", "sku", "price_fen", "team_size", "time_limit_minutes", "starts_at", "ends_at", "is_active")
    actions = ("pause", "resume")

    readonly_fields = ("is_active",)  # pause / resume by the actions

    def service_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": data.get("name") or "", "sku_id": _pk(data.get("sku")), "price_fen": data.get("price_fen"),
            "team_size": data.get("team_size"), "starts_at": _aware(data, "starts_at"),
            "ends_at": _aware(data, "ends_at"), "time_limit_minutes": data.get("time_limit_minutes") or 1440,
            "leader_reward_template_id": _pk(data.get("leader_reward_template")),
        }

    @admin.action(description=_("暂停 (不再开新团)"))
    def pause(self, request: HttpRequest, queryset: QuerySet[GroupBuy]) -> None:
        _run(request, self, queryset, lambda p, o: services.do_set_group_buy_active(p, o.pk, active=False),
             str(_("已暂停")))

    @admin.action(description=_("恢复"))
    def resume(self, request: HttpRequest, queryset: QuerySet[GroupBuy]) -> None:
        _run(request, self, queryset, lambda p, o: services.do_set_group_buy_active(p, o.pk, active=True),
             str(_("已恢复")))


@admin.register(GroupBuyTeam)
class GroupBuyTeamAdmin(TenantScopedAdmin):
    permission_area = "commerce"
    read_only_model = True
    list_display = ("id", "group_buy", "leader", "status", "share_token", "expires_at", "leader_rewarded")
    list_filter = ("status",)


@admin.register(CouponTemplate)
class CouponTemplateAdmin(ServiceCreateMixin, TenantScopedAdmin):
    """Created by ``do_create_coupon_template``, changed by ``do_update_coupon_template`` (terms fixed
    once a coupon was issued; the total never below the issued count, which no form writes)."""

    permission_area = "commerce"
    create_service = staticmethod(services.do_create_coupon_template)
    check_service = staticmethod(services.check_coupon_template)
    change_service = staticmethod(services.do_update_coupon_template)
    change_check = staticmethod(services.check_update_coupon_template)
    change_fields = ("name", "kind", "valid_from", "valid_until", "amount_fen", "percent_off", "threshold_fen",
                     "per_member_limit", "total_quantity", "stackable", "is_share", "new_customers_only",
                     "product_id")
    field_map = {"product_id": "product"}
    list_display = ("name", "kind", "amount_fen", "percent_off", "threshold_fen", "valid_from", "valid_until",
                    "issued", "total_quantity", "stackable", "is_share", "new_customers_only")
    list_filter = ("kind", "is_share")
    exclude = ("issued",)
    actions = ("end_now",)

    def service_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": data.get("name") or "", "kind": data.get("kind") or "", "valid_from": _aware(data, "valid_from"),
            "valid_until": _aware(data, "valid_until"), "amount_fen": data.get("amount_fen") or 0,
            "percent_off": data.get("percent_off") or 0, "threshold_fen": data.get("threshold_fen") or 0,
            "per_member_limit": data.get("per_member_limit") or 1, "total_quantity": data.get("total_quantity"),
            "stackable": bool(data.get("stackable")), "is_share": bool(data.get("is_share")),
            "new_customers_only": bool(data.get("new_customers_only")), "product_id": _pk(data.get("product")),
        }

    @admin.action(description=_("停止发放"))
    def end_now(self, request: HttpRequest, queryset: QuerySet[CouponTemplate]) -> None:
        _run(request, self, queryset, lambda p, o: services.do_end_coupon_template(p, o.pk), str(_("已停止发放")))


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
class LiveSessionAdmin(ServiceCreateMixin, TenantScopedAdmin):
    permission_area = "commerce"
    create_service = staticmethod(services.do_create_live_session)
    check_service = staticmethod(services.check_live_session)
    change_service = staticmethod(services.do_update_live_session)
    change_check = staticmethod(services.check_update_live_session)
    change_fields = ("title", "starts_at", "ends_at", "platform", "host_member_id", "host_name", "community_id")
    field_map = {"host_member_id": "host", "community_id": "community"}
    list_display = ("title", "platform", "host_name", "community", "starts_at", "ends_at", "joins", "paid_orders")
    actions = ("end_now",)

    def service_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        return {"title": data.get("title") or "", "starts_at": _aware(data, "starts_at"),
                "ends_at": data.get("ends_at"),
                "platform": data.get("platform") or "wechat_channels", "host_member_id": _pk(data.get("host")),
                "host_name": data.get("host_name") or "", "community_id": _pk(data.get("community"))}

    @admin.display(description=_("入群"))
    def joins(self, obj: LiveSession) -> int:
        return obj.joins.count()

    @admin.display(description=_("成交订单"))
    def paid_orders(self, obj: LiveSession) -> int:
        return obj.orders.filter(paid_at__isnull=False).count()

    @admin.action(description=_("结束直播"))
    def end_now(self, request: HttpRequest, queryset: QuerySet[LiveSession]) -> None:
        _run(request, self, queryset, lambda p, o: services.do_end_live_session(p, o.pk), str(_("已结束")))


@admin.register(LiveJoin)
class LiveJoinAdmin(ServiceCreateMixin, TenantScopedAdmin):
    """Who joined from which live session: recorded through ``do_record_live_join`` (it opens the
    membership with join source "live"); rows are not edited afterwards."""

    permission_area = "commerce"
    list_display = ("session", "member", "community", "joined_at")
    fields = ("session", "member", "community")
    autocomplete_fields = ("member",)
    list_filter = ("session",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def check_service(self, tenant_id: int, **kwargs: Any) -> None:
        services.check_member(tenant_id, kwargs["member_id"])

    def create_service(self, principal: Any, **kwargs: Any) -> Any:
        return services.do_record_live_join(principal, kwargs["live_session_id"], kwargs["member_id"],
                                            kwargs["community_id"])

    def service_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        return {"live_session_id": _pk(data.get("session")), "member_id": _pk(data.get("member")),
                "community_id": _pk(data.get("community"))}
