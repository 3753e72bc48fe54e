"""The flash-sale write path (秒杀): creating a sale, the eligibility check, :func:`do_flash_buy` (the
one-buyer path, incl. the single PostgreSQL statement), the group-commit batch writer
:func:`do_write_flash_batch`, and the Redis gate (prepare, consume).

Locking rule: the per-member limit is a unique (flash sale, member) reservation row inserted BEFORE
the stock decrement (a duplicate buyer never consumes stock); the sale's stock moves only by
``UPDATE ... SET stock = stock - n WHERE stock >= n`` (zero rows: sold out, the transaction rolls
back); the hot row is locked only from that UPDATE to COMMIT."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.tasks import task
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.communities.models import Community
from shequn.core.errors import Conflict, Invalid, NotFound, ShequnError, Unavailable
from shequn.core.models import AuditLog
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.models import Member
from shequn.members.selectors import check_member_level

from .. import batching, redis_gate
from ..batching import FlashBatchOutcome, FlashRow
from ..events import ATTRIBUTION_KEYS
from ..models import FlashReservation, FlashSale, Order, OrderLine, OrderStatus, Product, ProductKind, Sku
from ..selectors import MemberContext, member_context
from ._common import SoldOut, _hash, _member, _positive_int, clean_attribution
from .orders import _existing_by_key, _write_order
from .pricing import _Line, _Priced

log = logging.getLogger(__name__)


def check_flash_sale(
    tenant_id: int, *, name: str, sku_id: int | None, price_fen: int, stock: int, starts_at: dt.datetime,
    ends_at: dt.datetime, per_member_limit: int = 1, reservation_ttl_seconds: int = 900,
    eligible_community_id: int | None = None, eligible_tier_id: int | None = None,
    min_relationship_level: int | None = None, use_redis_gate: bool = False,
) -> None:
    """Every rule of :func:`do_create_flash_sale` except the SKU's stock (taken at write time)."""
    if not name or not name.strip() or len(name) > 120:
        raise Invalid(_("请填写活动名称 (最多 120 个字符)"), details={"field": "name"})
    _positive_int(price_fen, "price_fen")
    _positive_int(stock, "stock")
    _positive_int(per_member_limit, "per_member_limit")
    _positive_int(reservation_ttl_seconds, "reservation_ttl_seconds")
    if ends_at <= starts_at:
        raise Invalid(_("结束时间必须晚于开始时间"), details={"field": "ends_at"})
    if sku_id is None or not Sku.objects.filter(tenant_id=tenant_id, pk=sku_id).exists():
        raise NotFound(_("SKU 不存在"), details={"field": "sku_id"})
    if eligible_community_id is not None and not Community.objects.filter(tenant_id=tenant_id,
                                                                           pk=eligible_community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "eligible_community_id"})
    if eligible_tier_id is not None and not Product.objects.filter(tenant_id=tenant_id, pk=eligible_tier_id,
                                                                    kind=ProductKind.TIER).exists():
        raise NotFound(_("付费等级不存在"), details={"field": "eligible_tier_id"})


@transaction.atomic
def do_end_flash_sale(principal: Principal, flash_sale_id: int, *, now: dt.datetime | None = None) -> FlashSale:
    """End a sale now (no new buyers; reservations already taken may still be paid)."""
    now = now or timezone.now()
    fs = FlashSale.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=flash_sale_id).first()
    if fs is None:
        raise NotFound(_("秒杀活动不存在"), details={"field": "flash_sale_id"})
    if fs.ends_at > now:
        fs.ends_at = max(now, fs.starts_at)
        fs.save(update_fields=["ends_at"])
        do_audit(principal, "commerce.flash.end", "FlashSale", fs.pk, data={"ends_at": fs.ends_at.isoformat()})
        transaction.on_commit(lambda: batching.forget(fs.pk))
    return fs


@transaction.atomic
def do_create_flash_sale(
    principal: Principal, *, name: str, sku_id: int, price_fen: int, stock: int, starts_at: dt.datetime,
    ends_at: dt.datetime, per_member_limit: int = 1, reservation_ttl_seconds: int = 900,
    eligible_community_id: int | None = None, eligible_tier_id: int | None = None,
    min_relationship_level: int | None = None, use_redis_gate: bool = False,
) -> FlashSale:
    """Create a flash sale whose stock is carved out of the SKU's stock (conditional UPDATE)."""
    tid = principal.tenant_id
    check_flash_sale(tid, name=name, sku_id=sku_id, price_fen=price_fen, stock=stock, starts_at=starts_at,
                     ends_at=ends_at, per_member_limit=per_member_limit,
                     reservation_ttl_seconds=reservation_ttl_seconds, eligible_community_id=eligible_community_id,
                     eligible_tier_id=eligible_tier_id, min_relationship_level=min_relationship_level,
                     use_redis_gate=use_redis_gate)
    if Sku.objects.filter(tenant_id=tid, pk=sku_id, stock__gte=stock).update(stock=F("stock") - stock) == 0:
        raise Conflict(_("SKU 库存不足以分配给秒杀"), details={"field": "stock"})
    fs = FlashSale.objects.create(
        tenant_id=tid, name=name[:120], sku_id=sku_id, price_fen=price_fen, initial_stock=stock, stock=stock,
        per_member_limit=per_member_limit, starts_at=starts_at, ends_at=ends_at,
        reservation_ttl_seconds=reservation_ttl_seconds, eligible_community_id=eligible_community_id,
        eligible_tier_id=eligible_tier_id, min_relationship_level=min_relationship_level,
        use_redis_gate=use_redis_gate,
    )
    do_audit(principal, "commerce.flash.create", "FlashSale", fs.pk, data={"stock": stock, "price_fen": price_fen})
    return fs


