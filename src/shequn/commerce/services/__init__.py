"""Writers of community commerce, one module per topic; this package re-exports the public API
(``from shequn.commerce.services import do_create_order`` keeps working).

Where things are:

- ``catalog`` products, SKUs, 会员价, stock; ``live`` live sessions; ``tiers`` paid community tiers;
- ``pricing`` server-side pricing of order lines and coupons; ``orders`` creating orders;
- ``transitions`` the order state machine and order events (with their delivery task);
- ``paid`` what happens when an order is paid; ``payments`` provider payments and notifications;
- ``refunds``; ``fulfilment`` fulfilment, completion, cancellation, expiry;
- ``flash`` the flash-sale write path (one buyer, the PostgreSQL statement, the group-commit batch,
  the Redis gate consumer); ``group_buy`` 拼团; ``coupons``;
- ``edits`` changing existing products, SKUs, flash sales, group buys, coupon templates, live sessions
  (the same ``check_*`` as creation plus the state rules written there);
- ``listeners`` order listeners shipped with commerce; ``reconciliation`` provider vs. ours.

Reads (member context, prices, visibility, lists) live in :mod:`shequn.commerce.selectors`; demo data
in :mod:`shequn.commerce.demo`.

Locking rule (every money/stock function follows it, and says so in its docstring):

1. lock the ``Order`` row first (``select_for_update``), then the ``GroupBuyTeam`` row, then
   ``Payment`` / ``Refund`` rows — always in this order, so two writers never wait on each other in a
   cycle;
2. stock (``Sku.stock``, ``FlashSale.stock``), coupon issue counts and refund totals change only by
   conditional ``UPDATE ... SET x = x - n WHERE id = :id AND x >= n`` — never read-then-write — and a
   zero row count means "not enough", which rolls the whole transaction back;
3. the per-member flash-sale limit is a unique (flash sale, member) row inserted BEFORE the stock
   decrement, so a duplicate buyer never consumes stock (no undersell);
4. order events and their delivery task are written in the transaction of the transition.

Database CHECK constraints back these up: stock ≥ 0, refunded ≤ paid, total = goods − discount.
"""

from __future__ import annotations

from shequn.members.selectors import check_member

from ..batching import FlashBatchOutcome, FlashRow
from ..events import ATTRIBUTION_KEYS
from ..selectors import MemberContext, member_context, product_visible, unit_price
from ._common import (
    SoldOut,
    clean_attribution,
)
from .catalog import (
    TIER_PRIVILEGES,
    NewProduct,
    check_product,
    check_product_fields,
    check_sku,
    check_tier_privileges,
    do_add_sku,
    do_adjust_stock,
    do_create_product,
    do_set_member_price,
)
from .coupons import (
    check_coupon_template,
    do_claim_coupon,
    do_claim_share_coupon,
    do_create_coupon_template,
    do_end_coupon_template,
    grant_fission_coupon,
)
from .edits import (
    check_update_coupon_template,
    check_update_flash_sale,
    check_update_group_buy,
    check_update_live_session,
    check_update_product,
    check_update_sku,
    do_update_coupon_template,
    do_update_flash_sale,
    do_update_group_buy,
    do_update_live_session,
    do_update_product,
    do_update_sku,
)
from .flash import (
    FlashResult,
    check_flash_eligible,
    check_flash_sale,
    do_consume_flash_gate,
    do_create_flash_sale,
    do_end_flash_sale,
    do_flash_buy,
    do_prepare_flash_gate,
    do_sweep_flash_gates,
    do_write_flash_batch,
)
from .fulfilment import (
    do_cancel_order,
    do_complete_order,
    do_expire_orders,
    do_fulfil_order,
)
from .group_buy import (
    check_group_buy,
    do_create_group_buy,
    do_fail_expired_teams,
    do_join_team,
    do_set_group_buy_active,
    do_start_team,
)
from .listeners import (
    on_order_event,
)
from .live import (
    check_live_session,
    do_create_live_session,
    do_end_live_session,
    do_record_live_join,
)
from .orders import (
    DEFAULT_ORDER_TTL,
    do_create_order,
)
from .payments import (
    do_handle_notification,
    do_sandbox_pay,
    do_start_payment,
)
from .pricing import (
    MAX_LINES,
    MAX_QUANTITY,
)
from .reconciliation import (
    Difference,
    reconcile,
)
from .refunds import (
    do_complete_refund,
    do_request_refund,
    do_retry_pending_refunds,
)
from .tiers import (
    TIER_SEEDS,
    do_expire_tiers,
    do_invite_to_tier,
    do_seed_tiers,
)
from .transitions import (
    REFUNDABLE,
    TRANSITIONS,
)

__all__ = [
    "ATTRIBUTION_KEYS",
    "DEFAULT_ORDER_TTL",
    "MAX_LINES",
    "MAX_QUANTITY",
    "REFUNDABLE",
    "TIER_PRIVILEGES",
    "TIER_SEEDS",
    "TRANSITIONS",
    "Difference",
    "FlashBatchOutcome",
    "FlashResult",
    "FlashRow",
    "MemberContext",
    "NewProduct",
    "SoldOut",
    "check_coupon_template",
    "check_flash_eligible",
    "check_flash_sale",
    "check_group_buy",
    "check_live_session",
    "check_member",
    "check_product",
    "check_product_fields",
    "check_sku",
    "check_tier_privileges",
    "check_update_coupon_template",
    "check_update_flash_sale",
    "check_update_group_buy",
    "check_update_live_session",
    "check_update_product",
    "check_update_sku",
    "clean_attribution",
    "do_add_sku",
    "do_adjust_stock",
    "do_cancel_order",
    "do_claim_coupon",
    "do_claim_share_coupon",
    "do_complete_order",
    "do_complete_refund",
    "do_consume_flash_gate",
    "do_create_coupon_template",
    "do_create_flash_sale",
    "do_create_group_buy",
    "do_create_live_session",
    "do_create_order",
    "do_create_product",
    "do_end_coupon_template",
    "do_end_flash_sale",
    "do_end_live_session",
    "do_expire_orders",
    "do_expire_tiers",
    "do_fail_expired_teams",
    "do_flash_buy",
    "do_fulfil_order",
    "do_handle_notification",
    "do_invite_to_tier",
    "do_join_team",
    "do_prepare_flash_gate",
    "do_record_live_join",
    "do_request_refund",
    "do_retry_pending_refunds",
    "do_sandbox_pay",
    "do_seed_tiers",
    "do_set_group_buy_active",
    "do_set_member_price",
    "do_start_payment",
    "do_start_team",
    "do_sweep_flash_gates",
    "do_update_coupon_template",
    "do_update_flash_sale",
    "do_update_group_buy",
    "do_update_live_session",
    "do_update_product",
    "do_update_sku",
    "do_write_flash_batch",
    "grant_fission_coupon",
    "member_context",
    "on_order_event",
    "product_visible",
    "reconcile",
    "unit_price",
]
