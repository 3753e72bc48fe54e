"""Payout providers: how an approved withdrawal leaves as money.

A provider must be idempotent on ``out_no`` (a retried transfer with the same ``out_no`` never pays
twice) and answer ``query(out_no)`` so that payouts can be reconciled. Providers register by name
with a factory taking the tenant (each tenant has its own merchant credentials);
``ReferralPolicy.payout_provider`` picks one per tenant. Built in: ``wechat`` (the tenant's
:class:`~shequn.referrals.models.WeChatPayConfig`), ``manual`` (staff record bank/Alipay transfers)
and ``sandbox`` (demo only: pays nothing)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from wechatpayv3 import WeChatPay, WeChatPayType

from shequn.core import fieldcrypt

from .models import WeChatPayConfig

SUCCESS = "success"
FAILED = "failed"
PROCESSING = "processing"
NOT_FOUND = "not_found"


@dataclass(frozen=True)
class PayoutResult:
    status: str  # success | failed | processing | not_found
    provider_ref: str = ""
    reason: str = ""


class PayoutProvider(Protocol):
    name: str

    def transfer(self, *, out_no: str, payee: str, amount_fen: int, memo: str) -> PayoutResult: ...

    def query(self, *, out_no: str) -> PayoutResult: ...


class SandboxProvider:
    """In-memory provider for development and tests. Payee ``"fail"`` fails, ``"slow"`` stays
    processing until :meth:`settle` is called; each ``out_no`` is paid at most once."""

    name = "sandbox"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.results: dict[str, PayoutResult] = {}
        self.transfers: list[tuple[str, str, int]] = []

    def transfer(self, *, out_no: str, payee: str, amount_fen: int, memo: str) -> PayoutResult:
        with self._lock:
            if out_no in self.results:
                return self.results[out_no]
            self.transfers.append((out_no, payee, amount_fen))
            if payee == "fail":
                result = PayoutResult(FAILED, f"sbx-{out_no}", "sandbox: payee refused")
            elif payee == "slow":
                result = PayoutResult(PROCESSING, f"sbx-{out_no}")
            else:
                result = PayoutResult(SUCCESS, f"sbx-{out_no}")
            self.results[out_no] = result
            return result

    def query(self, *, out_no: str) -> PayoutResult:
        with self._lock:
            return self.results.get(out_no, PayoutResult(NOT_FOUND))

    def settle(self, out_no: str, status: str = SUCCESS) -> None:
        with self._lock:
            self.results[out_no] = PayoutResult(status, f"sbx-{out_no}")


class WeChatTransferProvider:
    """WeChat Pay merchant transfer (商家转账到零钱) through ``wechatpayv3``.

    ``client`` is a ``wechatpayv3.WeChatPay``; ``out_batch_no`` and ``out_detail_no`` are both the
    withdrawal's ``out_no``, which WeChat Pay de-duplicates, so a retry never pays twice."""

    name = "wechat"

    def __init__(self, client: Any, appid: str) -> None:
        self.client = client
        self.appid = appid

    def transfer(self, *, out_no: str, payee: str, amount_fen: int, memo: str) -> PayoutResult:
        code, body = self.client.transfer_batch(
            out_batch_no=out_no, batch_name=memo[:32] or "佣金提现", batch_remark=memo[:32] or "佣金提现",
            total_amount=amount_fen, total_num=1,
            transfer_detail_list=[{"out_detail_no": out_no, "transfer_amount": amount_fen,
                                   "transfer_remark": memo[:32] or "佣金提现", "openid": payee}],
            appid=self.appid,
        )
        if code in (200, 202):
            # accepted: the batch is processed asynchronously; reconcile with query()
            return PayoutResult(PROCESSING, _ref(body))
        if code in (400, 403, 409) and any(m in str(body).upper() for m in ("DUPLICATE", "ALREADY_EXISTS")):
            return self.query(out_no=out_no)  # a retry of a batch WeChat Pay already has
        return PayoutResult(FAILED, "", f"wechat {code}: {_err(body)}")

    def query(self, *, out_no: str) -> PayoutResult:
        code, body = self.client.transfer_query_out_detail_no(out_detail_no=out_no, out_batch_no=out_no)
        if code == 404:
            return PayoutResult(NOT_FOUND)
        if code != 200:
            return PayoutResult(PROCESSING, "", f"wechat {code}")
        data = _json(body)
        status = str(data.get("detail_status", ""))
        ref = str(data.get("detail_id", ""))
        if status == "SUCCESS":
            return PayoutResult(SUCCESS, ref)
        if status == "FAIL":
            return PayoutResult(FAILED, ref, str(data.get("fail_reason", "")))
        return PayoutResult(PROCESSING, ref)


