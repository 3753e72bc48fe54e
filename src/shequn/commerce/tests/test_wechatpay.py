"""WeChat Pay v3 through wechatpayv3 against a local server that speaks the documented API: RSA keys
generated here, responses and notifications signed with a local "platform" key, resources encrypted
with AES-256-GCM under the APIv3 key. Never the real host."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shequn.commerce import services
from shequn.commerce.gateways import BadSignature
from shequn.commerce.models import Payment, Refund
from shequn.core.errors import Invalid

from .conftest import sku

APIV3_KEY = "0123456789abcdef0123456789abcdef"


def _pem_private(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _pem_public(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


MERCHANT = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PLATFORM = rsa.generate_private_key(public_exponent=65537, key_size=2048)
INTRUDER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _sign(key, message: str) -> str:
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def signed_headers(body: str, key=PLATFORM) -> dict[str, str]:
    ts, nonce = str(int(time.time())), secrets.token_hex(8)
    return {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": _sign(key, f"{ts}\n{nonce}\n{body}\n"),
            "Wechatpay-Serial": "PUB_KEY_ID_TEST", "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}


def notification(resource: dict, event_type: str = "TRANSACTION.SUCCESS", key: str = APIV3_KEY) -> str:
    nonce = secrets.token_hex(6)
    ct = AESGCM(key.encode()).encrypt(nonce.encode(), json.dumps(resource).encode(), b"transaction")
    return json.dumps({
        "id": secrets.token_hex(8), "create_time": "2026-11-23T10:00:00+08:00", "resource_type": "encrypt-resource",
        "event_type": event_type, "summary": "支付成功",
        "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                     "ciphertext": base64.b64encode(ct).decode(), "associated_data": "transaction", "nonce": nonce},
    })


class FakeWeChatPay(BaseHTTPRequestHandler):
    trades: dict = {}
    refunds: dict = {}
    requests: list = []

    def log_message(self, *args):
        pass

    def _reply(self, code: int, data: dict):
        body = json.dumps(data)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for k, v in signed_headers(body).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body.encode())

    def _check_auth(self, body: str) -> bool:
        auth = self.headers.get("Authorization", "")
        parts = dict(p.split("=", 1) for p in auth.split(" ", 1)[1].split(","))
        parts = {k: v.strip('"') for k, v in parts.items()}
        msg = f"{self.command}\n{self.path}\n{parts['timestamp']}\n{parts['nonce_str']}\n{body}\n"
        try:
            MERCHANT.public_key().verify(base64.b64decode(parts["signature"]), msg.encode(), padding.PKCS1v15(),
                                         hashes.SHA256())
            return True
        except Exception:
            return False

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        if not self._check_auth(body):
            return self._reply(401, {"code": "SIGN_ERROR", "message": "签名错误"})
        data = json.loads(body)
        self.requests.append((self.path, data))
        if self.path.startswith("/v3/pay/transactions/"):
            self.trades[data["out_trade_no"]] = {"amount": data["amount"]["total"], "state": "NOTPAY"}
            kind = self.path.rsplit("/", 1)[1]
            return self._reply(200, {"native": {"code_url": "weixin://wxpay/bizpayurl?pr=test"},
                                     "jsapi": {"prepay_id": "wx2026prepay"},
                                     "h5": {"h5_url": "https://wx.tenpay.com/h5?x=1"}}[kind])
        if self.path == "/v3/refund/domestic/refunds":
            self.refunds[data["out_refund_no"]] = {"out_trade_no": data["out_trade_no"], "status": "PROCESSING",
                                                   "refund": data["amount"]["refund"], "total": data["amount"]["total"]}
            return self._reply(200, {"refund_id": "503000" + data["out_refund_no"][-6:], "status": "PROCESSING",
                                     "out_refund_no": data["out_refund_no"]})
        return self._reply(404, {"code": "NOT_FOUND", "message": "no"})

    def do_GET(self):
        if not self._check_auth(""):
            return self._reply(401, {"code": "SIGN_ERROR", "message": "签名错误"})
        self.requests.append((self.path, None))
        if self.path.startswith("/v3/pay/transactions/out-trade-no/"):
            no = self.path.split("/")[-1].split("?")[0]
            t = self.trades.get(no)
            if t is None:
                return self._reply(404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
            return self._reply(200, {"out_trade_no": no, "trade_state": t["state"], "transaction_id": "4200" + no[-8:],
                                     "amount": {"total": t["amount"], "currency": "CNY"}})
        if self.path.startswith("/v3/refund/domestic/refunds/"):
            no = self.path.split("/")[-1].split("?")[0]
            r = self.refunds.get(no)
            if r is None:
                return self._reply(404, {"code": "RESOURCE_NOT_EXISTS", "message": "退款单不存在"})
            return self._reply(200, {"refund_id": "503000" + no[-6:], "out_refund_no": no,
                                     "out_trade_no": r["out_trade_no"], "status": r["status"],
                                     "amount": {"refund": r["refund"], "total": r["total"], "currency": "CNY"}})
        return self._reply(404, {"code": "NOT_FOUND", "message": "no"})


@pytest.fixture
def wx(tenant):
    server = HTTPServer(("127.0.0.1", 0), FakeWeChatPay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeWeChatPay.trades = {}
    FakeWeChatPay.refunds = {}
    FakeWeChatPay.requests = []
    tenant.settings = {"payments": {"provider": "wechatpay", "wechatpay": {
        "mchid": "1900000109", "appid": "wxd678efh567hg6787", "apiv3_key": APIV3_KEY,
        "private_key": _pem_private(MERCHANT), "cert_serial_no": "444F4864EA9B34415",
        "public_key": _pem_public(PLATFORM), "public_key_id": "PUB_KEY_ID_TEST",
        "notify_url": "https://shop.example.com/api/v1/commerce/payments/callback/acme/wechatpay",
        "base_url": f"http://127.0.0.1:{server.server_address[1]}",
    }}}
    tenant.save()
    yield FakeWeChatPay
    server.shutdown()


def _paid_resource(p: Payment, amount=None) -> dict:
    return {"out_trade_no": p.out_trade_no, "transaction_id": "4200000001", "trade_state": "SUCCESS",
            "amount": {"total": p.amount_fen if amount is None else amount, "payer_total": p.amount_fen,
                       "currency": "CNY"}, "mchid": "1900000109", "appid": "wxd678efh567hg6787"}


def test_prepay_channels(system, member, product, wx):
    o = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    native = services.do_start_payment(system, o.pk, channel="native", idempotency_key="n")
    assert native.provider == "wechatpay" and native.prepay["code_url"].startswith("weixin://")
    js = services.do_start_payment(system, o.pk, channel="jsapi", payer_openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")
    assert js.prepay["package"] == "prepay_id=wx2026prepay" and js.prepay["paySign"]
    h5 = services.do_start_payment(system, o.pk, channel="h5", client_ip="1.2.3.4")
    assert h5.prepay["h5_url"].startswith("https://")
    path, sent = wx.requests[0]
    assert path == "/v3/pay/transactions/native" and sent["amount"] == {"total": 9900, "currency": "CNY"}
    with pytest.raises(Invalid):
        services.do_start_payment(system, o.pk, channel="jsapi")  # no openid


def test_notification_verified_decrypted_and_applied(system, member, product, wx, tenant):
    o = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    p = services.do_start_payment(system, o.pk, channel="native")
    body = notification(_paid_resource(p))
    # forged: signed by someone else's key
    with pytest.raises(BadSignature):
        services.do_handle_notification("wechatpay", signed_headers(body, INTRUDER), body.encode(),
                                        tenant_id=tenant.pk)
    # encrypted under another APIv3 key: decryption fails
    other = notification(_paid_resource(p), key="f" * 32)
    with pytest.raises(BadSignature):
        services.do_handle_notification("wechatpay", signed_headers(other), other.encode(), tenant_id=tenant.pk)
    # wrong amount, correctly signed
    wrong = notification(_paid_resource(p, amount=1))
    with pytest.raises(Invalid) as exc:
        services.do_handle_notification("wechatpay", signed_headers(wrong), wrong.encode(), tenant_id=tenant.pk)
    assert exc.value.code == "amount_mismatch"
    o.refresh_from_db()
    assert o.status == "created"
    headers = signed_headers(body)
    first = services.do_handle_notification("wechatpay", headers, body.encode(), tenant_id=tenant.pk)
    assert first["outcome"] == "paid"
    assert services.do_handle_notification("wechatpay", headers, body.encode(),
                                           tenant_id=tenant.pk)["outcome"] == "duplicate"
    o.refresh_from_db()
    assert o.status == "paid" and o.paid_fen == 9900
    # reconcile: the provider still says NOTPAY → reported; once it says SUCCESS → clean
    assert [d.kind for d in services.reconcile(tenant.pk)] == ["status_mismatch"]
    wx.trades[p.out_trade_no]["state"] = "SUCCESS"
    assert services.reconcile(tenant.pk) == []


def test_refund_processing_then_notified(system, member, product, wx, tenant):
    o = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    p = services.do_start_payment(system, o.pk, channel="native")
    body = notification(_paid_resource(p))
    services.do_handle_notification("wechatpay", signed_headers(body), body.encode(), tenant_id=tenant.pk)
    r = services.do_request_refund(system, o.pk, amount_fen=3000, idempotency_key="wx-r1")
    assert r.status == "pending"
    o.refresh_from_db()
    assert o.status == "refund_requested" and o.refunded_fen == 0
    res = {"out_trade_no": p.out_trade_no, "out_refund_no": r.out_refund_no, "refund_id": "503001",
           "refund_status": "SUCCESS", "amount": {"total": 9900, "refund": 3000, "payer_total": 9900,
                                                  "payer_refund": 3000}}
    rb = notification(res, event_type="REFUND.SUCCESS")
    assert services.do_handle_notification("wechatpay", signed_headers(rb), rb.encode(),
                                           tenant_id=tenant.pk)["outcome"] == "refunded"
    assert services.do_handle_notification("wechatpay", signed_headers(rb), rb.encode(),
                                           tenant_id=tenant.pk)["outcome"] == "duplicate"
    o.refresh_from_db()
    assert o.status == "partially_refunded" and o.refunded_fen == 3000
    assert Refund.objects.get(pk=r.pk).status == "succeeded"


def test_reconcile_queries_wechat_refunds(system, member, product, wx, tenant):
    """Refunds are reconciled against the provider's refund query, not only payments."""
    o = services.do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku(product).pk, "quantity": 1}])
    p = services.do_start_payment(system, o.pk, channel="native")
    body = notification(_paid_resource(p))
    services.do_handle_notification("wechatpay", signed_headers(body), body.encode(), tenant_id=tenant.pk)
    wx.trades[p.out_trade_no]["state"] = "SUCCESS"
    r = services.do_request_refund(system, o.pk, amount_fen=3000, idempotency_key="wx-recon")
    assert services.reconcile(tenant.pk) == []  # both sides: processing
    res = {"out_trade_no": p.out_trade_no, "out_refund_no": r.out_refund_no, "refund_id": "503001",
           "refund_status": "SUCCESS", "amount": {"total": 9900, "refund": 3000, "payer_total": 9900,
                                                  "payer_refund": 3000}}
    rb = notification(res, event_type="REFUND.SUCCESS")
    services.do_handle_notification("wechatpay", signed_headers(rb), rb.encode(), tenant_id=tenant.pk)
    # we booked the refund; the provider's refund query still says PROCESSING → reported
    diffs = services.reconcile(tenant.pk)
    assert [(d.kind, d.out_no) for d in diffs] == [("refund_mismatch", r.out_refund_no)]
    wx.refunds[r.out_refund_no]["status"] = "SUCCESS"
    assert services.reconcile(tenant.pk) == []
    wx.refunds[r.out_refund_no]["refund"] = 2000  # amounts differ
    assert [d.kind for d in services.reconcile(tenant.pk)] == ["refund_mismatch"]
    del wx.refunds[r.out_refund_no]  # the provider does not know a refund we booked
    assert [d.kind for d in services.reconcile(tenant.pk)] == ["refund_missing_at_provider"]
    assert any(path.startswith(f"/v3/refund/domestic/refunds/{r.out_refund_no}") for path, _ in wx.requests)
