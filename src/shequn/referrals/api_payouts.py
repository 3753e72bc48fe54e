"""REST API of payouts (mounted at ``/api/v1/referrals/payouts``): the payout provider, the tenant's
WeChat Pay merchant configuration (secrets write-only), and staff actions on a withdrawal —
reconcile with the provider, record a manual transfer (bank/Alipay reference), record a failure.
Reading needs ``finance.read``, changing ``finance.write``."""

from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Router, Schema

from shequn.core.http import ERRORS, BodyIn, Id, idempotent, max_len, require

from . import services
from .models import PayoutProviderName, WeChatPayConfig, Withdrawal, WithdrawalEvent

router = Router(tags=["referrals"])

Provider = Literal["wechat", "manual", "sandbox"]
assert set(Provider.__args__) == set(PayoutProviderName.values)  # type: ignore[attr-defined]


class WeChatPayOut(Schema):
    mchid: str
    appid: str
    cert_serial_no: str
    public_key_id: str
    secret_hints: dict[str, str] = Field(description="last characters of the stored private key / APIv3 key")
    updated_at: datetime


class PayoutSettingsOut(Schema):
    payout_provider: str = Field(description="wechat | manual | sandbox (demo only: pays nothing)")
    wechatpay: WeChatPayOut | None


class ProviderIn(BodyIn):
    provider: Provider


class WeChatPayIn(BodyIn):
    mchid: str = Field(min_length=1, max_length=max_len(WeChatPayConfig, "mchid"))
    appid: str = Field(min_length=1, max_length=max_len(WeChatPayConfig, "appid"))
    cert_serial_no: str = Field(min_length=1, max_length=max_len(WeChatPayConfig, "cert_serial_no"))
    public_key_id: str = Field(min_length=1, max_length=max_len(WeChatPayConfig, "public_key_id"))
    public_key: str = Field(min_length=1, max_length=8000, description="WeChat Pay public key (PEM)")
    private_key: str = Field("", max_length=8000, description="merchant API private key (PEM); empty: keep stored")
    apiv3_key: str = Field("", max_length=64, description="APIv3 key (32 characters); empty: keep stored")


class PayoutWithdrawalOut(Schema):
    id: int
    member_id: int
    out_no: str
    amount_fen: int
    fee_fen: int
    status: str
    provider: str
    provider_ref: str
    failure_reason: str
    requested_at: datetime


class ManualPaidIn(BodyIn):
    channel: Literal["bank", "alipay", "other"]
    reference: str = Field(min_length=1, max_length=max_len(Withdrawal, "provider_ref"),
                           description="the transfer's reference number (bank or Alipay)")
    note: str = Field("", max_length=120)


class ManualFailedIn(BodyIn):
    reason: str = Field(min_length=1, max_length=max_len(Withdrawal, "failure_reason"))


assert max_len(WithdrawalEvent, "note") >= 120


def _settings(tenant_id: int) -> dict[str, Any]:
    return services.payout_settings(tenant_id)


@router.get("/settings", response={200: PayoutSettingsOut, **ERRORS}, summary="打款设置")
def get_settings(request: HttpRequest) -> Any:
    p = require(request, "finance.read")
    return _settings(p.tenant_id)


@router.put("/provider", response={200: PayoutSettingsOut, **ERRORS}, summary="选择打款渠道")
def set_provider(request: HttpRequest, payload: ProviderIn) -> Any:
    p = require(request, "finance.write")
    services.do_set_payout_provider(p, payload.provider)
    return _settings(p.tenant_id)


@router.put("/wechatpay", response={200: PayoutSettingsOut, **ERRORS}, summary="保存微信支付商户配置")
def save_wechatpay(request: HttpRequest, payload: WeChatPayIn) -> Any:
    p = require(request, "finance.write")
    services.do_save_wechatpay_config(p, **payload.model_dump())
    return _settings(p.tenant_id)


@router.post("/withdrawals/{withdrawal_id}/reconcile", response={200: PayoutWithdrawalOut, **ERRORS},
             summary="向打款渠道对账")
@idempotent
def reconcile(request: HttpRequest, withdrawal_id: Id) -> Any:
    p = require(request, "finance.write")
    return services.do_reconcile_withdrawal(p, withdrawal_id)


@router.post("/withdrawals/{withdrawal_id}/manual-paid", response={200: PayoutWithdrawalOut, **ERRORS},
             summary="登记人工打款")
@idempotent
def manual_paid(request: HttpRequest, withdrawal_id: Id, payload: ManualPaidIn) -> Any:
    p = require(request, "finance.write")
    return services.do_record_manual_payout(p, withdrawal_id, channel=payload.channel, reference=payload.reference,
                                            note=payload.note)


@router.post("/withdrawals/{withdrawal_id}/manual-failed", response={200: PayoutWithdrawalOut, **ERRORS},
             summary="登记打款失败")
@idempotent
def manual_failed(request: HttpRequest, withdrawal_id: Id, payload: ManualFailedIn) -> Any:
    p = require(request, "finance.write")
    return services.do_record_manual_payout_failed(p, withdrawal_id, reason=payload.reason)
