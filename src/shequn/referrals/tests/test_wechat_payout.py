"""Payouts for real: the WeChat Pay merchant-transfer provider configured per tenant (keys encrypted
at rest), driven against recorded WeChat Pay responses served by a local server
(``wechatpay_fake.py``); the manual provider (staff record bank/Alipay transfers); reconciliation."""

from __future__ import annotations

from typing import Any

import pytest

from shequn.core import webhooks
from shequn.core.errors import Conflict, Invalid
from shequn.core.models import AuditLog, Tenant, WebhookEvent
from shequn.core.permissions import Principal
from shequn.core.testing import race
from shequn.ledger.services import check_ledger
from shequn.referrals.models import ReferralPolicy, WeChatPayConfig, WithdrawalStatus
from shequn.referrals.services import (
    do_create_plan,
    do_execute_payout,
    do_get_or_create_link,
    do_reconcile_withdrawal,
    do_reconcile_withdrawals,
    do_record_manual_payout,
    do_record_manual_payout_failed,
    do_request_withdrawal,
    do_save_wechatpay_config,
    do_set_payout_provider,
    on_order_event,
    payout_settings,
)
from shequn.testing.factories import MemberFactory, order_line, paid_event
from shequn.testing.scenarios import member_balance

from .wechatpay_fake import FakeWeChatPay


@pytest.fixture
def fake(settings: Any) -> Any:
    f = FakeWeChatPay()
    settings.SHEQUN = {**settings.SHEQUN, "WECHATPAY_GATEWAY": f.url}
    yield f
    f.close()


def _earner(tenant: Tenant, provider: str, fake: FakeWeChatPay | None = None) -> Any:
    """A member with 19.90 available (a 100% commission on a 19.90 tier), payouts via ``provider``."""
    p = Principal.system(tenant.pk)
    ReferralPolicy.objects.update_or_create(tenant=tenant, defaults={"withdrawal_approval_above_fen": 10**9})
    if fake is not None:
        do_save_wechatpay_config(p, **fake.config_fields())
    do_set_payout_provider(p, provider)
    do_create_plan(p, name="p", refund_window_days=0, rules=[{"rate_bps": 10000}])
    a = MemberFactory(tenant=tenant, display_name="A")
    link = do_get_or_create_link(p, member_id=a.pk)
    on_order_event(paid_event(tenant, MemberFactory(tenant=tenant, display_name="X"), [order_line("entry", 1990)],
                              code=link.code))
    return a


def test_wechat_keys_are_encrypted_at_rest_and_kept_when_left_empty(tenant: Tenant, fake: FakeWeChatPay) -> None:
    p = Principal.system(tenant.pk)
    fields = fake.config_fields()
    config = do_save_wechatpay_config(p, **fields)
    assert "PRIVATE KEY" not in config.secrets_encrypted and "0" * 32 not in config.secrets_encrypted
    body = "".join(x for x in fields["private_key"].splitlines() if not x.startswith("-----"))
    assert config.secret_hints == {"apiv3_key": "••••0000", "private_key": "••••" + body[-4:]}
    shown = payout_settings(tenant.pk)
    assert shown["wechatpay"]["mchid"] == "1900000001" and "PRIVATE" not in str(shown)
    # saving again with the secret fields empty keeps the stored secrets
    do_save_wechatpay_config(p, **{**fields, "private_key": "", "apiv3_key": "", "appid": "wx0000000002"})
    config = WeChatPayConfig.objects.get()
    assert config.appid == "wx0000000002" and config.secret_hints["apiv3_key"] == "••••0000"
    audit = AuditLog.objects.filter(action="referrals.wechatpay.save").order_by("pk").last()
    assert audit is not None and audit.data == {"changed": ["appid"]} and "PRIVATE" not in str(audit.data)


@pytest.mark.parametrize(("field", "value"), [
    ("mchid", "abc"), ("appid", "123"), ("cert_serial_no", "not-hex!"), ("apiv3_key", "short"),
    ("private_key", "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"), ("public_key", "garbage"),
])
def test_wechat_config_errors_name_the_field_and_store_nothing(tenant: Tenant, fake: FakeWeChatPay, field: str,
                                                               value: str) -> None:
    with pytest.raises(Invalid) as err:
        do_save_wechatpay_config(Principal.system(tenant.pk), **{**fake.config_fields(), field: value})
    assert err.value.details["field"] == field
    assert not WeChatPayConfig.objects.exists()


def test_wechat_cannot_be_chosen_before_it_is_configured(tenant: Tenant) -> None:
    with pytest.raises(Invalid) as err:
        do_set_payout_provider(Principal.system(tenant.pk), "wechat")
    assert err.value.details["field"] == "payout_provider"
    with pytest.raises(Invalid):
        do_set_payout_provider(Principal.system(tenant.pk), "paypal")


