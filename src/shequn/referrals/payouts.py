"""Payout providers: how an approved withdrawal leaves as money.

A provider must be idempotent on ``out_no`` (a retried transfer with the same ``out_no`` never pays
twice) and answer ``query(out_no)`` so that payouts can be reconciled. Providers register by name;
``ReferralPolicy.payout_provider`` picks one per tenant."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

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


_FACTORIES: dict[str, Callable[[], PayoutProvider]] = {}
_INSTANCES: dict[str, PayoutProvider] = {}
_SANDBOX = SandboxProvider()


def register_payout_provider(name: str, factory: Callable[[], PayoutProvider]) -> None:
    _FACTORIES[name] = factory
    _INSTANCES.pop(name, None)


def get_provider(name: str) -> PayoutProvider:
    if name == "sandbox" and name not in _FACTORIES:
        return _SANDBOX
    if name not in _INSTANCES:
        if name not in _FACTORIES:
            raise LookupError(f"unknown payout provider: {name}")
        _INSTANCES[name] = _FACTORIES[name]()
    return _INSTANCES[name]


def sandbox() -> SandboxProvider:
    return _SANDBOX