def check_flash_eligible(fs: FlashSale, ctx: MemberContext | None, quantity: int, now: dt.datetime) -> None:
    """Raise a clear error unless this member may buy ``quantity`` now (``ctx=None``: the sale's own
    rules only; the caller's statement checks the member's)."""
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
        raise Invalid(_("数量必须是正整数"), details={"field": "quantity"})
    if quantity > fs.per_member_limit:
        raise Invalid(_("每人限购 %(n)d 件") % {"n": fs.per_member_limit}, code="over_limit",
                      details={"field": "quantity"})
    if now < fs.starts_at:
        raise Invalid(_("秒杀尚未开始"), code="not_started", details={"field": "flash_sale_id"})
    if now >= fs.ends_at:
        raise Invalid(_("秒杀已结束"), code="ended", details={"field": "flash_sale_id"})
    if ctx is None:
        return
    if fs.eligible_community_id and fs.eligible_community_id not in ctx.communities:
        raise Invalid(_("仅限社群成员参与"), code="ineligible", details={"field": "member_id"})
    if fs.eligible_tier_id and fs.eligible_tier_id not in ctx.tiers:
        raise Invalid(_("仅限付费等级会员参与"), code="ineligible", details={"field": "member_id"})
    if fs.min_relationship_level is not None and ctx.level < fs.min_relationship_level:
        raise Invalid(_("关系等级不足"), code="ineligible", details={"field": "member_id"})


@dataclass
class FlashResult:
    status: str  # "ordered" | "queued"
    order: Order | None = None
    gate_result: int | None = None


def do_flash_buy(
    principal: Principal, flash_sale_id: int, *, member_id: int, quantity: int = 1,
    attribution: Mapping[str, Any] | None = None, idempotency_key: str | None = None,
    now: dt.datetime | None = None, batched: bool | None = None,
) -> FlashResult:
    """Buy in a flash sale: one short transaction.

    Locking: (1) INSERT the unique (flash sale, member) reservation row — a second attempt by the same
    member fails here, BEFORE any stock moves; (2) ``UPDATE flash SET stock = stock - n WHERE id = :id
    AND stock >= n`` — zero rows means sold out and the reservation insert rolls back with it;
    (3) the order and its line. With ``use_redis_gate`` and Redis configured, the Lua gate decides
    first and the order is written by :func:`do_consume_flash_gate`."""
    tid = principal.tenant_id
    now = now or timezone.now()
    use_batch = (batched if batched is not None else batching.enabled()) and not idempotency_key
    # the sale from the per-process cache (at most batching.CACHE_SECONDS old): the group-commit path
    # and the Redis gate decide on it (their writers read the row again and decrement conditionally,
    # so a stale copy can only refuse early); the one-transaction database paths read the row itself
    fs = batching.flash_sale(tid, flash_sale_id)
    gated = fs is not None and fs.use_redis_gate and redis_gate.client() is not None
    if fs is not None and not use_batch and not gated:
        fs = FlashSale.objects.filter(tenant_id=tid, pk=flash_sale_id).select_related("sku__product").first()
    if fs is None:
        raise NotFound(_("秒杀不存在"), details={"field": "flash_sale_id"})
    member_rules = bool(fs.eligible_community_id or fs.eligible_tier_id)
    if gated and not member_rules:
        # the hot gated path: the member's level in one statement, the gate in one round trip; once
        # the gate said "sold out", this process answers so for batching.CACHE_SECONDS asking only
        # whether the gate holds this member's attempt (a retry whose first answer was lost is told
        # "already bought", as the gate's script would) — a unit given back by a cancellation is
        # sold again after at most that long
        if batching.sold_out(fs.pk) and isinstance(member_id, int) and not isinstance(member_id, bool):
            _refuse_when_sold_out(fs.pk, member_id)
        level = check_member_level(tid, member_id)
        check_flash_eligible(fs, MemberContext(member_id, level), quantity, now)
        return _gate_attempt(fs, member_id, quantity, clean_attribution(tid, attribution), use_batch)
    if (not member_rules and not fs.use_redis_gate and isinstance(member_id, int)
            and not isinstance(member_id, bool) and (use_batch or (
                connection.vendor == "postgresql" and not idempotency_key
                and fs.min_relationship_level is None))):
        # the hot paths: no member read (the statement checks the member belongs to the tenant, and
        # the batch statement checks the relationship level)
        check_flash_eligible(fs, None, quantity, now)
        if fs.stock <= 0 or (use_batch and batching.sold_out(fs.pk)):
            raise SoldOut(_("已售罄"), details={"field": "flash_sale_id"})
        attr = clean_attribution(tid, attribution)
        if use_batch:
            return FlashResult("ordered", batching.submit(principal, fs.pk, member_id, quantity, attr,
                                                         write=do_write_flash_batch))
        with transaction.atomic():
            return FlashResult("ordered", _flash_order_pg(principal, fs, member_id, quantity, attr, now=now))
    member = _member(tid, member_id)
    if fs.eligible_community_id or fs.eligible_tier_id:
        ctx = member_context(tid, member, now)
    else:  # the hot path: only the level is needed, already on the member row
        ctx = MemberContext(member.pk, int(member.relationship_level))
    check_flash_eligible(fs, ctx, quantity, now)
    if fs.stock <= 0:  # fast reject; the conditional UPDATE below is what actually decides
        raise SoldOut(_("已售罄"), details={"field": "flash_sale_id"})
    attr = clean_attribution(tid, attribution)
    if gated:
        return _gate_attempt(fs, member.pk, quantity, attr, use_batch)
    req_hash = _hash({"flash": fs.pk, "quantity": quantity, "attribution": attr})
    existing = _existing_by_key(tid, member.pk, idempotency_key, req_hash)
    if existing is not None:
        return FlashResult("ordered", existing)
    if use_batch:
        return FlashResult("ordered", batching.submit(principal, fs.pk, member.pk, quantity, attr,
                                                     write=do_write_flash_batch))
    if connection.vendor == "postgresql" and not idempotency_key:
        with transaction.atomic():
            return FlashResult("ordered", _flash_order_pg(principal, fs, member.pk, quantity, attr, now=now))
    with transaction.atomic():
        order = _flash_order(principal, fs, member, quantity, attr, now=now, idempotency_key=idempotency_key,
                             request_hash=req_hash)
    return FlashResult("ordered", order)