def test_wechat_transfer_is_idempotent_and_reconciled(tenant: Tenant, fake: FakeWeChatPay) -> None:
    a = _earner(tenant, "wechat", fake)
    p = Principal.system(tenant.pk)
    w = do_request_withdrawal(p, member_id=a.pk, amount_fen=1500, idempotency_key="k", payee="openid-A")
    assert w.status == WithdrawalStatus.PROCESSING and w.provider == "wechat"
    [post] = fake.posts
    assert post["path"] == "/v3/transfer/batches"
    assert 'mchid="1900000001"' in post["authorization"] and "5157F09EFDC096DE15EBE81A47057A72" in post["authorization"]
    assert post["body"]["total_amount"] == 1500 and post["body"]["transfer_detail_list"][0]["openid"] == "openid-A"
    assert post["body"]["appid"] == "wx0000000001"

    do_execute_payout(tenant.pk, w.pk)  # no longer "approved": nothing is sent again
    assert len(fake.posts) == 1
    assert do_reconcile_withdrawals(tenant.pk) == 0  # WeChat Pay still says PROCESSING
    fake.status = "detail_success"
    assert do_reconcile_withdrawals(tenant.pk) == 1
    w.refresh_from_db()
    assert w.status == WithdrawalStatus.PAID and w.provider_ref == "1040000071100999991182020050700019500100"
    assert member_balance(tenant, a, "paid_out") == 1500 and member_balance(tenant, a, "withdrawing") == 0
    assert member_balance(tenant, a, "available") == 490
    assert do_reconcile_withdrawals(tenant.pk) == 0  # paid stays paid
    assert check_ledger(tenant.pk).ok


def test_wechat_failed_transfer_returns_the_money_to_the_member(tenant: Tenant, fake: FakeWeChatPay) -> None:
    a = _earner(tenant, "wechat", fake)
    p = Principal.system(tenant.pk)
    w = do_request_withdrawal(p, member_id=a.pk, amount_fen=1500, idempotency_key="k", payee="openid-A")
    assert member_balance(tenant, a, "available") == 490
    fake.status = "detail_fail"
    w = do_reconcile_withdrawal(p, w.pk)  # staff "reconcile now"
    assert w.status == WithdrawalStatus.REVERSED and w.failure_reason == "ACCOUNT_FROZEN"
    assert member_balance(tenant, a, "available") == 1990 and member_balance(tenant, a, "withdrawing") == 0
    assert check_ledger(tenant.pk).ok
    assert AuditLog.objects.filter(action="referrals.withdrawal.reconcile", object_id=str(w.pk)).exists()


def test_wechat_refused_batch_fails_at_once_and_unknown_sent_transfer_fails_on_reconcile(
        tenant: Tenant, fake: FakeWeChatPay) -> None:
    a = _earner(tenant, "wechat", fake)
    p = Principal.system(tenant.pk)
    fake.batch_reply = "batch_not_enough"
    w = do_request_withdrawal(p, member_id=a.pk, amount_fen=1000, idempotency_key="k1", payee="openid-A")
    assert w.status == WithdrawalStatus.REVERSED and "NOT_ENOUGH" in w.failure_reason
    assert member_balance(tenant, a, "available") == 1990

    fake.batch_reply = "batch_accepted"
    w2 = do_request_withdrawal(p, member_id=a.pk, amount_fen=1000, idempotency_key="k2", payee="openid-A")
    fake.batches.clear()  # WeChat Pay has no record of a batch we sent
    assert do_reconcile_withdrawals(tenant.pk) == 1
    w2.refresh_from_db()
    assert w2.status == WithdrawalStatus.REVERSED and member_balance(tenant, a, "available") == 1990
    assert check_ledger(tenant.pk).ok


def test_unconfigured_wechat_keeps_the_withdrawal_approved(tenant: Tenant, fake: FakeWeChatPay) -> None:
    a = _earner(tenant, "wechat", fake)
    WeChatPayConfig.objects.all().delete()  # e.g. removed after choosing it
    w = do_request_withdrawal(Principal.system(tenant.pk), member_id=a.pk, amount_fen=1000, idempotency_key="k",
                              payee="o")
    assert w.status == WithdrawalStatus.APPROVED and fake.posts == []
    assert do_reconcile_withdrawals(tenant.pk) == 0 and member_balance(tenant, a, "withdrawing") == 1000


