"""WeChat Pay from the checkout pages, through commerce's gateway (wechatpayv3) against the local
WeChat Pay server of commerce's tests (documented API, responses signed with a local platform key)
and a recorded WeChat OAuth exchange served locally: H5 outside WeChat, JSAPI inside it with the
openid from WeChat sign-in, the notify URL on SHEQUN_PUBLIC_BASE_URL, and the notification paying
the order. No external host is reached."""

from __future__ import annotations

import json
import re
import threading
from http.server import HTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from django.test import Client
from django.urls import reverse

from shequn.commerce.models import Order, OrderStatus, Payment, TierGrant
from shequn.commerce.tests.test_wechatpay import (
    APIV3_KEY,
    MERCHANT,
    PLATFORM,
    FakeWeChatPay,
    _pem_private,
    _pem_public,
    notification,
    signed_headers,
)
from shequn.core.permissions import Principal
from shequn.members.models import Member
from shequn.portal.services import do_configure_wechat_login

from .test_pages import sign_in
from .test_signin import _RecordedWeChat

IN_WECHAT = {"HTTP_USER_AGENT": "Mozilla/5.0 (iPhone) AppleWebKit MicroMessenger/8.0.50 NetType/WIFI"}
SAFARI = {"HTTP_USER_AGENT": "Mozilla/5.0 (iPhone) AppleWebKit Version/17.0 Mobile Safari"}
PUBLIC = "https://m.example.com"


@pytest.fixture
def wxpay(world, settings):
    settings.SHEQUN = {**settings.SHEQUN, "PUBLIC_BASE_URL": PUBLIC}
    server = HTTPServer(("127.0.0.1", 0), FakeWeChatPay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeWeChatPay.trades, FakeWeChatPay.refunds, FakeWeChatPay.requests = {}, {}, []
    world.tenant.settings = {"payments": {"provider": "wechatpay", "wechatpay": {  # no notify_url: the default
        "mchid": "1900000109", "appid": "wxd678efh567hg6787", "apiv3_key": APIV3_KEY,
        "private_key": _pem_private(MERCHANT), "cert_serial_no": "444F4864EA9B34415",
        "public_key": _pem_public(PLATFORM), "public_key_id": "PUB_KEY_ID_TEST",
        "base_url": f"http://127.0.0.1:{server.server_address[1]}",
    }}}
    world.tenant.save()
    yield FakeWeChatPay
    server.shutdown()
    server.server_close()


def _order(client: Client, world) -> Order:
    sku = world.entry.skus.get()
    assert client.post(reverse("portal:buy", args=[world.tenant.slug, sku.pk]), {"token": "w1"}).status_code == 302
    return Order.objects.order_by("-pk").first()


def test_h5_outside_wechat_then_jsapi_inside_with_the_openid_from_wechat_sign_in(world, wxpay):
    slug = world.tenant.slug
    client = Client()
    alice = sign_in(client, world, "13800000001")
    order = _order(client, world)
    pay_url = reverse("portal:pay", args=[slug, order.pk])
    order_url = reverse("portal:order", args=[slug, order.pk])
    notify = f"{PUBLIC}/api/v1/commerce/payments/callback/{slug}/wechatpay"

    # outside WeChat: H5, off to WeChat's cashier, which returns to the order page
    r = client.post(pay_url, **SAFARI)
    assert r.status_code == 302
    target = urlparse(r["Location"])
    assert r["Location"].startswith("https://wx.tenpay.com/h5?")
    assert parse_qs(target.query)["redirect_url"] == [PUBLIC + order_url]
    path, sent = wxpay.requests[-1]
    assert path == "/v3/pay/transactions/h5"
    assert sent["notify_url"] == notify and sent["amount"] == {"total": 1990, "currency": "CNY"}
    assert sent["scene_info"]["h5_info"] == {"type": "Wap"} and sent["out_trade_no"].startswith("P")
    assert 'data-testid="awaiting-wechat"' in client.get(order_url).content.decode()

    # inside WeChat without WeChat sign-in configured: a clear message, no payment opened
    n = len(wxpay.requests)
    r = client.post(pay_url, **IN_WECHAT)
    assert r.status_code == 302 and r["Location"] == order_url and len(wxpay.requests) == n
    assert "未配置微信登录" in client.get(order_url).content.decode()

    # with the 公众号 configured: WeChat OAuth first; the openid is bound to the signed-in member
    fake = _RecordedWeChat()
    try:
        do_configure_wechat_login(Principal.system(world.tenant.pk), app_id="wxd678efh567hg6787",
                                  secret="app-secret-for-tests", api_base=fake.base)
        r = client.post(pay_url, **IN_WECHAT)
        assert r.status_code == 302 and r["Location"].startswith(reverse("portal:wechat", args=[slug]))
        r = client.get(r["Location"], **IN_WECHAT)
        state = parse_qs(urlparse(r["Location"]).query)["state"][0]
        r = client.get(reverse("portal:wechat_callback", args=[slug]), {"code": "CODE_FROM_WECHAT", "state": state},
                       **IN_WECHAT)
        assert r.status_code == 302 and r["Location"] == order_url
    finally:
        fake.close()
    openid = _RecordedWeChat.RECORDED["openid"]
    assert Member.objects.get(identities__external_id=f"wechat:{openid}").pk == alice.pk  # no second member

    # JSAPI: the page hands WeChat's bridge the signed prepay parameters
    r = client.post(pay_url, **IN_WECHAT)
    assert r.status_code == 200
    html = r.content.decode()
    bridge = json.loads(re.search(r'<script id="wx-bridge" type="application/json">(.*?)</script>', html).group(1))
    assert bridge["package"] == "prepay_id=wx2026prepay"
    assert bridge["appId"] == "wxd678efh567hg6787" and bridge["signType"] == "RSA" and bridge["paySign"]
    assert "portal/wxpay.js" in html and "res.wx.qq.com" not in html  # nothing loaded from elsewhere
    path, sent = wxpay.requests[-1]
    assert path == "/v3/pay/transactions/jsapi" and sent["payer"] == {"openid": openid}
    assert sent["notify_url"] == notify
    # pressing pay again reuses the payment (idempotent per order and openid)
    client.post(pay_url, **IN_WECHAT)
    assert Payment.objects.filter(order=order, channel="jsapi").count() == 1

    # WeChat Pay's signed notification reaches the notify path: the order is paid and the tier granted
    payment = Payment.objects.get(order=order, channel="jsapi")
    body = notification({"out_trade_no": payment.out_trade_no, "transaction_id": "4200000001",
                         "trade_state": "SUCCESS", "amount": {"total": 1990, "payer_total": 1990, "currency": "CNY"},
                         "mchid": "1900000109", "appid": "wxd678efh567hg6787", "payer": {"openid": openid}})
    headers = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in signed_headers(body).items()}
    r = Client().post(urlparse(notify).path, body, content_type="application/json", **headers)
    assert r.status_code == 200, r.content
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID and order.paid_fen == 1990
    assert TierGrant.objects.filter(order=order, status=TierGrant.Status.ACTIVE).exists()
    page = client.get(order_url).content.decode()
    assert 'data-testid="tier-granted"' in page and 'data-testid="awaiting-wechat"' not in page


def test_sandbox_stays_the_default(world):
    client = Client()
    sign_in(client, world, "13800000002")
    order = _order(client, world)
    r = client.post(reverse("portal:pay", args=[world.tenant.slug, order.pk]), **IN_WECHAT)
    assert r.status_code == 302
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID and order.payments.get().provider == "sandbox"