def _refuse_when_sold_out(flash_sale_id: int, member_id: int) -> None:
    """The sale is sold out (this process's mark): already bought when the gate holds the member's
    attempt, sold out otherwise; Redis down decides nothing here (the full path fails closed)."""
    g = redis_gate.gate()
    assert g is not None
    try:
        bought = g.is_buyer(flash_sale_id, member_id)
    except redis_gate.DOWN:
        return
    if bought:
        raise Conflict(_("每人限购, 你已参与过本次秒杀"), code="already_bought", details={"field": "member_id"})
    raise SoldOut(_("已售罄"), details={"field": "flash_sale_id"})


def _gate_attempt(fs: FlashSale, member_id: int, quantity: int, attr: dict[str, Any], use_batch: bool) -> FlashResult:
    """Ask the Redis gate (the caller checked the member and the window): ``queued``, or sold out,
    or already bought; Redis down fails closed (503). The one caller whose attempt set the gate's
    wake flag enqueues the consumer (see ``redis_gate``)."""
    g = redis_gate.gate()
    assert g is not None
    attempt = g.attempt_batched if use_batch else g.attempt
    try:
        res = attempt(fs.pk, member_id, quantity, json.dumps(attr))
        if res == redis_gate.NOT_PREPARED:
            do_prepare_flash_gate(fs.pk)
            res = attempt(fs.pk, member_id, quantity, json.dumps(attr))
    except redis_gate.DOWN as exc:
        # fail closed: no unit is sold past the gate while it cannot count (a database path here
        # would sell units the gate may already have promised to queued buyers)
        log.warning("flash gate %s unavailable: %s", fs.pk, exc)
        raise Unavailable(_("秒杀排队服务暂时不可用, 请稍后重试"), details={"field": "flash_sale_id"}) from exc
    if res == redis_gate.SOLD_OUT:
        if quantity == 1:  # nothing left for anyone (a larger quantity may only be too many)
            batching.mark_sold_out(fs.pk)
        raise SoldOut(_("已售罄"), details={"field": "flash_sale_id"})
    if res == redis_gate.DUPLICATE:
        raise Conflict(_("每人限购, 你已参与过本次秒杀"), code="already_bought", details={"field": "member_id"})
    if res == redis_gate.ACCEPTED_WAKE:
        consume_flash_gate.enqueue(fs.pk)
    return FlashResult("queued", gate_result=res)


def _flash_order(principal: Principal, fs: FlashSale, member: Member, quantity: int, attr: dict[str, Any], *,
                 now: dt.datetime, idempotency_key: str | None = None, request_hash: str = "",
                 gate_id: str = "") -> Order:
    """Write one flash-sale order; the caller holds the transaction.

    Order of statements (each a single round trip): the order and its line; the unique
    (flash sale, member) reservation ``INSERT ... ON CONFLICT DO NOTHING`` — the duplicate check,
    before any stock moves; last, the conditional stock decrement, so the hot row is locked only from
    that UPDATE to COMMIT."""
    ttl = dt.timedelta(seconds=fs.reservation_ttl_seconds)
    line = _Line(sku=fs.sku, quantity=quantity, list_price=fs.sku.price_fen, unit_price=fs.price_fen)
    order = _write_order(principal, member, _Priced(lines=[line]), attr, idempotency_key=idempotency_key,
                         request_hash=request_hash, ttl=ttl, flash_sale=fs)
    # the member has a row already: only a released one (expired, cancelled) may be taken again
    if not _insert_reservation(fs, member.pk, quantity, expires_at=now + ttl, order_id=order.pk, gate_id=gate_id) \
            and FlashReservation.objects.filter(flash_sale=fs, member=member, status=FlashReservation.Status.RELEASED) \
            .update(status=FlashReservation.Status.RESERVED, quantity=quantity, expires_at=now + ttl,
                    order=order) == 0:
        raise Conflict(_("每人限购, 你已参与过本次秒杀"), code="already_bought", details={"field": "member_id"})
    if FlashSale.objects.filter(pk=fs.pk, stock__gte=quantity).update(stock=F("stock") - quantity) == 0:
        raise SoldOut(_("已售罄"), details={"field": "flash_sale_id"})
    return order


