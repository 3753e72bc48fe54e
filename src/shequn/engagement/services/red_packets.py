"""Red packets and their wallets (:class:`PointsWallet`; the ledger registers the cash wallet with
:func:`register_cash_wallet`). Locking: the packet row (``select_for_update``) first, then the
claimer's wallet row, so concurrent claims never exceed the packet; one claim per member."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.communities.models import ChatGroup, Community, Membership
from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from .. import redpacket
from ..models import RedPacket, RedPacketClaim
from ._common import _announce, check_member
from .points import do_points_earn, do_points_spend
from .standing import check_good_standing


class Wallet(Protocol):
    """Where a red packet's value comes from and goes to. ``member_id=None`` is the organisation's own
    (marketing) account. Both calls run inside the caller's transaction and must be idempotent on
    ``idempotency_key``; ``debit`` raises :class:`Conflict` when funds are insufficient."""

    def debit(self, tenant_id: int, member_id: int | None, amount: int, *, idempotency_key: str,
              reason: str) -> None: ...

    def credit(self, tenant_id: int, member_id: int | None, amount: int, *, idempotency_key: str,
               reason: str) -> None: ...


class PointsWallet:
    """Points: the organisation mints (debit/credit of ``None`` are no-ops); members use the ledger."""

    def debit(self, tenant_id: int, member_id: int | None, amount: int, *, idempotency_key: str,
              reason: str) -> None:
        if member_id is not None:
            do_points_spend(tenant_id, member_id, amount, kind="redpacket", idempotency_key=idempotency_key,
                            reason=reason)

    def credit(self, tenant_id: int, member_id: int | None, amount: int, *, idempotency_key: str,
               reason: str) -> None:
        if member_id is not None:
            do_points_earn(tenant_id, member_id, amount, kind="redpacket", idempotency_key=idempotency_key,
                           reason=reason)


_WALLETS: dict[str, Wallet] = {"points": PointsWallet()}


def register_cash_wallet(wallet: Wallet) -> None:
    """The fission ledger (``shequn.ledger``) registers its cash wallet here (amounts in fen)."""
    _WALLETS["cash"] = wallet


def _wallet(currency: str) -> Wallet:
    w = _WALLETS.get(currency)
    if w is None:
        raise Invalid(_("现金红包尚未启用 (需要资金账本)"), code="cash_wallet_missing", details={"field": "currency"})
    return w


def check_red_packet(
    tenant_id: int, *, total: int, count: int, currency: str = "points", mode: str = "random",
    expires_in: dt.timedelta = dt.timedelta(hours=24), sender_member_id: int | None = None,
    group_id: int | None = None, community_id: int | None = None, title: str = "恭喜发财",
) -> None:
    """Every rule of :func:`do_create_red_packet` except the sender's balance, without writing."""
    if not title or not title.strip() or len(title) > 120:
        raise Invalid(_("请填写祝福语 (最多 120 个字符)"), details={"field": "title"})
    if currency not in RedPacket.Currency.values:
        raise Invalid(_("未知的币种"), details={"field": "currency"})
    if mode not in RedPacket.Mode.values:
        raise Invalid(_("未知的红包类型"), details={"field": "mode"})
    if count < 1 or count > 10_000:
        raise Invalid(_("红包个数必须在 1 到 10000 之间"), details={"field": "count"})
    if total < count:
        raise Invalid(_("总额不足: 每个红包至少 1 分/1 积分"), details={"field": "total"})
    if expires_in <= dt.timedelta(0) or expires_in > dt.timedelta(days=30):
        raise Invalid(_("有效期须在 1 分钟到 30 天之间"), details={"field": "expires_in"})
    if sender_member_id is not None:
        check_member(tenant_id, sender_member_id)
    if group_id is not None and not ChatGroup.objects.filter(tenant_id=tenant_id, pk=group_id).exists():
        raise NotFound(_("群不存在"), details={"field": "group_id"})
    if community_id is not None and not Community.objects.filter(tenant_id=tenant_id, pk=community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "community_id"})
    _wallet(currency)


