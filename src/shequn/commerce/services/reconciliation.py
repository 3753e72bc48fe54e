"""Reconciliation: compare the payment provider's records with ours (read-only)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..gateways import gateway_for
from ..models import Payment, Refund
from ._common import _tenant_settings


@dataclass
class Difference:
    kind: str
    out_no: str
    ours: str
    theirs: str


def reconcile(tenant_id: int, *, since: dt.datetime | None = None) -> list[Difference]:
    """Compare the provider's records with ours: missing on either side, amount or status mismatches,
    and refunds. Read-only; returns the differences."""
    payments = Payment.objects.filter(tenant_id=tenant_id)
    if since is not None:
        payments = payments.filter(created_at__gte=since)
    diffs: list[Difference] = []
    by_provider: dict[str, list[Payment]] = {}
    for p in payments:
        by_provider.setdefault(p.provider, []).append(p)
    settings_ = _tenant_settings(tenant_id)
    for provider, rows in by_provider.items():
        gw = gateway_for(settings_, provider)
        refund_nos = list(Refund.objects.filter(payment__in=rows).order_by("pk")
                          .values_list("out_refund_no", flat=True))
        theirs = {(r.kind, r.out_no): r for r in gw.records([p.out_trade_no for p in rows], refund_nos)}
        for p in rows:
            r = theirs.pop(("pay", p.out_trade_no), None)
            if r is None:
                if p.status == Payment.Status.SUCCEEDED:
                    diffs.append(Difference("missing_at_provider", p.out_trade_no, f"{p.status} {p.amount_fen}", "-"))
                continue
            if r.status == "succeeded" and p.status != Payment.Status.SUCCEEDED:
                diffs.append(Difference("not_booked", p.out_trade_no, p.status, f"{r.status} {r.amount_fen}"))
            elif r.status != "succeeded" and p.status == Payment.Status.SUCCEEDED:
                diffs.append(Difference("status_mismatch", p.out_trade_no, p.status, r.status))
            if r.amount_fen != p.amount_fen:
                diffs.append(Difference("amount_mismatch", p.out_trade_no, str(p.amount_fen), str(r.amount_fen)))
        refunds = {r.out_refund_no: r for r in Refund.objects.filter(payment__in=rows)}
        for (kind, out_no), r in theirs.items():
            if kind != "refund":
                diffs.append(Difference("unknown_at_ours", out_no, "-", f"{r.status} {r.amount_fen}"))
                continue
            ours = refunds.pop(out_no, None)
            if ours is None:
                diffs.append(Difference("refund_unknown_at_ours", out_no, "-", f"{r.status} {r.amount_fen}"))
            elif ours.amount_fen != r.amount_fen or (r.status == "succeeded") != (ours.status == "succeeded"):
                diffs.append(Difference("refund_mismatch", out_no, f"{ours.status} {ours.amount_fen}",
                                        f"{r.status} {r.amount_fen}"))
        for out_no, ours in refunds.items():
            if ours.status == Refund.Status.SUCCEEDED:
                diffs.append(Difference("refund_missing_at_provider", out_no, f"{ours.status} {ours.amount_fen}", "-"))
    return diffs