_PG_FLASH_SQL = """
WITH oid AS (SELECT nextval(pg_get_serial_sequence('commerce_order', 'id')) AS id),
res AS (
  INSERT INTO commerce_flashreservation (tenant_id, flash_sale_id, member_id, quantity, status, order_id, gate_id,
                                         expires_at, created_at)
  SELECT %(tenant)s, %(fs)s, %(member)s, %(qty)s, 'reserved', oid.id, '', %(expires)s, %(now)s FROM oid
  WHERE EXISTS (SELECT 1 FROM members_member m WHERE m.id = %(member)s AND m.tenant_id = %(tenant)s)
  ON CONFLICT (flash_sale_id, member_id) DO NOTHING RETURNING id),
stock AS (
  UPDATE commerce_flashsale SET stock = stock - %(qty)s
  WHERE id = %(fs)s AND stock >= %(qty)s AND EXISTS (SELECT 1 FROM res) RETURNING id),
ord AS (
  INSERT INTO commerce_order (id, tenant_id, member_id, status, goods_fen, discount_fen, total_fen, paid_fen,
                              refunded_fen, attribution, request_hash, expires_at, created_at, cancel_reason,
                              stock_released, flash_sale_id, live_session_id)
  SELECT oid.id, %(tenant)s, %(member)s, 'created', %(total)s, 0, %(total)s, 0, 0, %(attr)s::jsonb, '',
         %(expires)s, %(now)s, '', false, %(fs)s, %(live)s FROM oid, stock RETURNING id),
line AS (
  INSERT INTO commerce_orderline (tenant_id, order_id, product_id, sku_id, product_kind, name, quantity,
                                  list_price_fen, unit_price_fen, discount_fen, amount_fen)
  SELECT %(tenant)s, ord.id, %(product)s, %(sku)s, %(kind)s, %(name)s, %(qty)s, %(list)s, %(price)s, 0, %(total)s
  FROM ord),
aud AS (
  INSERT INTO core_auditlog (tenant_id, actor_type, actor_id, actor_label, action, object_type, object_id, reason,
                             data, created_at)
  SELECT %(tenant)s, %(actor_type)s, %(actor_id)s, %(actor_label)s, 'commerce.order.create', 'Order', ord.id::text,
         '', jsonb_build_object('total_fen', %(total)s, 'member_id', %(member)s, 'flash_sale_id', %(fs)s), %(now)s
  FROM ord)
SELECT (SELECT id FROM res), (SELECT id FROM stock), (SELECT id FROM ord)
"""


def _flash_order_pg(principal: Principal, fs: FlashSale, member_id: int, quantity: int, attr: dict[str, Any], *,
                    now: dt.datetime) -> Order:
    """PostgreSQL: the whole flash order in ONE statement (one round trip), same rules as
    :func:`_flash_order` — the unique reservation insert first, the conditional decrement only if it
    inserted, then order, line and audit rows. When nothing was inserted (the member already has a
    row, or is not a member of this tenant) it falls back to :func:`_flash_order`, which re-takes a
    released seat or raises the clear error; raises
    SoldOut (rolling back the reservation) when the conditional decrement found too little."""
    ttl = dt.timedelta(seconds=fs.reservation_ttl_seconds)
    expires = now + ttl
    total = fs.price_fen * quantity
    with connection.cursor() as cur:
        cur.execute(_PG_FLASH_SQL, {
            "tenant": fs.tenant_id, "fs": fs.pk, "member": member_id, "qty": quantity, "expires": expires,
            "now": now, "total": total, "attr": json.dumps(attr), "live": attr.get("live_session_id"),
            "product": fs.sku.product_id, "sku": fs.sku_id, "kind": fs.sku.product.kind,
            "name": f"{fs.sku.product.name} {fs.sku.name}".strip()[:240], "list": fs.sku.price_fen,
            "price": fs.price_fen, "actor_type": principal.kind, "actor_id": principal.actor_id,
            "actor_label": principal.label,
        })
        row = cur.fetchone()
    res_id, stock_id, order_id = row if row else (None, None, None)
    if res_id is None:
        return _flash_order(principal, fs, _member(fs.tenant_id, member_id), quantity, attr, now=now)
    if stock_id is None or order_id is None:
        raise SoldOut(_("已售罄"), details={"field": "flash_sale_id"})
    return _written_flash_order(order_id, tenant_id=fs.tenant_id, flash_sale_id=fs.pk, member_id=member_id,
                                total=total, attr=attr, expires=expires, now=now)


def _written_flash_order(order_id: int, *, tenant_id: int, flash_sale_id: int, member_id: int, total: int,
                         attr: dict[str, Any], expires: dt.datetime, now: dt.datetime) -> Order:
    """The in-memory order a flash-sale statement just inserted (no read back)."""
    return Order(pk=order_id, tenant_id=tenant_id, member_id=member_id, status=OrderStatus.CREATED,
                 goods_fen=total, discount_fen=0, total_fen=total, attribution=attr, expires_at=expires,
                 created_at=now, flash_sale_id=flash_sale_id, live_session_id=attr.get("live_session_id"))


def _insert_reservation(fs: FlashSale, member_id: int, quantity: int, *, expires_at: dt.datetime, order_id: int,
                        gate_id: str) -> bool:
    """``INSERT ... ON CONFLICT (flash_sale, member) DO NOTHING RETURNING id``; True when inserted."""
    ops = connection.ops
    table = connection.ops.quote_name(FlashReservation._meta.db_table)
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {table} (tenant_id, flash_sale_id, member_id, quantity, status, order_id, gate_id, "  # noqa: S608
            "expires_at, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (flash_sale_id, member_id) DO NOTHING RETURNING id",
            [fs.tenant_id, fs.pk, member_id, quantity, FlashReservation.Status.RESERVED, order_id, gate_id,
             ops.adapt_datetimefield_value(expires_at), ops.adapt_datetimefield_value(timezone.now())],
        )
        return cur.fetchone() is not None


