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

from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.ledger.models import AccountKind, Entry, Transaction
from shequn.ledger.services import do_post

from ..models import (
    Alliance,
    AllianceInvitation,
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


def _active_member(tenant_id: int, alliance_id: int) -> Alliance:
    alliance = Alliance.objects.filter(pk=alliance_id, members__tenant_id=tenant_id,
                                       members__is_active=True).first()
    if alliance is None:  # another merchant's alliance behaves as not found
        raise NotFound(_("联盟不存在"), details={"field": "alliance_id"})
    return alliance


@transaction.atomic
def do_invite_to_alliance(principal: Principal, alliance_id: int, *, tenant_slug: str) -> AllianceInvitation:
    """A member merchant invites another merchant by its organisation code (slug). Inviting again
    while an invitation is pending returns that invitation."""
    alliance = _active_member(principal.tenant_id, alliance_id)
    invitee = Tenant.objects.filter(slug=(tenant_slug or "").strip()).first()
    if invitee is None:
        raise NotFound(_("没有这个组织代码的商家"), details={"field": "tenant_slug"})
    if AllianceMember.objects.filter(alliance=alliance, tenant=invitee, is_active=True).exists():
        raise Conflict(_("该商家已经在联盟中"), details={"field": "tenant_slug"})
    pending = AllianceInvitation.objects.filter(alliance=alliance, invitee=invitee,
                                                status=AllianceInvitation.Status.PENDING).first()
    if pending is not None:
        return pending
    inv = AllianceInvitation.objects.create(alliance=alliance, inviter_id=principal.tenant_id, invitee=invitee)
    do_audit(principal, "referrals.alliance.invite", "Alliance", alliance.pk, data={"invitee": invitee.pk})
    return inv


@transaction.atomic
def do_respond_to_alliance_invitation(principal: Principal, invitation_id: int, *,
                                      accept: bool) -> AllianceInvitation:
    """The invited merchant accepts (it becomes a member) or declines. Only the invitee may answer."""
    inv = AllianceInvitation.objects.select_for_update().filter(pk=invitation_id,
                                                                invitee_id=principal.tenant_id).first()
    if inv is None:
        raise NotFound(_("邀请不存在"), details={"field": "invitation_id"})
    if inv.status != AllianceInvitation.Status.PENDING:
        raise Conflict(_("该邀请已答复"), details={"field": "invitation_id"})
    inv.status = AllianceInvitation.Status.ACCEPTED if accept else AllianceInvitation.Status.DECLINED
    inv.responded_at = timezone.now()
    inv.save(update_fields=["status", "responded_at"])
    if accept:
        member, created = AllianceMember.objects.get_or_create(alliance_id=inv.alliance_id,
                                                               tenant_id=principal.tenant_id)
        if not created and not member.is_active:
            member.is_active = True
            member.save(update_fields=["is_active"])
    do_audit(principal, "referrals.alliance.join" if accept else "referrals.alliance.decline", "Alliance",
             inv.alliance_id)
    return inv


@transaction.atomic
def do_join_alliance(principal: Principal, alliance_id: int) -> AllianceMember:
    """Join by accepting this merchant's pending invitation to the alliance (never by id alone)."""
    inv = AllianceInvitation.objects.filter(alliance_id=alliance_id, invitee_id=principal.tenant_id,
                                            status=AllianceInvitation.Status.PENDING).first()
    if inv is None:
        raise NotFound(_("没有这个联盟的邀请"), details={"field": "alliance_id"})
    do_respond_to_alliance_invitation(principal, inv.pk, accept=True)
    return AllianceMember.objects.get(alliance_id=alliance_id, tenant_id=principal.tenant_id)


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
