"""Console pages for referrals (permission area "referrals") and withdrawals (area "finance").
Business rules run through services; money rows (commissions, withdrawals) are read-only here and
change only through the actions, which call the services."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from shequn.commerce.models import CouponTemplate
from shequn.core.admin_base import (
    ServiceCreateMixin,
    TenantScopedAdmin,
    TenantScopedTabularInline,
    adopt,
    request_principal,
    request_tenant_id,
)
from shequn.core.errors import ShequnError
from shequn.core.masking import mask_phone
from shequn.core.money import YuanField

from . import services
from .admin_payouts import WithdrawalPayoutActions, payout_provider_warning
from .models import (
    Commission,
    CommissionPlan,
    CommissionRule,
    FissionTask,
    FraudSignal,
    FraudStatus,
    GiftShipment,
    InviteLink,
    ReferralBinding,
    ReferralPolicy,
    Withdrawal,
    WithdrawalEvent,
    WithdrawalStatus,
)
from .selectors import link_stats, link_url, plan_warnings
from .services.links import _new_code


def _yuan(fen: int | None) -> str:
    return f"{(fen or 0) / 100:,.2f}"


@admin.register(ReferralPolicy)
class ReferralPolicyAdmin(TenantScopedAdmin):
    permission_area = "referrals"
    list_display = ("binding_mode", "binding_days", "protection_days", "new_customer_only", "fraud_blocking",
                    "withdrawal_approval_above_fen", "payout_provider")

    def check_form(self, request: HttpRequest, form: Any) -> None:
        tenant_id = getattr(getattr(request, "tenant", None), "pk", None)
        provider = form.cleaned_data.get("payout_provider")
        if tenant_id is not None and provider and provider != form.initial.get("payout_provider"):
            services.check_payout_provider(tenant_id, provider)  # wechat needs a WeChat Pay configuration

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        payout_provider_warning(request)
        return super().changelist_view(request, extra_context)


@admin.register(InviteLink)
class InviteLinkAdmin(TenantScopedAdmin):
    permission_area = "referrals"
    list_display = ("code", "kind", "member", "community", "campaign", "channel", "stats", "is_active", "poster")
    list_filter = ("kind", "is_active")
    search_fields = ("code", "campaign", "channel", "label")
    readonly_fields = ("code", "created_at")

    @admin.display(description=_("点击/入群/购买"))
    def stats(self, obj: InviteLink) -> str:
        s = link_stats(obj.tenant_id, obj.pk)
        return f"{s['click']} / {s['join']} / {s['purchase']}"

    @admin.display(description=_("链接"))
    def poster(self, obj: InviteLink) -> str:
        return format_html('<a href="{}" target="_blank">{}</a>', link_url(obj), obj.code)

    def save_model(self, request: HttpRequest, obj: InviteLink, form: Any, change: bool) -> None:
        if not change and not obj.code:
            obj.code = _new_code()
        super().save_model(request, obj, form, change)


@admin.register(ReferralBinding)
class ReferralBindingAdmin(TenantScopedAdmin):
    permission_area = "referrals"
    read_only_model = True
    list_display = ("member", "referrer", "bound_at", "expires_at", "protected_until", "link")
    search_fields = ("member__display_name", "referrer__display_name")


def _rule_rows(formset: Any) -> list[tuple[Any, dict[str, Any]]]:
    """The (form, rule) pairs of the rule rows that are filled in and not deleted."""
    rows = []
    for form in formset.forms:
        data = getattr(form, "cleaned_data", None) or {}
        if not data or data.get("DELETE"):
            continue
        rows.append((form, {k: data.get(k) for k in ("product_kind", "product_id", "mode", "rate_bps", "fixed_fen",
                                                     "cap_fen")}))
    return rows


class CommissionRuleFormSet(BaseInlineFormSet):  # type: ignore[type-arg]
    """The plan's rules are checked by ``check_plan_rules`` (the API's checks): an error lands on
    the row and the column it names."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        rows = _rule_rows(self)
        try:
            services.check_plan_rules([rule for _form, rule in rows])
        except ShequnError as exc:
            name = exc.details.get("field", "") if isinstance(exc.details, dict) else ""
            match = re.fullmatch(r"rules\[(\d+)\]\.(\w+)", name)
            if match and int(match.group(1)) < len(rows):
                form = rows[int(match.group(1))][0]
                column = match.group(2)
                form.add_error(column if column in form.fields else None, exc.message)
            raise forms.ValidationError(exc.message) from exc


