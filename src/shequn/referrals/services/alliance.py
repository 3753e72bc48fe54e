"""The merchant alliance (商家联盟): merchants join an alliance and list products with a commission
rate; a member of merchant A who sells merchant B's listed product earns B's rate. The commission
itself (B's rate applied to the order line, the two postings in B's and A's books) is computed with
the other commissions, in :func:`shequn.referrals.services.commissions._alliance_paid`; this module
manages alliances and listings, builds the statements of what one merchant owes another and books
their settlement.

Money rule: postings go through :func:`shequn.ledger.services.do_post` with an idempotency key per
statement side (``alli:settle:<statement>:payer|payee``); a statement row is locked with
``select_for_update`` before it is settled, so settling twice books once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.ledger.models import AccountKind, Entry, Transaction
from shequn.ledger.services import do_post

from ..models import (
    Alliance,
    AllianceListing,
    AllianceMember,
    AllianceStatement,
    AllianceStatementLine,
    Commission,
    RateMode,
)
from ._common import merchant_account


@transaction.atomic
def do_create_alliance(principal: Principal, *, name: str) -> Alliance:
    if not name.strip():
        raise Invalid(_("联盟名称不能为空"), details={"field": "name"})
    alliance = Alliance.objects.create(name=name.strip(), owner_tenant_id=principal.tenant_id)
    AllianceMember.objects.create(alliance=alliance, tenant_id=principal.tenant_id)
    do_audit(principal, "referrals.alliance.create", "Alliance", alliance.pk)
    return alliance


@transaction.atomic
def do_join_alliance(principal: Principal, alliance_id: int) -> AllianceMember:
    """Join (the founder invites by sharing the alliance id; joining is the merchant's own act)."""
    if not Alliance.objects.filter(pk=alliance_id).exists():
        raise NotFound(_("联盟不存在"))
    member, _c = AllianceMember.objects.get_or_create(alliance_id=alliance_id, tenant_id=principal.tenant_id)
    do_audit(principal, "referrals.alliance.join", "Alliance", alliance_id)
    return member


@transaction.atomic
def do_list_product(principal: Principal, alliance_id: int, *, product_id: str, title: str = "",
                    mode: str = RateMode.PERCENT, rate_bps: int = 1000, fixed_fen: int = 0,
                    refund_window_days: int = 7) -> AllianceListing:
    if not AllianceMember.objects.filter(alliance_id=alliance_id, tenant_id=principal.tenant_id,
                                         is_active=True).exists():
        raise NotFound(_("你不是该联盟成员"))
    if not 0 <= rate_bps <= 10000:
        raise Invalid(_("比例须在 0–100% 之间"), details={"field": "rate_bps"})
    listing, _c = AllianceListing.objects.update_or_create(
        alliance_id=alliance_id, tenant_id=principal.tenant_id, product_id=product_id,
        defaults={"title": title, "mode": mode, "rate_bps": rate_bps, "fixed_fen": fixed_fen,
                  "refund_window_days": refund_window_days, "is_active": True})
    do_audit(principal, "referrals.alliance.list", "AllianceListing", listing.pk)
    return listing


@dataclass
class StatementResult:
    statement: AllianceStatement
    lines: list[AllianceStatementLine] = field(default_factory=list)


@transaction.atomic
def do_build_statement(alliance_id: int, *, payer_id: int, payee_id: int, start: datetime,
                       end: datetime) -> AllianceStatement:
    """The statement of what ``payer`` owes ``payee`` for [start, end): one line per ledger posting on
    the payer's "payable to payee" account (accruals positive, refunds negative), each line pointing
    at both ledger transactions behind it. Building the same period again returns the same statement."""
    existing = AllianceStatement.objects.filter(alliance_id=alliance_id, payer_id=payer_id, payee_id=payee_id,
                                                period_start=start, period_end=end).first()
    if existing is not None:
        return existing
    payable = merchant_account(payer_id, AccountKind.MERCHANT_PAYABLE, payee_id)
    entries = list(Entry.objects.filter(tenant_id=payer_id, account=payable, created_at__gte=start, created_at__lt=end)
                   .select_related("transaction").order_by("pk"))
    statement = AllianceStatement.objects.create(alliance_id=alliance_id, payer_id=payer_id, payee_id=payee_id,
                                                 period_start=start, period_end=end, total_fen=0)
    total = 0
    for e in entries:
        txn = e.transaction
        key = txn.idempotency_key
        if key.startswith("alli:settle:") or not key.startswith(("alli:", "comm:")):
            continue  # settlement postings are not statement lines
        comm_pk = int(key.split(":")[1])
        commission = Commission.objects.filter(pk=comm_pk, alliance_id=alliance_id).first()
        if commission is None:
            continue
        payee_key = f"comm:{comm_pk}:accrue" if key.endswith(":payable") else key.removesuffix(":payer")
        payee_txn = Transaction.objects.get(tenant_id=payee_id, idempotency_key=payee_key)
        AllianceStatementLine.objects.create(statement=statement, commission=commission, amount_fen=e.amount_fen,
                                             payer_transaction=txn, payee_transaction=payee_txn)
        total += e.amount_fen
    statement.total_fen = total
    statement.save(update_fields=["total_fen"])
    return statement


@transaction.atomic
def do_settle_statement(statement_id: int, *, now: datetime | None = None) -> AllianceStatement:
    """Book the settlement of a statement in both merchants' ledgers (payable/receivable ↔ clearing)."""
    st = AllianceStatement.objects.select_for_update().get(pk=statement_id)
    if st.settled_at is not None:
        return st
    if st.total_fen:
        do_post(st.payer_id, f"alli:settle:{st.pk}:payer", "alliance.settle",
                [(merchant_account(st.payer_id, AccountKind.MERCHANT_PAYABLE, st.payee_id), -st.total_fen),
                 (merchant_account(st.payer_id, AccountKind.PLATFORM_CLEARING), st.total_fen)],
                memo=f"联盟结算单 {st.pk}", ref=("referrals.AllianceStatement", st.pk))
        do_post(st.payee_id, f"alli:settle:{st.pk}:payee", "alliance.settle",
                [(merchant_account(st.payee_id, AccountKind.MERCHANT_RECEIVABLE, st.payer_id), st.total_fen),
                 (merchant_account(st.payee_id, AccountKind.PLATFORM_CLEARING), -st.total_fen)],
                memo=f"联盟结算单 {st.pk}", ref=("referrals.AllianceStatement", st.pk))
    st.settled_at = now or timezone.now()
    st.save(update_fields=["settled_at"])
    return st


@transaction.atomic
def do_build_my_statements(principal: Principal, alliance_id: int, *, start: datetime,
                           end: datetime) -> list[AllianceStatement]:
    """Build the statements for [start, end) between the principal's tenant and every other active
    member of the alliance, in both directions (what we owe, what we are owed). Only a member of the
    alliance may build them; building again returns the same statements."""
    if end <= start:
        raise Invalid(_("结束时间必须晚于开始时间"), details={"field": "end"})
    me = principal.tenant_id
    if not AllianceMember.objects.filter(alliance_id=alliance_id, tenant_id=me, is_active=True).exists():
        raise NotFound(_("你不是该联盟成员"))
    others = (AllianceMember.objects.filter(alliance_id=alliance_id, is_active=True).exclude(tenant_id=me)
              .order_by("tenant_id").values_list("tenant_id", flat=True))
    out = []
    for other in others:
        out.append(do_build_statement(alliance_id, payer_id=me, payee_id=other, start=start, end=end))
        out.append(do_build_statement(alliance_id, payer_id=other, payee_id=me, start=start, end=end))
    do_audit(principal, "referrals.alliance.statements", "Alliance", alliance_id,
             data={"start": start.isoformat(), "end": end.isoformat(), "statements": [st.pk for st in out]})
    return out


@transaction.atomic
def do_settle_my_statement(principal: Principal, statement_id: int) -> AllianceStatement:
    """The payer confirms it has paid a statement: books the settlement in both ledgers
    (:func:`do_settle_statement`, idempotent). Another tenant's statement is not found."""
    st = AllianceStatement.objects.filter(pk=statement_id, payer_id=principal.tenant_id).first()
    if st is None:
        raise NotFound(_("结算单不存在或不由你方付款"), details={"field": "statement_id"})
    st = do_settle_statement(st.pk)
    do_audit(principal, "referrals.alliance.settle", "AllianceStatement", st.pk, data={"total_fen": st.total_fen})
    return st