def do_prepare_flash_gate(flash_sale_id: int) -> None:
    """Load the flash sale's remaining stock and current buyers into Redis (no-op without Redis)."""
    g = redis_gate.gate()
    if g is None:
        return
    fs = FlashSale.objects.get(pk=flash_sale_id)
    buyers = list(FlashReservation.objects.filter(flash_sale=fs).exclude(status=FlashReservation.Status.RELEASED)
                  .values_list("member_id", flat=True))
    g.prepare(fs.pk, fs.stock, buyers)


def do_consume_flash_gate(flash_sale_id: int, *, consumer: str = "worker", batch: int = 500) -> int:
    """Turn accepted gate attempts into reservations and orders; returns orders written.

    Idempotent: a stream entry is acknowledged only after its batch committed, and a replayed entry
    meets the unique (flash sale, member) row and is skipped. Each read is written by
    :func:`do_write_flash_batch` (one transaction, one stock decrement for the batch). The database
    stays the source of truth: an entry it refuses (sold out there, not a member, already bought) is
    acknowledged without an order, and one refused for who the member is (not found, not eligible)
    gives its unit back to the gate."""
    g = redis_gate.gate()
    if g is None:
        return 0
    head = FlashSale.objects.filter(pk=flash_sale_id).values_list("tenant_id", "starts_at", "ends_at").first()
    if head is None:
        return 0
    tenant_id, starts_at, ends_at = head
    g.woken(flash_sale_id)  # before reading: an entry added from here on wakes another run
    system = Principal.system(tenant_id, "flash")
    written = 0
    while True:
        entries = g.read(flash_sale_id, consumer, count=batch)
        if not entries:
            return written
        rows: list[FlashRow] = []
        for entry_id, f in entries:
            try:
                attr = json.loads(f.get("attr") or "{}")
                attr = clean_attribution(tenant_id, attr if isinstance(attr, dict) else {})
            except (ValueError, ShequnError):
                attr = dict.fromkeys(ATTRIBUTION_KEYS)
            rows.append(FlashRow(system, int(f["member"]), int(f["qty"]), attr, gate_id=entry_id))
        # the window was checked when the gate accepted (do_flash_buy): judge it at that moment, not
        # now — a slow or restarted consumer must not refuse as "ended" what was bought in time
        outcome = do_write_flash_batch(flash_sale_id, rows, now=_accepted_at(entries, starts_at, ends_at))
        written += sum(1 for o in outcome.results if isinstance(o, Order))
        for row, res in zip(rows, outcome.results, strict=True):
            # refused for who the member is (not found, not eligible): the gate gives the unit back
            if isinstance(res, NotFound | Invalid):
                g.release(flash_sale_id, row.member_id, row.quantity)
        g.ack(flash_sale_id, [e[0] for e in entries])


def do_sweep_flash_gates(*, now: dt.datetime | None = None) -> int:
    """Consume the gate of every Redis-gated sale that started and ended less than a day ago (or
    is still open); returns orders written. Nothing without Redis."""
    if redis_gate.gate() is None:
        return 0
    now = now or timezone.now()
    ids = FlashSale.objects.filter(use_redis_gate=True, starts_at__lte=now,
                                   ends_at__gte=now - dt.timedelta(days=1)).values_list("pk", flat=True)
    return sum(do_consume_flash_gate(pk) for pk in ids)


def _accepted_at(entries: Sequence[tuple[str, Any]], starts_at: dt.datetime, ends_at: dt.datetime) -> dt.datetime:
    """When the gate accepted the latest of ``entries`` (a stream id is ``<Redis ms>-<seq>``), within
    the sale's window (Redis's clock may differ from the app's, which checked the window) and never
    later than now."""
    ms = max(int(entry_id.split("-", 1)[0]) for entry_id, _f in entries)
    accepted = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return max(starts_at, min(accepted, ends_at - dt.timedelta(microseconds=1), timezone.now()))


#: how often a consumer run that met Redis down tries again (every ``GATE_RETRY_SECONDS``) before it
#: fails for the task queue's own requeue and the minute sweep
GATE_RETRIES, GATE_RETRY_SECONDS = 150, 2


@task
def consume_flash_gate(flash_sale_id: int, tries: int = 0) -> int:
    """Write orders for attempts the Redis gate accepted.

    Redis down: the run could not clear the gate's wake flag, which may outlive the outage (it is
    in the append-only file), so buyers accepted after Redis returns would not wake a consumer until
    it expires — the run therefore schedules itself again in ``GATE_RETRY_SECONDS``."""
    try:
        return do_consume_flash_gate(flash_sale_id)
    except redis_gate.DOWN:
        if tries >= GATE_RETRIES or not consume_flash_gate.get_backend().supports_defer:
            raise  # (a backend that runs tasks at once would retry in a tight loop)
        again = consume_flash_gate.using(run_after=timezone.now() + dt.timedelta(seconds=GATE_RETRY_SECONDS))
        log.warning("flash gate %s: Redis unavailable, the consumer runs again in %s s", flash_sale_id,
                    GATE_RETRY_SECONDS)
        again.enqueue(flash_sale_id, tries + 1)
        return 0


