# mypy: disable-error-code="untyped-decorator,no-any-return"
"""Console pages for real payouts: the tenant's WeChat Pay merchant configuration (real fields; the
private key and APIv3 key are write-only and encrypted at rest), and on each withdrawal "reconcile
now", "record manual transfer" (bank/Alipay with a reference number) and "record failed transfer".
Every form calls the same services as the API and shows the same errors (area ``finance``)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from unfold.decorators import action
from unfold.widgets import UnfoldAdminSelectWidget, UnfoldAdminTextareaWidget, UnfoldAdminTextInputWidget

from shequn.core.admin_base import TenantScopedAdmin, can, confirm_first, request_principal, request_tenant_id
from shequn.core.errors import ShequnError

from . import services
from .models import PayoutProviderName, WeChatPayConfig, Withdrawal, WithdrawalStatus


class WeChatPayConfigForm(forms.ModelForm):  # type: ignore[type-arg]
    private_key = forms.CharField(
        label=_("商户 API 私钥 (apiclient_key.pem)"), required=False,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 6, "autocomplete": "off"}),
        help_text=_("粘贴文件的全部内容; 加密保存, 不再显示。留空表示不修改"))
    apiv3_key = forms.CharField(
        label=_("APIv3 密钥"), required=False,
        widget=forms.PasswordInput(render_value=False, attrs={
            "autocomplete": "new-password", "class": UnfoldAdminTextInputWidget().attrs.get("class", "")}),
        help_text=_("32 个字符; 加密保存, 不再显示。留空表示不修改"))

    class Meta:
        model = WeChatPayConfig
        fields = ("mchid", "appid", "cert_serial_no", "public_key_id", "public_key")
        widgets = {"public_key": UnfoldAdminTextareaWidget(attrs={"rows": 6})}
        help_texts = {"public_key": _("商户平台 → API 安全 → 微信支付公钥, 下载的 pub_key.pem 全部内容")}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hints = dict(getattr(self.instance, "secret_hints", None) or {})
        for name in ("private_key", "apiv3_key"):
            if hints.get(name):
                self.fields[name].help_text = gettext("已保存 %(h)s; 留空表示不修改") % {"h": hints[name]}


@admin.register(WeChatPayConfig)
class WeChatPayConfigAdmin(TenantScopedAdmin):
    permission_area = "finance"
    audit_writes = False  # the service audits (names of changed fields only)
    form = WeChatPayConfigForm
    list_display = ("mchid", "appid", "cert_serial_no", "public_key_id", "updated_at")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        tenant_id = request_tenant_id(request)
        exists = tenant_id is not None and WeChatPayConfig.objects.filter(tenant_id=tenant_id).exists()
        return super().has_add_permission(request) and not exists

    def check_form(self, request: HttpRequest, form: Any) -> None:
        data = form.cleaned_data
        services.check_wechatpay_config(
            mchid=data.get("mchid", ""), appid=data.get("appid", ""), cert_serial_no=data.get("cert_serial_no", ""),
            public_key_id=data.get("public_key_id", ""), public_key=data.get("public_key", ""),
            private_key=data.get("private_key", ""), apiv3_key=data.get("apiv3_key", ""),
            has_stored_secrets=bool(form.instance.pk and form.instance.secrets_encrypted))

    def save_model(self, request: HttpRequest, obj: WeChatPayConfig, form: Any, change: bool) -> None:
        principal = request_principal(request)
        assert principal is not None
        data = form.cleaned_data
        saved = services.do_save_wechatpay_config(
            principal, mchid=data["mchid"], appid=data["appid"], cert_serial_no=data["cert_serial_no"],
            public_key_id=data["public_key_id"], public_key=data["public_key"],
            private_key=data.get("private_key", ""), apiv3_key=data.get("apiv3_key", ""))
        obj.__dict__.update(saved.__dict__)
        messages.success(request, gettext("微信支付商户配置已保存; 密钥已加密存储。"
                                          "在「分销规则」中把打款渠道设为微信支付即可启用"))


class ManualPayoutForm(forms.Form):
    channel = forms.ChoiceField(label=_("打款方式"), choices=list(services.MANUAL_CHANNELS.items()),
                                widget=UnfoldAdminSelectWidget)
    reference = forms.CharField(label=_("转账流水号"), max_length=128, widget=UnfoldAdminTextInputWidget,
                                help_text=_("银行回单或支付宝转账的流水号, 用于对账"))
    note = forms.CharField(label=_("备注"), max_length=120, required=False, widget=UnfoldAdminTextInputWidget)


class ManualFailureForm(forms.Form):
    reason = forms.CharField(label=_("失败原因"), max_length=255, widget=UnfoldAdminTextInputWidget,
                             help_text=_("例如: 户名与账号不符。金额将退回会员的可提现余额"))


class WithdrawalPayoutActions:
    """Detail-page buttons of the withdrawal admin (mixed into ``WithdrawalAdmin``)."""

    actions_detail = ["reconcile_row", "manual_paid_row", "manual_failed_row"]

    def has_payout_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can(request, "finance.write")

    def _withdrawal(self, request: HttpRequest, object_id: Any) -> Withdrawal | None:
        return self.get_queryset(request).filter(pk=int(object_id)).first()  # type: ignore[attr-defined]

    def _detail(self, object_id: Any) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:referrals_withdrawal_change", args=[int(object_id)]))

    @action(description=_("向渠道对账"), url_path="reconcile", permissions=["payout"])
    @confirm_first
    def reconcile_row(self, request: HttpRequest, object_id: int) -> HttpResponse:
        w = self._withdrawal(request, object_id)
        principal = request_principal(request)
        if w is not None and principal is not None:
            try:
                after = services.do_reconcile_withdrawal(principal, w.pk)
                messages.info(request, gettext("对账完成, 当前状态: %(s)s") % {"s": after.get_status_display()})
            except ShequnError as exc:
                messages.error(request, exc.message)
        return self._detail(object_id)

    def _manual_page(self, request: HttpRequest, object_id: int, form_class: type[forms.Form], *, title: str,
                     submit: str, run: Any) -> HttpResponse:
        w = self._withdrawal(request, object_id)
        principal = request_principal(request)
        if w is None or principal is None:
            return self._detail(object_id)
        if w.provider != PayoutProviderName.MANUAL or w.status not in (WithdrawalStatus.APPROVED,
                                                                      WithdrawalStatus.PROCESSING):
            messages.error(request, gettext("只有人工打款渠道、已审核或处理中的提现可以手工登记"))
            return self._detail(object_id)
        form = form_class(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                run(principal, w.pk, form.cleaned_data)
                messages.success(request, gettext("已登记"))
                return self._detail(object_id)
            except ShequnError as exc:
                field = (exc.details or {}).get("field") if isinstance(exc.details, dict) else None
                form.add_error(field if field in form.fields else None, exc.message)
        ctx = {**self.admin_site.each_context(request), "title": title, "form": form,  # type: ignore[attr-defined]
               "withdrawal": w, "net_yuan": f"{(w.amount_fen - w.fee_fen) / 100:,.2f}", "submit_label": submit,
               "back_url": reverse("admin:referrals_withdrawal_change", args=[w.pk]),
               "opts": Withdrawal._meta}
        return TemplateResponse(request, "referrals/admin/manual_payout.html", ctx)

    @action(description=_("登记人工打款"), url_path="manual-paid", permissions=["payout"])
    def manual_paid_row(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return self._manual_page(
            request, object_id, ManualPayoutForm, title=gettext("登记人工打款"), submit=gettext("确认已打款"),
            run=lambda p, pk, d: services.do_record_manual_payout(p, pk, channel=d["channel"],
                                                                  reference=d["reference"], note=d.get("note", "")))

    @action(description=_("登记打款失败"), url_path="manual-failed", permissions=["payout"])
    def manual_failed_row(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return self._manual_page(
            request, object_id, ManualFailureForm, title=gettext("登记打款失败"), submit=gettext("确认失败并退回余额"),
            run=lambda p, pk, d: services.do_record_manual_payout_failed(p, pk, reason=d["reason"]))


def payout_provider_warning(request: HttpRequest) -> None:
    """The sandbox is demo-only: say so wherever withdrawals are handled."""
    tenant_id = request_tenant_id(request)
    if tenant_id is not None and services.get_policy(tenant_id).payout_provider == PayoutProviderName.SANDBOX:
        messages.warning(request, gettext("当前打款渠道是「沙箱」: 仅用于演示, 提现不会真实到账。"
                                          "请在「分销规则」中改为微信支付或人工打款"))


__all__ = ["WeChatPayConfigAdmin", "WithdrawalPayoutActions", "admin", "payout_provider_warning"]
