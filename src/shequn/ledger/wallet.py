"""The cash wallet behind engagement's cash red packets, on the double-entry ledger (amounts in fen).

Accounts (all in the tenant's books):

* ``member/<id>/available`` — the member's withdrawable cash: the SAME account referrals'
  commissions thaw into and withdrawals are taken from, so red-packet money can be withdrawn.
* ``merchant/<tenant>/red_packet_pool`` — money inside open packets. Non-negative: a payout can
  never exceed what was funded (a ledger-level guard behind the packet's own row lock).
* ``merchant/<tenant>/red_packet_expense`` — the organisation's marketing spend on packets it sends
  (``member_id=None``). An expense account (``allow_negative``), like referrals' ``reward_expense``:
  the real money leaves the company when members withdraw through the referrals payout flow.

Movements (one balanced posting each, idempotent on the caller's key — a replay changes nothing):

* ``debit(member | None, x)`` (a packet is funded): source → pool, where the source is the member's
  ``available`` (refused with :class:`~shequn.ledger.services.InsufficientFunds`, a ``Conflict``,
  when it holds less than ``x``) or the organisation's ``red_packet_expense``.
* ``credit(member | None, x)`` (a share is claimed, or the rest refunded at expiry): pool → the
  member's ``available`` or back to ``red_packet_expense``.

Locking: :func:`~shequn.ledger.services.do_post`'s rule — accounts updated in ascending id order
with a conditional UPDATE inside the caller's transaction (engagement holds the packet row lock
first: packet → accounts, always in that order)."""

from __future__ import annotations

from django.utils.translation import gettext as _

from shequn.core.errors import Invalid

from .models import Account, AccountKind, OwnerType
from .services import Line, do_post, get_account

RED_PACKET_EXPENSE = "red_packet_expense"


def _ref(idempotency_key: str) -> tuple[str, object] | None:
    parts = idempotency_key.split(":")
    if len(parts) >= 2 and parts[0] == "redpacket" and parts[1].isdigit():
        return ("engagement.RedPacket", parts[1])
    return None


class LedgerCashWallet:
    """:class:`shequn.engagement.services.Wallet` for ``currency="cash"`` (registered by the ledger's
    ``AppConfig.ready``)."""

    @staticmethod
    def pool(tenant_id: int) -> Account:
        return get_account(tenant_id, OwnerType.MERCHANT, tenant_id, AccountKind.RED_PACKET_POOL)

    @staticmethod
    def party(tenant_id: int, member_id: int | None) -> Account:
        if member_id is None:
            return get_account(tenant_id, OwnerType.MERCHANT, tenant_id, RED_PACKET_EXPENSE, allow_negative=True)
        return get_account(tenant_id, OwnerType.MEMBER, member_id, AccountKind.AVAILABLE)

    def _post(self, tenant_id: int, amount: int, key: str, kind: str, lines: list[Line], *, reason: str) -> None:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise Invalid(_("金额必须是正整数(分)"), details={"field": "amount_fen"})
        do_post(tenant_id, key, kind, lines, memo=reason, ref=_ref(key))

    def debit(self, tenant_id: int, member_id: int | None, amount: int, *, idempotency_key: str,
              reason: str) -> None:
        source, pool = self.party(tenant_id, member_id), self.pool(tenant_id)
        self._post(tenant_id, amount, idempotency_key, "red_packet.fund", [(source, -amount), (pool, amount)],
                   reason=reason)

    def credit(self, tenant_id: int, member_id: int | None, amount: int, *, idempotency_key: str,
               reason: str) -> None:
        dest, pool = self.party(tenant_id, member_id), self.pool(tenant_id)
        self._post(tenant_id, amount, idempotency_key, "red_packet.payout", [(pool, -amount), (dest, amount)],
                   reason=reason)