_PG_FLASH_HEAD_SQL = """
SELECT f.tenant_id, f.stock, f.price_fen, f.starts_at, f.ends_at, f.per_member_limit, f.min_relationship_level,
       f.reservation_ttl_seconds, f.sku_id, s.product_id, s.price_fen, s.name, p.name, p.kind
FROM commerce_flashsale f JOIN commerce_sku s ON s.id = f.sku_id JOIN commerce_product p ON p.id = s.product_id
WHERE f.id = %s
"""


_PG_FLASH_BATCH_SQL = """
WITH inp AS (
  SELECT * FROM unnest(%(members)s::bigint[], %(qtys)s::int[], %(attrs)s::jsonb[], %(gates)s::text[],
                       %(lives)s::bigint[], %(atypes)s::text[], %(aids)s::text[], %(alabels)s::text[])
         WITH ORDINALITY AS t(member, qty, attr, gate, live, atype, aid, alabel, ord)),
mem AS (
  SELECT inp.*, (SELECT m.relationship_level FROM members_member m
                 WHERE m.id = inp.member AND m.tenant_id = %(tenant)s) AS level,
         (SELECT r.status FROM commerce_flashreservation r
          WHERE r.flash_sale_id = %(fs)s AND r.member_id = inp.member) AS taken
  FROM inp),
chk AS (
  SELECT mem.*, level IS NOT NULL AS known,
         level IS NOT NULL AND (%(min_level)s::int IS NULL OR level >= %(min_level)s::int) AS eligible FROM mem),
cand AS (
  SELECT chk.*, sum(chk.qty) OVER (ORDER BY chk.ord) AS cum FROM chk WHERE chk.eligible AND chk.taken IS NULL),
chosen AS MATERIALIZED (
  SELECT cand.*, nextval(pg_get_serial_sequence('commerce_order', 'id')) AS oid
  FROM cand WHERE cand.cum <= %(stock)s ORDER BY cand.ord),
res AS (
  INSERT INTO commerce_flashreservation (tenant_id, flash_sale_id, member_id, quantity, status, order_id, gate_id,
                                         expires_at, created_at)
  SELECT %(tenant)s, %(fs)s, c.member, c.qty, 'reserved', c.oid, c.gate, %(expires)s, %(now)s
  FROM chosen c ORDER BY c.ord
  ON CONFLICT (flash_sale_id, member_id) DO NOTHING RETURNING order_id),
ord AS (
  INSERT INTO commerce_order (id, tenant_id, member_id, status, goods_fen, discount_fen, total_fen, paid_fen,
                              refunded_fen, attribution, request_hash, expires_at, created_at, cancel_reason,
                              stock_released, flash_sale_id, live_session_id)
  SELECT c.oid, %(tenant)s, c.member, 'created', %(price)s * c.qty, 0, %(price)s * c.qty, 0, 0, c.attr, '',
         %(expires)s, %(now)s, '', false, %(fs)s, c.live
  FROM chosen c JOIN res ON res.order_id = c.oid RETURNING id),
line AS (
  INSERT INTO commerce_orderline (tenant_id, order_id, product_id, sku_id, product_kind, name, quantity,
                                  list_price_fen, unit_price_fen, discount_fen, amount_fen)
  SELECT %(tenant)s, ord.id, %(product)s, %(sku)s, %(kind)s, %(name)s, c.qty, %(list)s, %(price)s, 0,
         %(price)s * c.qty
  FROM ord JOIN chosen c ON c.oid = ord.id),
aud AS (
  INSERT INTO core_auditlog (tenant_id, actor_type, actor_id, actor_label, action, object_type, object_id, reason,
                             data, created_at)
  SELECT %(tenant)s, c.atype, c.aid, c.alabel, 'commerce.order.create', 'Order', ord.id::text, '',
         jsonb_build_object('total_fen', %(price)s * c.qty, 'member_id', c.member, 'flash_sale_id', %(fs)s), %(now)s
  FROM ord JOIN chosen c ON c.oid = ord.id)
SELECT chk.known, chk.eligible, chk.taken, chosen.oid, res.order_id
FROM chk LEFT JOIN chosen ON chosen.ord = chk.ord LEFT JOIN res ON res.order_id = chosen.oid ORDER BY chk.ord
"""


_PG_FLASH_TAKE_SQL = """
UPDATE commerce_flashsale SET stock = stock - %(n)s WHERE id = %(fs)s AND stock >= %(n)s RETURNING stock
"""


class _StockMoved(Exception):
    """The optimistic batch read more stock than was left when it came to decrement: roll it back."""


_RETRY = object()  # a row the batch could not decide; written alone after the batch committed