class CommissionRuleInline(TenantScopedTabularInline):
    model = CommissionRule
    formset = CommissionRuleFormSet
    permission_area = "referrals"
    fields = ("product_kind", "product_id", "mode", "rate_bps", "fixed_fen", "cap_fen")
    extra = 1


@admin.register(CommissionPlan)
class CommissionPlanAdmin(TenantScopedAdmin):
    """Plans are saved through ``do_create_plan`` / ``do_update_plan``: the one-level rule, the rate
    bounds and the risk notes are the API's."""

    permission_area = "referrals"
    audit_writes = False  # the services audit
    list_display = ("name", "community", "campaign", "refund_window_days", "self_purchase", "is_active", "risk")
    inlines = [CommissionRuleInline]
    readonly_fields = ("levels", "risk_notes")
    actions = ("pause", "resume")

    @admin.display(description=_("风险提示"))
    def risk(self, obj: CommissionPlan) -> str:
        return "⚠" if plan_warnings(obj) else ""

    @admin.display(description=_("风险提示"))
    def risk_notes(self, obj: CommissionPlan) -> str:
        notes = plan_warnings(obj) if obj.pk else []
        return format_html("<br>".join(["{}"] * len(notes)), *notes) if notes else "-"

    def _plan_kwargs(self, data: dict[str, Any]) -> dict[str, Any]:
        community = data.get("community")
        return {"name": data.get("name") or "", "community_id": community.pk if community else None,
                "campaign": data.get("campaign") or "", "refund_window_days": data.get("refund_window_days") or 0,
                "cap_per_order_fen": data.get("cap_per_order_fen")}

    def check_form(self, request: HttpRequest, form: Any) -> None:
        tenant_id = request_tenant_id(request)
        if tenant_id is not None:
            services.check_plan_fields(tenant_id, **self._plan_kwargs(form.cleaned_data))

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Nothing yet: the plan and its rules are written together in ``save_related``."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        p = request_principal(request)
        assert p is not None
        rules = [rule for fs in formsets if fs.model is CommissionRule for _form, rule in _rule_rows(fs)]
        data = form.cleaned_data
        kwargs = {**self._plan_kwargs(data), "rules": rules, "self_purchase": bool(data.get("self_purchase")),
                  "priority": data.get("priority") or 0}
        if change:
            plan, warnings = services.do_update_plan(p, form.instance.pk, is_active=bool(data.get("is_active")),
                                                     **kwargs)
        else:
            plan, warnings = services.do_create_plan(p, **kwargs)
            if not data.get("is_active", True):
                plan = services.do_set_plan_active(p, plan.pk, active=False)
        adopt(form.instance, plan)
        for fs in formsets:  # the rows were written by the service; the change message reads these
            fs.new_objects, fs.changed_objects, fs.deleted_objects = [], [], []
        for note in warnings:
            messages.warning(request, note)

    @admin.action(description=_("暂停"))
    def pause(self, request: HttpRequest, queryset: QuerySet[CommissionPlan]) -> None:
        p = request_principal(request)
        for plan in queryset:
            if p is not None:
                services.do_set_plan_active(p, plan.pk, active=False)

    @admin.action(description=_("恢复"))
    def resume(self, request: HttpRequest, queryset: QuerySet[CommissionPlan]) -> None:
        p = request_principal(request)
        for plan in queryset:
            if p is not None:
                services.do_set_plan_active(p, plan.pk, active=True)


@admin.register(Commission)
class CommissionAdmin(TenantScopedAdmin):
    permission_area = "referrals"
    read_only_model = True
    list_display = ("id", "referrer", "buyer_name", "order_id", "amount", "reversed", "state", "paid_at", "thaw_at",
                    "payer_tenant")
    list_filter = ("state",)
    search_fields = ("order_id", "buyer_name", "referrer__display_name")

    @admin.display(description=_("佣金(元)"), ordering="amount_fen")
    def amount(self, obj: Commission) -> str:
        return _yuan(obj.amount_fen)

    @admin.display(description=_("已退回(元)"))
    def reversed(self, obj: Commission) -> str:
        return _yuan(obj.reversed_fen)


class WithdrawalEventInline(TenantScopedTabularInline):
    model = WithdrawalEvent
    permission_area = "finance"
    read_only_model = True
    fields = ("from_status", "to_status", "actor", "note", "at")
    readonly_fields = fields
    extra = 0