def test_manual_payout_recorded_by_staff_with_a_reference(tenant: Tenant) -> None:
    p = Principal.system(tenant.pk)
    webhooks.do_create_endpoint(p, url="https://erp.invalid/hook",
                                event_types=["commission.available", "withdrawal.paid"])
    a = _earner(tenant, "manual")
    [available] = WebhookEvent.objects.filter(type="commission.available")
    assert available.data["member_id"] == a.pk and available.data["amount_fen"] == 1990
    w = do_request_withdrawal(p, member_id=a.pk, amount_fen=1500, idempotency_key="k", payee="招商银行 尾号 1234")
    assert w.status == WithdrawalStatus.PROCESSING  # waiting for staff to transfer
    assert do_reconcile_withdrawals(tenant.pk) == 0  # reconciliation leaves a manual payout to staff

    with pytest.raises(Invalid) as err:
        do_record_manual_payout(p, w.pk, channel="bank", reference="  ")
    assert err.value.details["field"] == "reference"
    with pytest.raises(Invalid) as err:
        do_record_manual_payout(p, w.pk, channel="cash", reference="R1")
    assert err.value.details["field"] == "channel"

    w = do_record_manual_payout(p, w.pk, channel="alipay", reference="2026120422001400001", note="已电话确认")
    assert w.status == WithdrawalStatus.PAID and w.provider_ref == "2026120422001400001"
    assert member_balance(tenant, a, "paid_out") == 1500 and member_balance(tenant, a, "withdrawing") == 0
    note = w.trail.get(to_status=WithdrawalStatus.PAID).note
    assert "支付宝转账" in note and "2026120422001400001" in note
    with pytest.raises(Conflict):  # a second submit does not pay twice
        do_record_manual_payout(p, w.pk, channel="alipay", reference="2026120422001400001")
    assert member_balance(tenant, a, "paid_out") == 1500
    [announced] = WebhookEvent.objects.filter(type="withdrawal.paid")
    assert announced.data["withdrawal_id"] == w.pk and announced.data["provider_ref"] == "2026120422001400001"
    assert check_ledger(tenant.pk).ok


def test_manual_payout_failure_returns_the_money_and_other_providers_refuse_manual_marks(
        tenant: Tenant, fake: FakeWeChatPay) -> None:
    a = _earner(tenant, "manual")
    p = Principal.system(tenant.pk)
    w = do_request_withdrawal(p, member_id=a.pk, amount_fen=1500, idempotency_key="k", payee="bank")
    with pytest.raises(Invalid):
        do_record_manual_payout_failed(p, w.pk, reason="")
    w = do_record_manual_payout_failed(p, w.pk, reason="户名与账号不符")
    assert w.status == WithdrawalStatus.REVERSED and member_balance(tenant, a, "available") == 1990

    do_save_wechatpay_config(p, **fake.config_fields())
    do_set_payout_provider(p, "wechat")
    w2 = do_request_withdrawal(p, member_id=a.pk, amount_fen=1000, idempotency_key="k2", payee="openid-A")
    with pytest.raises(Conflict) as err:
        do_record_manual_payout(p, w2.pk, channel="bank", reference="R")
    assert err.value.code == "not_manual"
    assert check_ledger(tenant.pk).ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_manual_records_and_reconciles_pay_once(fake: FakeWeChatPay) -> None:
    """Staff double-clicking "record" while the reconcile job runs: one payout, one ledger posting."""
    tenant = Tenant.objects.create(slug="pay", name="打款")
    a = _earner(tenant, "manual")
    p = Principal.system(tenant.pk)
    w = do_request_withdrawal(p, member_id=a.pk, amount_fen=1500, idempotency_key="k", payee="bank")

    def worker(i: int) -> object:
        if i % 2:
            return do_reconcile_withdrawals(tenant.pk)
        return do_record_manual_payout(p, w.pk, channel="bank", reference=f"R{i}").status

    results = race(worker, 8)
    paid_ok = [r for r in results if r == WithdrawalStatus.PAID]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(paid_ok) == 1 and len(refused) == 3, results
    assert member_balance(tenant, a, "paid_out") == 1500 and member_balance(tenant, a, "withdrawing") == 0
    assert check_ledger(tenant.pk).ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_reconciles_of_a_failed_wechat_transfer_refund_once(fake: FakeWeChatPay) -> None:
    tenant = Tenant.objects.create(slug="wx", name="微信打款")
    a = _earner(tenant, "wechat", fake)
    w = do_request_withdrawal(Principal.system(tenant.pk), member_id=a.pk, amount_fen=1500, idempotency_key="k",
                              payee="o")
    fake.status = "detail_fail"
    changed = race(lambda _i: do_reconcile_withdrawals(tenant.pk), 6)
    assert not [c for c in changed if isinstance(c, Exception)], changed
    w.refresh_from_db()
    assert sum(c for c in changed if isinstance(c, int)) == 1 and w.status == WithdrawalStatus.REVERSED
    assert member_balance(tenant, a, "available") == 1990 and member_balance(tenant, a, "withdrawing") == 0
    assert check_ledger(tenant.pk).ok