def do_write_flash_batch(flash_sale_id: int, rows: Sequence[FlashRow],
                         now: dt.datetime | None = None) -> FlashBatchOutcome:
    """Write many buyers' flash-sale attempts at once (group commit); returns one outcome per row,
    exactly what :func:`do_flash_buy` would have given each buyer alone.

    Locking (PostgreSQL), optimistic first: read the sale's stock without a lock; ONE statement
    inserts the reservations of the eligible rows whose running total fits that stock
    (``INSERT ... ON CONFLICT (flash sale, member) DO NOTHING`` — the duplicate check) and the
    orders, lines and audit rows of the reservations actually inserted; LAST, ``UPDATE ... SET
    stock = stock - :taken WHERE stock >= :taken`` — the hot row is locked only from here to COMMIT.
    If another batch took the units meanwhile the UPDATE matches nothing: the whole batch rolls back
    and runs again with ``SELECT ... FOR UPDATE`` of the sale first (the lock held to COMMIT, so the
    stock it reads is exact). Oversell is impossible (the decrement is conditional and covers every
    inserted reservation); undersell too (a row is refused as sold out only when the stock left
    after the decrement is below its quantity). A row the batch cannot decide exactly (the same
    member twice in one batch, a released seat to re-take, a reservation that raced in, a row a
    larger earlier request pushed past the stock while units remain) is written afterwards by the
    one-buyer path in its own transaction. Must not be called inside another transaction.
    Other databases: the ORM batch of :func:`_consume_batch`, or one transaction per row."""
    now = now or timezone.now()
    results: list[Any] = [_RETRY] * len(rows)
    remaining: int | None = None
    seen: set[int] = set()
    first: list[int] = []  # indexes of the rows the batch decides (first occurrence of each member)
    for i, r in enumerate(rows):
        if r.member_id not in seen:
            seen.add(r.member_id)
            first.append(i)
    fs: FlashSale | None = None  # read once, for the ORM batch and for any row written alone
    if connection.vendor == "postgresql" and first:
        for locked in (False, True):
            try:
                with transaction.atomic():
                    remaining = _pg_flash_batch(flash_sale_id, rows, first, results, now, locked=locked)
                break
            except _StockMoved:
                results = [_RETRY] * len(rows)
            except IntegrityError:
                log.warning("flash batch of %d fell back to one transaction per buyer", len(rows))
                results = [_RETRY] * len(rows)
                remaining = None
                break
    elif first:
        fs = FlashSale.objects.select_related("sku__product").get(pk=flash_sale_id)
        fits: list[int] = []
        for i in first:
            try:
                check_flash_eligible(fs, None, rows[i].quantity, now)  # window and per-member limit
                fits.append(i)
            except ShequnError as exc:
                results[i] = exc
        if fs.min_relationship_level is not None:
            fits = []  # the one-buyer path checks each member's level
        try:
            with transaction.atomic():
                orders = _consume_batch(fs, [(rows[i].gate_id, rows[i].member_id, rows[i].quantity,
                                              rows[i].attr) for i in fits]) if fits else []
            by_member = {o.member_id: o for o in orders}  # rows of unknown members stay undecided
            for i in fits:
                if rows[i].member_id in by_member:
                    results[i] = by_member[rows[i].member_id]
        except (Conflict, IntegrityError):
            pass
    for i, r in enumerate(rows):
        if results[i] is not _RETRY:
            continue
        if fs is None:
            fs = FlashSale.objects.select_related("sku__product").get(pk=flash_sale_id)
        results[i] = _flash_one(fs, r, now)
    if fs is not None:  # the stock moved outside the PostgreSQL batch statement: read what is left
        remaining = FlashSale.objects.filter(pk=flash_sale_id).values_list("stock", flat=True).first()
    return FlashBatchOutcome(results, remaining)


def _flash_one(fs: FlashSale, r: FlashRow, now: dt.datetime) -> Order | ShequnError:
    """The one-buyer path for a row the batch left undecided: its own transaction, its own outcome."""
    try:
        member = _member(fs.tenant_id, r.member_id)
        check_flash_eligible(fs, MemberContext(member.pk, int(member.relationship_level)), r.quantity, now)
        with transaction.atomic():
            return _flash_order(r.principal, fs, member, r.quantity, r.attr, now=now, gate_id=r.gate_id)
    except ShequnError as exc:
        return exc
    except IntegrityError:
        return Conflict(_("每人限购, 你已参与过本次秒杀"), code="already_bought", details={"field": "member_id"})


def _flash_head(cur: Any, flash_sale_id: int, *, locked: bool) -> tuple[Any, ...] | None:
    """The sale's row (stock, price, window, limits) and its SKU's; ``locked``: ``FOR UPDATE``."""
    cur.execute(_PG_FLASH_HEAD_SQL + (" FOR UPDATE OF f" if locked else ""), [flash_sale_id])
    row = cur.fetchone()
    return tuple(row) if row is not None else None


