"""Payout settings and manual payouts from the console (real fields, no JSON) and the API: the same
services, the same errors; the sandbox is shown as demo-only."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from shequn.core.models import StaffRole, Tenant
from shequn.core.permissions import Principal
from shequn.core.services import do_create_operator
from shequn.referrals.models import ReferralPolicy, WeChatPayConfig, Withdrawal, WithdrawalStatus
from shequn.referrals.services import (
    do_approve_withdrawal,
    do_create_plan,
    do_get_or_create_link,
    do_request_withdrawal,
    on_order_event,
)
from shequn.testing.factories import MemberFactory, order_line, paid_event
from shequn.testing.scenarios import member_balance

from .wechatpay_fake import FakeWeChatPay


@pytest.fixture
def fake() -> Any:
    f = FakeWeChatPay()
    yield f
    f.close()


@pytest.fixture
def console(tenant: Tenant, client: Client) -> Client:
    staff = do_create_operator(tenant=tenant, username="fin", password="pw-123456", role=StaffRole.OWNER)
    client.force_login(staff.user)
    return client


def _manual_withdrawal(tenant: Tenant) -> tuple[Any, Withdrawal]:
    p = Principal.system(tenant.pk)
    ReferralPolicy.objects.update_or_create(tenant=tenant, defaults={"payout_provider": "manual",
                                                                     "withdrawal_approval_above_fen": 100})
    do_create_plan(p, name="p", refund_window_days=0, rules=[{"rate_bps": 10000}])
    a = MemberFactory(tenant=tenant, display_name="A")
    link = do_get_or_create_link(p, member_id=a.pk)
    on_order_event(paid_event(tenant, MemberFactory(tenant=tenant, display_name="X"), [order_line("entry", 1990)],
                              code=link.code))
    w = do_request_withdrawal(p, member_id=a.pk, amount_fen=1500, idempotency_key="k", payee="招商银行 尾号 1234")
    return a, do_approve_withdrawal(p, w.pk)


def test_console_wechatpay_form_has_real_fields_and_encrypts_the_keys(tenant: Tenant, console: Client,
                                                                      fake: FakeWeChatPay) -> None:
    add = "/console/referrals/wechatpayconfig/add/"
    page = console.get(add).content.decode()
    for name in ("mchid", "appid", "cert_serial_no", "public_key_id", "public_key", "private_key", "apiv3_key"):
        assert f'name="{name}"' in page
    assert 'type="password"' in page and "secrets_encrypted" not in page

    fields = fake.config_fields()
    bad = console.post(add, {**fields, "apiv3_key": "short"})
    assert bad.status_code == 200 and "APIv3 密钥必须是 32 个字符" in bad.content.decode()
    assert not WeChatPayConfig.objects.exists()

    resp = console.post(add, fields, follow=True)
    assert resp.status_code == 200
    config = WeChatPayConfig.objects.get()
    assert config.mchid == "1900000001" and "PRIVATE KEY" not in config.secrets_encrypted
    change = console.get(f"/console/referrals/wechatpayconfig/{config.pk}/change/").content.decode()
    assert "PRIVATE KEY" not in change and "0" * 32 not in change and "••••0000" in change
    # saving with the secret fields left empty keeps them
    console.post(f"/console/referrals/wechatpayconfig/{config.pk}/change/",
                 {**fields, "private_key": "", "apiv3_key": "", "mchid": "1900000002"})
    config.refresh_from_db()
    assert config.mchid == "1900000002" and config.secret_hints["apiv3_key"] == "••••0000"


def test_console_shows_the_sandbox_as_demo_only(tenant: Tenant, console: Client) -> None:
    page = console.get("/console/referrals/withdrawal/").content.decode()
    assert "仅用于演示" in page
    ReferralPolicy.objects.update_or_create(tenant=tenant, defaults={"payout_provider": "manual"})
    assert "仅用于演示" not in console.get("/console/referrals/withdrawal/").content.decode()


def test_console_records_a_manual_payout_with_its_reference(tenant: Tenant, console: Client) -> None:
    a, w = _manual_withdrawal(tenant)
    assert w.status == WithdrawalStatus.PROCESSING
    url = f"/console/referrals/withdrawal/{w.pk}/manual-paid/"
    page = console.get(url).content.decode()
    assert 'name="reference"' in page and "银行卡转账" in page and "15.00" in page
    bad = console.post(url, {"channel": "bank", "reference": "   "})
    assert bad.status_code == 200 and "必填" in bad.content.decode()
    w.refresh_from_db()
    assert w.status == WithdrawalStatus.PROCESSING
    console.post(url, {"channel": "bank", "reference": "BK20261204001", "note": ""})
    w.refresh_from_db()
    assert w.status == WithdrawalStatus.PAID and w.provider_ref == "BK20261204001"
    assert member_balance(tenant, a, "paid_out") == 1500


def test_api_payout_settings_and_manual_actions(tenant: Tenant, make_client: Any,
                                                fake: FakeWeChatPay) -> None:
    api = make_client(tenant, ["finance.write"])
    assert api.get("/api/v1/referrals/payouts/settings").json() == {"payout_provider": "sandbox", "wechatpay": None}
    refused = api.request("PUT", "/api/v1/referrals/payouts/provider", {"provider": "wechat"})
    assert refused.status_code == 422 and refused.json()["details"]["field"] == "payout_provider"
    bad = api.request("PUT", "/api/v1/referrals/payouts/wechatpay", {**fake.config_fields(), "mchid": "abc"})
    assert bad.status_code == 422 and bad.json()["details"]["field"] == "mchid"
    ok = api.request("PUT", "/api/v1/referrals/payouts/wechatpay", fake.config_fields())
    assert ok.status_code == 200 and ok.json()["wechatpay"]["secret_hints"]["apiv3_key"] == "••••0000"
    assert "PRIVATE" not in ok.content.decode()
    assert api.request("PUT", "/api/v1/referrals/payouts/provider", {"provider": "manual"}).json()[
        "payout_provider"] == "manual"

    a, w = _manual_withdrawal(tenant)
    base = f"/api/v1/referrals/payouts/withdrawals/{w.pk}"
    assert api.post(f"{base}/reconcile").json()["status"] == "processing"
    missing = api.post(f"{base}/manual-paid", {"channel": "bank"})
    assert missing.status_code == 422 and "reference" in missing.content.decode()
    done = api.post(f"{base}/manual-paid", {"channel": "alipay", "reference": "2026120422001400001"},
                    headers={"Idempotency-Key": "pay-1"})
    again = api.post(f"{base}/manual-paid", {"channel": "alipay", "reference": "2026120422001400001"},
                     headers={"Idempotency-Key": "pay-1"})
    assert done.status_code == again.status_code == 200 and done.json() == again.json()
    assert done.json()["status"] == "paid" and done.json()["provider_ref"] == "2026120422001400001"
    assert member_balance(tenant, a, "paid_out") == 1500
    assert api.post(f"{base}/manual-failed", {"reason": "迟到的失败"}).status_code == 409
