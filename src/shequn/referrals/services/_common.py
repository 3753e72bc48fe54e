"""Private helpers shared by several referral topics: the permission check and the ledger
accounts and policy every money topic needs (``member_account`` / ``merchant_account`` /
``get_policy`` create their row on first use, so they are services, not selectors)."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from shequn.core.errors import Forbidden
from shequn.core.permissions import Principal
from shequn.ledger.models import Account, AccountKind, OwnerType
from shequn.ledger.services import get_account

from ..models import (
    ReferralPolicy,
)


def _require(principal: Principal, permission: str) -> None:
    if not principal.can(permission):
        raise Forbidden(_("没有权限: %(perm)s") % {"perm": permission}, details={"permission": permission})


def member_account(tenant_id: int, member_id: int, kind: str) -> Account:
    """A member's ledger account; only ``clawback`` may go negative (refund debt to be netted)."""
    return get_account(tenant_id, OwnerType.MEMBER, member_id, kind, allow_negative=kind == AccountKind.CLAWBACK)


def merchant_account(tenant_id: int, kind: str, owner_tenant_id: int | None = None) -> Account:
    """A merchant-side account in ``tenant_id``'s books (expense, fees, alliance payable/receivable
    where ``owner_tenant_id`` is the counterparty). These may go negative (expense accounts)."""
    return get_account(tenant_id, OwnerType.MERCHANT, owner_tenant_id or tenant_id, kind, allow_negative=True)


def get_policy(tenant_id: int) -> ReferralPolicy:
    policy = ReferralPolicy.objects.filter(tenant_id=tenant_id).first()
    if policy is None:
        try:
            with transaction.atomic():
                policy = ReferralPolicy.objects.create(tenant_id=tenant_id)
        except IntegrityError:
            policy = ReferralPolicy.objects.get(tenant_id=tenant_id)
    return policy