def _pg_flash_batch(flash_sale_id: int, rows: Sequence[FlashRow], first: Sequence[int], results: list[Any],
                    now: dt.datetime, *, locked: bool) -> int | None:
    """The PostgreSQL batch (see :func:`do_write_flash_batch`); fills ``results``, returns the stock left.

    ``locked=False`` (tried first): the stock is read without a lock, the rows that fit are written,
    and the conditional decrement comes LAST, so the hot row is locked only from that UPDATE to
    COMMIT and the next batch's inserts overlap this batch's commit. If another batch took the units
    meanwhile, the decrement finds too little and raises :class:`_StockMoved` (the caller rolls back
    and retries with ``locked=True``: ``SELECT ... FOR UPDATE`` first, so the read stock is exact)."""
    with connection.cursor() as cur:
        head = _flash_head(cur, flash_sale_id, locked=locked)
        if head is None:
            for i in first:
                results[i] = NotFound(_("秒杀不存在"), details={"field": "flash_sale_id"})
            return None
        (tenant, stock, price, starts_at, ends_at, limit, min_level, ttl_s, sku_id, product_id, list_price,
         sku_name, product_name, kind) = head
        # the sale's own rules (quantity, per-member limit, window) as the one-buyer path checks them
        rules = FlashSale(per_member_limit=limit, starts_at=starts_at, ends_at=ends_at)
        todo = []
        for i in first:
            try:
                check_flash_eligible(rules, None, rows[i].quantity, now)
                todo.append(i)
            except ShequnError as exc:
                results[i] = exc
        if not todo:
            return int(stock)
        expires = now + dt.timedelta(seconds=ttl_s)
        # the CTEs' row counts are unknown to the planner, which then nests loops over them (quadratic
        # in the batch size); hash joins keep the statement linear. The penalty cost of a disabled plan
        # would switch JIT compilation on (~1 s): off too. Both local to this transaction.
        cur.execute("SET LOCAL enable_nestloop = off; SET LOCAL jit = off")
        cur.execute(_PG_FLASH_BATCH_SQL, {
            "members": [rows[i].member_id for i in todo], "qtys": [rows[i].quantity for i in todo],
            "attrs": [json.dumps(rows[i].attr) for i in todo], "gates": [rows[i].gate_id for i in todo],
            "lives": [rows[i].attr.get("live_session_id") for i in todo],
            "atypes": [rows[i].principal.kind for i in todo], "aids": [rows[i].principal.actor_id for i in todo],
            "alabels": [rows[i].principal.label for i in todo],
            "tenant": tenant, "fs": flash_sale_id, "min_level": min_level, "stock": max(0, stock),
            "expires": expires, "now": now, "price": price, "product": product_id, "sku": sku_id, "kind": kind,
            "name": f"{product_name} {sku_name}".strip()[:240], "list": list_price,
        })
        out = cur.fetchall()
        taken = sum(rows[i].quantity for i, row in zip(todo, out, strict=True) if row[4] is not None)
        cur.execute(_PG_FLASH_TAKE_SQL, {"n": taken, "fs": flash_sale_id})
        moved = cur.fetchone()
    if moved is None:
        if locked:  # cannot happen: the stock was read under the lock
            raise IntegrityError("flash batch: stock changed under the row lock")
        raise _StockMoved
    left = int(moved[0])
    for i, (known, eligible, status, chosen_id, order_id) in zip(todo, out, strict=True):
        r = rows[i]
        if order_id is not None:
            results[i] = _written_flash_order(order_id, tenant_id=tenant, flash_sale_id=flash_sale_id,
                                              member_id=r.member_id, total=price * r.quantity, attr=r.attr,
                                              expires=expires, now=now)
        elif not known:
            results[i] = NotFound(_("会员不存在: %(id)s") % {"id": r.member_id}, details={"field": "member_id"})
        elif not eligible:
            results[i] = Invalid(_("关系等级不足"), code="ineligible", details={"field": "member_id"})
        elif status is not None and status != FlashReservation.Status.RELEASED:
            results[i] = Conflict(_("每人限购, 你已参与过本次秒杀"), code="already_bought",
                                  details={"field": "member_id"})
        elif status is None and chosen_id is None and left < r.quantity:
            results[i] = SoldOut(_("已售罄"), details={"field": "flash_sale_id"})
        # else _RETRY: a released seat to re-take, a reservation that raced in, or units left that this
        # row may fit although an earlier, larger request did not
    return left


def _consume_batch(fs: FlashSale, parsed: Sequence[tuple[str, int, int, dict[str, Any]]]) -> list[Order]:
    """Write a whole batch: one stock UPDATE, bulk inserts. Raises Conflict to fall back."""
    members = Member.objects.filter(tenant_id=fs.tenant_id, pk__in=[p[1] for p in parsed]).in_bulk()
    if FlashReservation.objects.filter(flash_sale=fs, member_id__in=list(members)).exists():
        raise Conflict("replayed or re-taken entries in batch")
    rows = [p for p in parsed if p[1] in members]
    if len({p[1] for p in rows}) != len(rows):
        raise Conflict("duplicate member in batch")
    total = sum(p[2] for p in rows)
    if not rows:
        return []
    if FlashSale.objects.filter(pk=fs.pk, stock__gte=total).update(stock=F("stock") - total) == 0:
        raise SoldOut("batch")
    now = timezone.now()
    ttl = dt.timedelta(seconds=fs.reservation_ttl_seconds)
    orders = Order.objects.bulk_create([
        Order(tenant_id=fs.tenant_id, member_id=mid, goods_fen=fs.price_fen * qty, discount_fen=0,
              total_fen=fs.price_fen * qty, attribution=clean_attribution(fs.tenant_id, attr) if attr else
              dict.fromkeys(ATTRIBUTION_KEYS), expires_at=now + ttl, flash_sale=fs)
        for _e, mid, qty, attr in rows
    ])
    name = f"{fs.sku.product.name} {fs.sku.name}".strip()[:240]
    OrderLine.objects.bulk_create([
        OrderLine(tenant_id=fs.tenant_id, order=o, product_id=fs.sku.product_id, sku_id=fs.sku_id,
                  product_kind=fs.sku.product.kind, name=name, quantity=qty, list_price_fen=fs.sku.price_fen,
                  unit_price_fen=fs.price_fen, amount_fen=fs.price_fen * qty)
        for o, (_e, _m, qty, _a) in zip(orders, rows, strict=True)
    ])
    FlashReservation.objects.bulk_create([
        FlashReservation(tenant_id=fs.tenant_id, flash_sale=fs, member_id=mid, quantity=qty, order=o,
                         gate_id=entry_id, expires_at=now + ttl)
        for o, (entry_id, mid, qty, _a) in zip(orders, rows, strict=True)
    ])
    AuditLog.objects.bulk_create([
        AuditLog(tenant_id=fs.tenant_id, actor_type="system", actor_id="", actor_label="flash",
                 action="commerce.order.create", object_type="Order", object_id=str(o.pk),
                 data={"total_fen": o.total_fen, "member_id": o.member_id, "flash_sale_id": fs.pk})
        for o in orders
    ])
    return orders