def _json(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    try:
        out = json.loads(body or "{}")
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def _ref(body: Any) -> str:
    return str(_json(body).get("batch_id", ""))


def _err(body: Any) -> str:
    return str(_json(body).get("code", "")) or "error"


class ManualProvider:
    """Staff pay by hand (bank or Alipay transfer) and record the reference number
    (:func:`shequn.referrals.services.do_record_manual_payout`); until then the withdrawal is
    ``processing`` and reconciliation leaves it alone. Nothing is sent anywhere."""

    name = "manual"

    def transfer(self, *, out_no: str, payee: str, amount_fen: int, memo: str) -> PayoutResult:
        return PayoutResult(PROCESSING, "", "awaiting staff transfer")

    def query(self, *, out_no: str) -> PayoutResult:
        return PayoutResult(PROCESSING)


def wechat_client(config: Any) -> Any:
    """A ``wechatpayv3.WeChatPay`` for a tenant's :class:`~shequn.referrals.models.WeChatPayConfig`
    (public-key mode: no network at construction). ``SHEQUN["WECHATPAY_GATEWAY"]`` replaces
    ``https://api.mch.weixin.qq.com`` (tests point it at a local server)."""
    keys = fieldcrypt.decrypt(config.secrets_encrypted)
    client = WeChatPay(wechatpay_type=WeChatPayType.MINIPROG, mchid=config.mchid, private_key=keys["private_key"],
                       cert_serial_no=config.cert_serial_no, appid=config.appid, apiv3_key=keys["apiv3_key"],
                       public_key=config.public_key, public_key_id=config.public_key_id, timeout=(5, 15))
    gateway = (getattr(settings, "SHEQUN", {}) or {}).get("WECHATPAY_GATEWAY")
    if gateway:
        client._core._gate_way = str(gateway).rstrip("/")
    return client


def _wechat_for_tenant(tenant_id: int) -> PayoutProvider:
    config = WeChatPayConfig.objects.filter(tenant_id=tenant_id).first()
    if config is None:
        raise LookupError("WeChat Pay is not configured for this tenant")
    return WeChatTransferProvider(wechat_client(config), appid=config.appid)


#: ``name -> factory(tenant_id)``; a factory builds the provider with that tenant's credentials
_FACTORIES: dict[str, Callable[[int], PayoutProvider]] = {}
_SANDBOX = SandboxProvider()
_MANUAL = ManualProvider()


def register_payout_provider(name: str, factory: Callable[[int], PayoutProvider]) -> None:
    """Register (or replace) a provider: ``factory(tenant_id)`` returns it for that tenant."""
    _FACTORIES[name] = factory


def get_provider(name: str, tenant_id: int) -> PayoutProvider:
    """The provider ``name`` for ``tenant_id``; LookupError when unknown or not configured."""
    if name not in _FACTORIES:
        raise LookupError(f"unknown payout provider: {name}")
    return _FACTORIES[name](tenant_id)


def sandbox() -> SandboxProvider:
    return _SANDBOX


register_payout_provider("sandbox", lambda tenant_id: _SANDBOX)
register_payout_provider("manual", lambda tenant_id: _MANUAL)
register_payout_provider("wechat", _wechat_for_tenant)