@admin.register(Withdrawal)
class WithdrawalAdmin(WithdrawalPayoutActions, TenantScopedAdmin):
    permission_area = "finance"
    list_display = ("out_no", "member", "amount", "fee", "status", "provider", "requested_at")
    list_filter = ("status", "provider")
    search_fields = ("out_no", "provider_ref")
    readonly_fields = ("member", "out_no", "amount_fen", "fee_fen", "payee", "status", "provider", "provider_ref",
                       "failure_reason", "requested_at", "idempotency_key")
    inlines = [WithdrawalEventInline]
    actions = ["approve", "reject"]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        payout_provider_warning(request)
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("金额(元)"), ordering="amount_fen")
    def amount(self, obj: Withdrawal) -> str:
        return _yuan(obj.amount_fen)

    @admin.display(description=_("手续费(元)"))
    def fee(self, obj: Withdrawal) -> str:
        return _yuan(obj.fee_fen)

    def _each(self, request: HttpRequest, queryset: QuerySet[Withdrawal], fn: Any) -> None:
        principal = request_principal(request)
        if principal is None:
            return
        done = 0
        for w in queryset.filter(status=WithdrawalStatus.REQUESTED):
            try:
                fn(principal, w.pk)
                done += 1
            except ShequnError as exc:
                messages.error(request, f"{w.out_no}: {exc.message}")
        messages.info(request, _("已处理 %(n)d 笔") % {"n": done})

    @admin.action(description=_("审核通过并打款"), permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet[Withdrawal]) -> None:
        self._each(request, queryset, services.do_approve_withdrawal)

    @admin.action(description=_("驳回(退回余额)"), permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet[Withdrawal]) -> None:
        self._each(request, queryset, lambda p, pk: services.do_reject_withdrawal(p, pk, reason="后台驳回"))


@admin.register(FraudSignal)
class FraudSignalAdmin(TenantScopedAdmin):
    """The fraud review page: open signals first; clear releases held commission, confirm voids it."""

    permission_area = "referrals"
    list_display = ("created_at", "kind", "referrer", "subject_member_id", "order_id", "blocking", "status",
                    "reviewed_by")
    list_filter = ("status", "kind", "blocking")
    readonly_fields = ("kind", "referrer", "subject_member_id", "commission", "order_id", "detail", "blocking",
                       "status", "reviewed_by", "reviewed_at")
    actions = ["clear", "confirm"]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _review(self, request: HttpRequest, queryset: QuerySet[FraudSignal], decision: str) -> None:
        principal = request_principal(request)
        if principal is None:
            return
        for sig in queryset.filter(status=FraudStatus.OPEN):
            try:
                services.do_review_signal(principal, sig.pk, decision=decision)
            except ShequnError as exc:
                messages.error(request, exc.message)

    @admin.action(description=_("放行"), permissions=["change"])
    def clear(self, request: HttpRequest, queryset: QuerySet[FraudSignal]) -> None:
        self._review(request, queryset, FraudStatus.CLEARED)

    @admin.action(description=_("确认作弊(作废佣金)"), permissions=["change"])
    def confirm(self, request: HttpRequest, queryset: QuerySet[FraudSignal]) -> None:
        self._review(request, queryset, FraudStatus.CONFIRMED)


class FissionTaskForm(forms.ModelForm):  # type: ignore[type-arg]
    """The reward as a field per kind: points, cash in 元, a coupon template (not one number whose
    meaning depends on the kind)."""

    reward_points = forms.IntegerField(label=_("奖励积分"), min_value=1, max_value=10_000_000, required=False)
    reward_cash = YuanField(label=_("奖励现金(元)"), required=False)
    reward_coupon = forms.ModelChoiceField(label=_("奖励优惠券"), queryset=CouponTemplate.objects.none(),
                                           required=False)

    class Meta:
        model = FissionTask
        fields = ("name", "community", "campaign", "threshold", "reward_kind", "reward_note", "is_active")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tenant_id = self.instance.tenant_id
        self.fields["reward_coupon"].queryset = (  # type: ignore[attr-defined]
            CouponTemplate.objects.filter(tenant_id=tenant_id))
        kind, value = self.instance.reward_kind, self.instance.reward_value
        if kind == "points":
            self.fields["reward_points"].initial = value
        elif kind == "cash":
            self.fields["reward_cash"].initial = value
        elif kind == "coupon":
            self.fields["reward_coupon"].initial = value

    def reward_value(self) -> int:
        d = self.cleaned_data
        kind = d.get("reward_kind")
        if kind == "points":
            return int(d.get("reward_points") or 0)
        if kind == "cash":
            return int(d.get("reward_cash") or 0)
        if kind == "coupon":
            return int(d["reward_coupon"].pk) if d.get("reward_coupon") else 0
        return 0


