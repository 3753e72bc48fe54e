"""Private helpers shared by several referral topics: the permission check and the ledger
accounts and policy every money topic needs (``member_account`` / ``merchant_account`` /
``get_policy`` create their row on first use, so they are services, not selectors)."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import Model
from django.utils.translation import gettext as _

from shequn.core.errors import Forbidden, Invalid
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


def check_max_length(model: type[Model], name: str, value: str, *, field: str | None = None,
                     rule: int | None = None) -> None:
    """:class:`Invalid` when ``value`` is longer than the ``max_length`` of ``model``'s field ``name``,
    so a service refuses it before writing anything (PostgreSQL would fail the whole transaction,
    SQLite would store it). ``field`` is the path named in the error (default ``name``); ``rule``
    the 1-based number of the commission rule it belongs to."""
    model_field = model._meta.get_field(name)
    limit = getattr(model_field, "max_length", None)
    if limit is None or len(value) <= limit:
        return
    label = getattr(model_field, "verbose_name", name)
    if rule is not None:
        message = _("第 %(n)d 条规则: %(field)s最长 %(max)d 个字符") % {"n": rule, "field": label, "max": limit}
    else:
        message = _("%(field)s最长 %(max)d 个字符") % {"field": label, "max": limit}
    raise Invalid(message, details={"field": field or name, "max_length": limit})