def do_create_red_packet(
    principal: Principal, *, total: int, count: int, currency: str = "points", mode: str = "random",
    expires_in: dt.timedelta = dt.timedelta(hours=24), sender_member_id: int | None = None,
    group_id: int | None = None, community_id: int | None = None, title: str = "恭喜发财",
) -> RedPacket:
    """Create a packet and fund it: the sender's (or the organisation's) wallet is debited ``total``
    up front; the unclaimed rest is refunded at expiry. Announced in the group through the outbox."""
    tid = principal.tenant_id
    check_red_packet(tid, total=total, count=count, currency=currency, mode=mode, expires_in=expires_in,
                     sender_member_id=sender_member_id, group_id=group_id, community_id=community_id, title=title)
    if group_id is not None:
        community_id = community_id or ChatGroup.objects.get(tenant_id=tid, pk=group_id).community_id
    wallet = _wallet(currency)
    with transaction.atomic():
        p = RedPacket.objects.create(
            tenant_id=tid, title=title[:120], community_id=community_id, group_id=group_id, currency=currency,
            mode=mode, total=total, count=count, remaining_amount=total, remaining_count=count,
            sender_id=sender_member_id, expires_at=timezone.now() + expires_in, created_by=principal.label,
        )
        wallet.debit(tid, sender_member_id, total, idempotency_key=f"redpacket:{p.pk}:fund", reason=p.title)
        _announce(tid, group_id, f"redpacket:{p.pk}:announce",
                  _("🧧 %(t)s — %(n)d 个红包, 快来领取!") % {"t": p.title, "n": count}, "engagement.redpacket")
        do_audit(principal, "engagement.redpacket.create", "red_packet", str(p.pk),
                 data={"total": total, "count": count, "currency": currency, "mode": mode})
    return p


def do_claim_red_packet(tenant_id: int, packet_id: int, member_id: int, *, now: dt.datetime | None = None,
                        randint: redpacket.RandInt | None = None) -> RedPacketClaim:
    """Claim one share. Locking: the packet row (``select_for_update``, fixed order: packet → the
    claimer's wallet row), so concurrent claims see the true remaining amount and count and can never
    exceed the packet; ``(packet, member)`` is unique (one claim per member)."""
    now = now or timezone.now()
    check_member(tenant_id, member_id)
    with transaction.atomic():
        p = RedPacket.objects.select_for_update().filter(tenant_id=tenant_id, pk=packet_id).first()
        if p is None:
            raise NotFound(_("红包不存在"), details={"field": "packet_id"})
        if RedPacketClaim.objects.filter(packet=p, member_id=member_id).exists():
            raise Conflict(_("已经领过这个红包了"), code="already_claimed")
        if p.status == RedPacket.Status.EXPIRED or now >= p.expires_at:
            raise Conflict(_("红包已过期"), code="expired")
        if p.remaining_count <= 0:
            raise Conflict(_("红包已被领完"), code="finished")
        if p.community_id and not Membership.objects.filter(
                tenant_id=tenant_id, member_id=member_id, community_id=p.community_id, left_at__isnull=True).exists():
            raise Invalid(_("仅限本社群成员领取"), code="not_member", details={"field": "member_id"})
        check_good_standing(tenant_id, member_id, _("领取红包"))
        if p.mode == RedPacket.Mode.RANDOM:
            amount = redpacket.next_share(p.remaining_amount, p.remaining_count,
                                          *([randint] if randint else []))
        else:
            amount = redpacket.fixed_share(p.remaining_amount, p.remaining_count)
        p.remaining_amount -= amount
        p.remaining_count -= 1
        if p.remaining_count == 0:
            p.status = RedPacket.Status.FINISHED
        p.save(update_fields=["remaining_amount", "remaining_count", "status"])
        claim = RedPacketClaim.objects.create(tenant_id=tenant_id, packet=p, member_id=member_id, amount=amount)
        _wallet(p.currency).credit(tenant_id, member_id, amount, idempotency_key=f"redpacket:{p.pk}:claim:{member_id}",
                                   reason=p.title)
    return claim


def do_expire_red_packets(*, now: dt.datetime | None = None) -> int:
    """Expire open packets past ``expires_at`` and refund the unclaimed rest to whoever funded them."""
    now = now or timezone.now()
    done = 0
    for pk in RedPacket.objects.filter(status=RedPacket.Status.OPEN, expires_at__lte=now).values_list("pk", flat=True):
        done += int(_expire_packet(pk))
    return done


@transaction.atomic
def _expire_packet(pk: int) -> bool:
    """Expire one packet and refund its unclaimed rest, once. Locking: the packet row."""
    p = RedPacket.objects.select_for_update().get(pk=pk)
    if p.status != RedPacket.Status.OPEN:
        return False
    rest = p.remaining_amount
    if rest:
        _wallet(p.currency).credit(p.tenant_id, p.sender_id, rest, idempotency_key=f"redpacket:{p.pk}:refund",
                                   reason=_("红包过期退回"))
    p.refunded, p.remaining_amount, p.remaining_count = rest, 0, 0
    p.status = RedPacket.Status.EXPIRED
    p.save(update_fields=["refunded", "remaining_amount", "remaining_count", "status"])
    return True
