"""The WeChat Pay merchant-transfer provider against a local fake of the v3 API (signed responses)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from base64 import b64encode
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256
from wechatpayv3 import WeChatPay, WeChatPayType

from shequn.ledger.services import check_ledger
from shequn.referrals.models import ReferralPolicy, WithdrawalStatus
from shequn.referrals.payouts import WeChatTransferProvider, register_payout_provider
from shequn.referrals.services import (
    do_create_plan,
    do_execute_payout,
    do_get_or_create_link,
    do_reconcile_withdrawals,
    do_request_withdrawal,
    on_order_event,
)

from .factories import bal, line, member, paid, principal

PUBKEY_ID = "PUB_KEY_ID_0000000001"


def _pem_private(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _pem_public(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class FakeWeChatPay:
    def __init__(self):
        self.platform_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.batches: dict[str, dict] = {}
        self.posts = 0
        self.status = "PROCESSING"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, payload):
                body = json.dumps(payload)
                ts, nonce = str(int(time.time())), secrets.token_hex(8)
                sig = b64encode(fake.platform_key.sign(f"{ts}\n{nonce}\n{body}\n".encode(), PKCS1v15(), SHA256()))
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Wechatpay-Timestamp", ts)
                self.send_header("Wechatpay-Nonce", nonce)
                self.send_header("Wechatpay-Signature", sig.decode())
                self.send_header("Wechatpay-Serial", PUBKEY_ID)
                self.send_header("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048")
                self.end_headers()
                self.wfile.write(body.encode())

            def do_POST(self):
                assert self.headers["Authorization"].startswith("WECHATPAY2-SHA256-RSA2048")
                data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.posts += 1
                if data["out_batch_no"] in fake.batches:
                    return self._send(400, {"code": "ALREADY_EXISTS", "message": "批次已存在"})
                fake.batches[data["out_batch_no"]] = data
                self._send(200, {"out_batch_no": data["out_batch_no"], "batch_id": "B" + data["out_batch_no"]})

            def do_GET(self):
                parts = self.path.split("/")
                out_batch, out_detail = parts[5], parts[-1]
                if out_batch not in fake.batches:
                    return self._send(404, {"code": "NOT_FOUND", "message": "记录不存在"})
                self._send(200, {"out_detail_no": out_detail, "detail_id": "D" + out_detail,
                                 "detail_status": fake.status})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def client(self):
        merchant_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        client = WeChatPay(wechatpay_type=WeChatPayType.MINIPROG, mchid="1900000001",
                           private_key=_pem_private(merchant_key), cert_serial_no="SERIAL01", appid="wx0000000001",
                           apiv3_key="0" * 32, public_key=_pem_public(self.platform_key), public_key_id=PUBKEY_ID)
        client._core._gate_way = self.url  # the fake instead of api.mch.weixin.qq.com
        return client


@pytest.fixture
def fake():
    f = FakeWeChatPay()
    yield f
    f.server.shutdown()


def test_wechat_transfer_is_idempotent_and_reconciled(tenant, fake):
    provider = WeChatTransferProvider(fake.client(), appid="wx0000000001")
    register_payout_provider("wechat", lambda: provider)
    ReferralPolicy.objects.create(tenant=tenant, payout_provider="wechat", withdrawal_approval_above_fen=10**9)
    p = principal(tenant)
    do_create_plan(p, name="p", refund_window_days=0, rules=[{"rate_bps": 10000}])
    a = member(tenant, "A")
    link = do_get_or_create_link(p, member_id=a.pk)
    on_order_event(paid(tenant, member(tenant, "X"), [line("entry", 1990)], code=link.code))

    w = do_request_withdrawal(p, member_id=a.pk, amount_fen=1500, idempotency_key="k", payee="openid-A")
    assert w.status == WithdrawalStatus.PROCESSING
    batch = fake.batches[w.out_no]
    assert batch["total_amount"] == 1500 and batch["transfer_detail_list"][0]["openid"] == "openid-A"

    # a retried transfer with the same out_no does not create a second batch
    assert provider.transfer(out_no=w.out_no, payee="openid-A", amount_fen=1500, memo="x").status == "processing"
    assert len(fake.batches) == 1
    do_execute_payout(tenant.pk, w.pk)  # not "approved" any more: nothing sent
    assert fake.posts == 2

    assert do_reconcile_withdrawals(tenant.pk) == 0  # still processing at WeChat Pay
    fake.status = "SUCCESS"
    assert do_reconcile_withdrawals(tenant.pk) == 1
    w.refresh_from_db()
    assert w.status == WithdrawalStatus.PAID and w.provider_ref == "D" + w.out_no
    assert bal(tenant, a, "paid_out") == 1500 and bal(tenant, a, "withdrawing") == 0
    assert check_ledger(tenant.pk).ok


def test_wechat_failed_transfer_is_reversed(tenant, fake):
    provider = WeChatTransferProvider(fake.client(), appid="wx0000000001")
    register_payout_provider("wechat", lambda: provider)
    ReferralPolicy.objects.create(tenant=tenant, payout_provider="wechat", withdrawal_approval_above_fen=10**9)
    p = principal(tenant)
    do_create_plan(p, name="p", refund_window_days=0, rules=[{"rate_bps": 10000}])
    a = member(tenant, "A")
    link = do_get_or_create_link(p, member_id=a.pk)
    on_order_event(paid(tenant, member(tenant, "X"), [line("entry", 1990)], code=link.code))
    w = do_request_withdrawal(p, member_id=a.pk, amount_fen=1500, idempotency_key="k", payee="openid-A")
    fake.status = "FAIL"
    assert do_reconcile_withdrawals(tenant.pk) == 1
    w.refresh_from_db()
    assert w.status == WithdrawalStatus.REVERSED
    assert bal(tenant, a, "available") == 1990
