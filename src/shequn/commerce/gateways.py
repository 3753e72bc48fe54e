"""Payment providers behind one interface.

* ``sandbox`` (default): a local simulated payer. It keeps its own books
  (:class:`~shequn.commerce.models.SandboxTransaction`) and signs its notifications with
  HMAC-SHA256 over ``timestamp\\nbody`` using a key derived from ``SECRET_KEY``.
* ``wechatpay``: WeChat Pay API v3 via ``wechatpayv3`` — JSAPI / H5 / Native prepay, notification
  signature verification (RSA-SHA256 with the platform public key) and AES-256-GCM decryption of the
  resource, refunds and queries. The gateway host is configurable so tests run against a local
  server; nothing here ever reaches the real host in tests.

Services never talk to a provider directly; they call :func:`gateway_for` and the methods below.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _

from shequn.core.errors import Invalid

from .models import SandboxTransaction


class BadSignature(Invalid):
    code = "bad_signature"


class ProviderError(Invalid):
    code = "provider_error"


@dataclass
class Notification:
    """A verified provider notification, reduced to what the services need."""

    kind: str  # "payment" | "refund"
    out_trade_no: str
    amount_fen: int
    status: str  # succeeded | failed | closed | pending
    provider_id: str = ""
    out_refund_no: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProviderRecord:
    """One line of the provider's books, for reconciliation."""

    kind: str  # pay | refund
    out_no: str  # out_trade_no or out_refund_no
    out_trade_no: str
    amount_fen: int
    status: str
    provider_id: str = ""


class Gateway:
    name = "base"

    def prepay(self, *, out_trade_no: str, amount_fen: int, description: str, channel: str,
               payer_openid: str = "", client_ip: str = "") -> dict[str, Any]:
        raise NotImplementedError

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        raise NotImplementedError

    def refund(self, *, out_trade_no: str, out_refund_no: str, amount_fen: int, total_fen: int,
               reason: str = "") -> tuple[str, str]:
        """Ask for a refund; returns ``(status, provider_refund_id)``, status succeeded|pending|failed."""
        raise NotImplementedError

    def query(self, out_trade_no: str) -> ProviderRecord | None:
        raise NotImplementedError

    def query_refund(self, out_refund_no: str) -> ProviderRecord | None:
        """The provider's view of one refund; ``None`` when it does not know it."""
        return None

    def records(self, out_trade_nos: list[str], out_refund_nos: Sequence[str] = ()) -> list[ProviderRecord]:
        """The provider's view of these payments and refunds (one query each: providers without a
        bill download)."""
        out: list[ProviderRecord] = []
        for no in out_trade_nos:
            rec = self.query(no)
            if rec is not None:
                out.append(rec)
        for no in out_refund_nos:
            rec = self.query_refund(no)
            if rec is not None:
                out.append(rec)
        return out


# --- sandbox -------------------------------------------------------------------------------------


def sandbox_key() -> bytes:
    configured = settings.SHEQUN.get("SANDBOX_PAY_KEY") if hasattr(settings, "SHEQUN") else None
    base = configured or settings.SECRET_KEY
    return hmac.new(str(base).encode(), b"shequn-sandbox-pay", hashlib.sha256).digest()


def sandbox_sign(timestamp: str, body: bytes) -> str:
    return hmac.new(sandbox_key(), timestamp.encode() + b"\n" + body, hashlib.sha256).hexdigest()