@admin.register(FissionTask)
class FissionTaskAdmin(ServiceCreateMixin, TenantScopedAdmin):
    permission_area = "referrals"
    form = FissionTaskForm
    list_display = ("name", "community", "campaign", "threshold", "reward_kind", "reward_shown", "is_active")
    actions = ("pause", "resume")
    change_service = staticmethod(services.do_update_fission_task)
    change_check = staticmethod(services.check_update_fission_task)
    change_fields = ("name", "threshold", "reward_kind", "reward_value", "reward_note", "community_id", "campaign")

    def change_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        return {**super().change_kwargs(request, data), "is_active": bool(data.get("is_active"))}

    @admin.display(description=_("奖励"))
    def reward_shown(self, obj: FissionTask) -> str:
        if obj.reward_kind == "cash":
            return _yuan(obj.reward_value)
        if obj.reward_kind == "points":
            return _("%(n)d 积分") % {"n": obj.reward_value}
        if obj.reward_kind == "coupon":
            t = CouponTemplate.objects.filter(tenant_id=obj.tenant_id, pk=obj.reward_value).first()
            return str(t) if t else "-"
        return obj.reward_note

    def check_service(self, tenant_id: int, **kwargs: Any) -> None:
        services.check_fission_task(tenant_id, **kwargs)

    def create_service(self, principal: Any, **kwargs: Any) -> Any:
        return services.do_create_fission_task(principal, **kwargs)

    def service_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        form = data.get("_form")
        return {"name": data.get("name") or "", "threshold": data.get("threshold") or 0,
                "reward_kind": data.get("reward_kind") or "", "reward_value": form.reward_value() if form else 0,
                "reward_note": data.get("reward_note") or "",
                "community_id": getattr(data.get("community"), "pk", None), "campaign": data.get("campaign") or ""}

    def check_form(self, request: HttpRequest, form: Any) -> None:
        form.cleaned_data["_form"] = form
        try:
            try:
                super().check_form(request, form)
            except ShequnError as exc:
                if isinstance(exc.details, dict) and exc.details.get("field") == "reward_value":
                    kind = form.cleaned_data.get("reward_kind")
                    exc.details = {"field": {"cash": "reward_cash", "coupon": "reward_coupon"}.get(
                        str(kind), "reward_points")}
                raise
        finally:
            form.cleaned_data.pop("_form", None)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        form.cleaned_data["_form"] = form
        try:
            super().save_model(request, obj, form, change)
        finally:
            form.cleaned_data.pop("_form", None)

    @admin.action(description=_("暂停"))
    def pause(self, request: HttpRequest, queryset: QuerySet[FissionTask]) -> None:
        p = request_principal(request)
        for task in queryset:
            if p is not None:
                services.do_set_fission_task_active(p, task.pk, active=False)

    @admin.action(description=_("恢复"))
    def resume(self, request: HttpRequest, queryset: QuerySet[FissionTask]) -> None:
        p = request_principal(request)
        for task in queryset:
            if p is not None:
                services.do_set_fission_task_active(p, task.pk, active=True)


@admin.register(GiftShipment)
class GiftShipmentAdmin(TenantScopedAdmin):
    """The gift fulfilment queue: filter 待发货, open a row, enter the carrier and tracking number and
    save — saved through ``do_ship_gift`` (who shipped and when are recorded and audited)."""

    permission_area = "referrals"
    list_display = ("created_at", "gift", "member", "status", "recipient", "masked_phone", "carrier", "tracking_no",
                    "shipped_by", "shipped_at")
    list_filter = ("status",)
    search_fields = ("=tracking_no", "recipient")
    fields = ("gift", "member", "status", "recipient", "masked_phone", "address", "carrier", "tracking_no",
              "shipped_by", "shipped_at", "note")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # rows come from fission rewards

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        editable = ("carrier", "tracking_no") if obj is not None and obj.status == GiftShipment.Status.TO_SHIP else ()
        return tuple(f for f in self.fields if f not in editable)

    @admin.display(description=_("收件电话"))
    def masked_phone(self, obj: GiftShipment) -> str:
        return mask_phone(obj.phone) if obj.phone else ""

    def check_form(self, request: HttpRequest, form: Any) -> None:
        services.check_gift_shipping(form.cleaned_data.get("carrier", ""), form.cleaned_data.get("tracking_no", ""))

    def save_model(self, request: HttpRequest, obj: GiftShipment, form: Any, change: bool) -> None:
        principal = request_principal(request)
        if principal is None or not change:
            return
        try:
            services.do_ship_gift(principal, obj.pk, carrier=form.cleaned_data.get("carrier", ""),
                                  tracking_no=form.cleaned_data.get("tracking_no", ""))
        except ShequnError as exc:
            messages.error(request, exc.message)