class SandboxGateway(Gateway):
    """A simulated payer living in our own database. ``pay()`` is what the payer's phone would do."""

    name = "sandbox"

    def prepay(self, *, out_trade_no: str, amount_fen: int, description: str, channel: str,
               payer_openid: str = "", client_ip: str = "") -> dict[str, Any]:
        return {"provider": "sandbox", "pay_url": f"/api/v1/commerce/payments/sandbox/{out_trade_no}/pay",
                "amount_fen": amount_fen}

    def pay(self, out_trade_no: str, amount_fen: int, *, status: str = "succeeded") -> tuple[dict[str, str], bytes]:
        """The payer pays: book the transaction and return the signed notification (headers, body)."""
        txn, _created = SandboxTransaction.objects.get_or_create(
            out_no=out_trade_no,
            defaults={"kind": "pay", "out_trade_no": out_trade_no, "provider_id": "SBX" + uuid.uuid4().hex[:20],
                      "amount_fen": amount_fen, "status": status},
        )
        return self.notification(
            {"kind": "payment", "out_trade_no": out_trade_no, "provider_id": txn.provider_id,
             "amount_fen": txn.amount_fen, "status": txn.status}
        )

    @staticmethod
    def notification(payload: dict[str, Any]) -> tuple[dict[str, str], bytes]:
        body = json.dumps(payload, sort_keys=True).encode()
        ts = str(int(time.time()))
        return {"X-Sandbox-Timestamp": ts, "X-Sandbox-Signature": sandbox_sign(ts, body)}, body

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        ts = _header(headers, "X-Sandbox-Timestamp")
        sig = _header(headers, "X-Sandbox-Signature")
        if not ts or not sig or not hmac.compare_digest(sandbox_sign(ts, body), sig):
            raise BadSignature(_("支付回调签名无效"), details={"field": "header.X-Sandbox-Signature"})
        try:
            data = json.loads(body)
            return Notification(
                kind=str(data["kind"]), out_trade_no=str(data["out_trade_no"]), amount_fen=int(data["amount_fen"]),
                status=str(data["status"]), provider_id=str(data.get("provider_id", "")),
                out_refund_no=str(data.get("out_refund_no", "")), raw=data,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise Invalid(_("支付回调内容无法解析"), details={"field": "body"}) from exc

    def refund(self, *, out_trade_no: str, out_refund_no: str, amount_fen: int, total_fen: int,
               reason: str = "") -> tuple[str, str]:
        paid = SandboxTransaction.objects.filter(out_no=out_trade_no, kind="pay", status="succeeded").first()
        if paid is None:
            return "failed", ""
        already = sum(
            SandboxTransaction.objects.filter(out_trade_no=out_trade_no, kind="refund", status="succeeded")
            .exclude(out_no=out_refund_no).values_list("amount_fen", flat=True)
        )
        if already + amount_fen > paid.amount_fen:
            return "failed", ""
        txn, _created = SandboxTransaction.objects.get_or_create(
            out_no=out_refund_no,
            defaults={"kind": "refund", "out_trade_no": out_trade_no, "provider_id": "SBR" + uuid.uuid4().hex[:20],
                      "amount_fen": amount_fen, "status": "succeeded"},
        )
        return txn.status, txn.provider_id

    def query(self, out_trade_no: str) -> ProviderRecord | None:
        txn = SandboxTransaction.objects.filter(out_no=out_trade_no, kind="pay").first()
        if txn is None:
            return None
        return ProviderRecord("pay", txn.out_no, txn.out_trade_no, txn.amount_fen, txn.status, txn.provider_id)

    def records(self, out_trade_nos: list[str], out_refund_nos: Sequence[str] = ()) -> list[ProviderRecord]:
        return [
            ProviderRecord(t.kind, t.out_no, t.out_trade_no, t.amount_fen, t.status, t.provider_id)
            for t in SandboxTransaction.objects.filter(out_trade_no__in=out_trade_nos).order_by("pk")
        ]


def _header(headers: Mapping[str, str], name: str) -> str:
    for key in (name, name.lower(), "HTTP_" + name.upper().replace("-", "_")):
        if key in headers:
            return str(headers[key])
    lowered = {k.lower(): v for k, v in headers.items()}
    return str(lowered.get(name.lower(), ""))


# --- WeChat Pay v3 -------------------------------------------------------------------------------

_WX_TRADE_STATUS = {"SUCCESS": "succeeded", "CLOSED": "closed", "PAYERROR": "failed", "REVOKED": "closed",
                    "NOTPAY": "pending", "USERPAYING": "pending", "REFUND": "succeeded"}
_WX_REFUND_STATUS = {"SUCCESS": "succeeded", "PROCESSING": "pending", "ABNORMAL": "failed", "CLOSED": "failed"}


class WeChatPayGateway(Gateway):
    """WeChat Pay API v3 (direct merchant), in platform-public-key mode.

    ``config``: ``mchid``, ``appid``, ``apiv3_key`` (32 bytes), ``private_key`` (merchant API key,
    PEM), ``cert_serial_no`` (merchant certificate serial), ``public_key`` (WeChat Pay platform
    public key, PEM) and ``public_key_id``, ``notify_url``; optional ``base_url`` (tests point it at a
    local server)."""

    name = "wechatpay"

    def __init__(self, config: Mapping[str, Any]) -> None:
        from wechatpayv3 import WeChatPay, WeChatPayType  # noqa: PLC0415, RUF100  (heavy: ~160 ms; only for tenants on WeChat Pay)

        missing = [k for k in ("mchid", "appid", "apiv3_key", "private_key", "cert_serial_no", "public_key",
                               "public_key_id", "notify_url") if not config.get(k)]
        if missing:
            raise Invalid(_("微信支付配置缺少: %(f)s") % {"f": ", ".join(missing)}, details={"fields": missing})
        self.config = dict(config)
        self._types = WeChatPayType
        self.client = WeChatPay(
            wechatpay_type=WeChatPayType.NATIVE, mchid=config["mchid"], private_key=config["private_key"],
            cert_serial_no=config["cert_serial_no"], appid=config["appid"], apiv3_key=config["apiv3_key"],
            notify_url=config["notify_url"], public_key=config["public_key"], public_key_id=config["public_key_id"],
            timeout=(5, 15),
        )
        if config.get("base_url"):
            self.client._core._gate_way = str(config["base_url"]).rstrip("/")

    def _call(self, fn: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            code, message = fn(**kwargs)
        except Exception as exc:  # network errors and the SDK's response-signature failures
            raise ProviderError(_("微信支付请求失败: %(e)s") % {"e": type(exc).__name__}) from exc
        try:
            data = json.loads(message) if message else {}
        except (TypeError, ValueError):
            data = {}
        if not 200 <= int(code) < 300:
            raise ProviderError(
                _("微信支付返回错误 %(code)s: %(msg)s") % {"code": code, "msg": data.get("message", "")},
                details={"provider_code": data.get("code")},
            )
        return data if isinstance(data, dict) else {}

    def prepay(self, *, out_trade_no: str, amount_fen: int, description: str, channel: str,
               payer_openid: str = "", client_ip: str = "") -> dict[str, Any]:
        kwargs: dict[str, Any] = {"description": description[:127] or out_trade_no, "out_trade_no": out_trade_no,
                                  "amount": {"total": amount_fen, "currency": "CNY"}}
        if channel == "jsapi":
            if not payer_openid:
                raise Invalid(_("JSAPI 支付需要付款人的 openid"), details={"field": "payer_openid"})
            data = self._call(self.client.pay, **kwargs, payer={"openid": payer_openid},
                              pay_type=self._types.JSAPI)
            prepay_id = str(data.get("prepay_id", ""))
            ts, nonce = str(int(time.time())), uuid.uuid4().hex
            package = f"prepay_id={prepay_id}"
            sign = self.client.sign([self.config["appid"], ts, nonce, package])
            return {"channel": "jsapi", "prepay_id": prepay_id, "appId": self.config["appid"], "timeStamp": ts,
                    "nonceStr": nonce, "package": package, "signType": "RSA", "paySign": sign}
        if channel == "h5":
            data = self._call(self.client.pay, **kwargs, pay_type=self._types.H5,
                              scene_info={"payer_client_ip": client_ip or "127.0.0.1", "h5_info": {"type": "Wap"}})
            return {"channel": "h5", "h5_url": data.get("h5_url", "")}
        if channel == "native":
            data = self._call(self.client.pay, **kwargs, pay_type=self._types.NATIVE)
            return {"channel": "native", "code_url": data.get("code_url", "")}
        raise Invalid(_("未知的支付方式: %(c)s") % {"c": channel}, details={"field": "channel"})

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        text = body.decode("utf-8", errors="replace")
        norm = dict(headers.items())
        for h in ("Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial",
                  "Wechatpay-Signature-Type"):
            norm.setdefault(h, _header(headers, h))
        if not norm.get("Wechatpay-Signature-Type"):
            norm["Wechatpay-Signature-Type"] = "WECHATPAY2-SHA256-RSA2048"
        try:
            data = self.client.callback(norm, text)
        except Exception as exc:
            raise BadSignature(_("微信支付回调验签失败"), details={"field": "header.Wechatpay-Signature"}) from exc
        if not data:
            raise BadSignature(_("微信支付回调验签或解密失败"), details={"field": "header.Wechatpay-Signature"})
        resource = data.get("resource") or {}
        event_type = str(data.get("event_type", ""))
        try:
            if event_type.startswith("REFUND."):
                return Notification(
                    kind="refund", out_trade_no=str(resource["out_trade_no"]),
                    out_refund_no=str(resource["out_refund_no"]), provider_id=str(resource.get("refund_id", "")),
                    amount_fen=int(resource["amount"]["refund"]),
                    status=_WX_REFUND_STATUS.get(str(resource.get("refund_status")), "failed"), raw=resource,
                )
            return Notification(
                kind="payment", out_trade_no=str(resource["out_trade_no"]),
                provider_id=str(resource.get("transaction_id", "")),
                amount_fen=int(resource["amount"]["total"]),
                status=_WX_TRADE_STATUS.get(str(resource.get("trade_state")), "failed"), raw=resource,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise Invalid(_("微信支付回调内容缺少字段"), details={"field": "resource"}) from exc

    def refund(self, *, out_trade_no: str, out_refund_no: str, amount_fen: int, total_fen: int,
               reason: str = "") -> tuple[str, str]:
        data = self._call(self.client.refund, out_refund_no=out_refund_no, out_trade_no=out_trade_no,
                          amount={"refund": amount_fen, "total": total_fen, "currency": "CNY"},
                          reason=reason[:80] or None)
        return _WX_REFUND_STATUS.get(str(data.get("status")), "pending"), str(data.get("refund_id", ""))

    def query(self, out_trade_no: str) -> ProviderRecord | None:
        try:
            data = self._call(self.client.query, out_trade_no=out_trade_no)
        except ProviderError:
            return None
        amount = data.get("amount") or {}
        return ProviderRecord("pay", out_trade_no, out_trade_no, int(amount.get("total", 0)),
                              _WX_TRADE_STATUS.get(str(data.get("trade_state")), "failed"),
                              str(data.get("transaction_id", "")))


    def query_refund(self, out_refund_no: str) -> ProviderRecord | None:
        try:
            data = self._call(self.client.query_refund, out_refund_no=out_refund_no)
        except ProviderError:
            return None
        amount = data.get("amount") or {}
        return ProviderRecord("refund", out_refund_no, str(data.get("out_trade_no", "")),
                              int(amount.get("refund", 0)),
                              _WX_REFUND_STATUS.get(str(data.get("status")), "failed"), str(data.get("refund_id", "")))


#: where providers deliver notifications (``commerce.api.payment_callback``)
NOTIFY_PATH = "/api/v1/commerce/payments/callback/{slug}/{provider}"


def notify_url(tenant_slug: str, provider: str) -> str:
    """The notify URL a provider calls for this tenant, on the public base address
    (``SHEQUN_PUBLIC_BASE_URL``, the address members and providers reach)."""
    base = str((getattr(settings, "SHEQUN", {}) or {}).get("PUBLIC_BASE_URL") or "http://127.0.0.1:8000").rstrip("/")
    return base + NOTIFY_PATH.format(slug=tenant_slug, provider=provider)


def with_default_notify_url(tenant_settings: Mapping[str, Any] | None, tenant_slug: str) -> dict[str, Any]:
    """The tenant's settings with WeChat Pay's ``notify_url`` filled from the public base address
    when the operator set none (a copy: the stored settings are untouched)."""
    out = dict(tenant_settings or {})
    payments = out.get("payments")
    if isinstance(payments, dict) and isinstance(payments.get("wechatpay"), dict) \
            and not payments["wechatpay"].get("notify_url"):
        out["payments"] = {**payments, "wechatpay": {**payments["wechatpay"],
                                                     "notify_url": notify_url(tenant_slug, "wechatpay")}}
    return out


def gateway_for(tenant_settings: Mapping[str, Any] | None, provider: str | None = None) -> Gateway:
    """The gateway for a tenant: ``provider`` or ``tenant.settings["payments"]["provider"]``, default sandbox.

    WeChat Pay configuration lives in ``tenant.settings["payments"]["wechatpay"]``; its
    ``notify_url`` defaults to :func:`notify_url` (see :func:`with_default_notify_url`)."""
    cfg = dict((tenant_settings or {}).get("payments") or {})
    name = provider or cfg.get("provider") or "sandbox"
    if name == "sandbox":
        return SandboxGateway()
    if name == "wechatpay":
        return WeChatPayGateway(cfg.get("wechatpay") or {})
    raise Invalid(_("未知的支付渠道: %(p)s") % {"p": name}, details={"field": "provider"})
