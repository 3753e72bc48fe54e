"""Referral services, one module per topic; this package re-exports their public API so callers
keep importing ``from shequn.referrals.services import <name>``.

- :mod:`.links` — invite links, clicks and joins (attribution), group live codes;
- :mod:`.binding` — who is whose referrer (one level; self-binding and cycles refused);
- :mod:`.commissions` — THE commission rule: plans, which plan and rule apply, the amount, the
  paid/refund order events, thawing after the refund window, reversal, fraud review of held ones;
- :mod:`.fraud` — fraud signals on referred purchases;
- :mod:`.fission` — fission tasks, their reward hooks and the gift fulfilment queue;
- :mod:`.withdrawals` — payouts of available commission (manual payouts recorded by staff, reconciliation);
- :mod:`.payout_settings` — the payout provider and the tenant's WeChat Pay merchant credentials;
- :mod:`.alliance` — merchant alliances, listings, statements and settlement;
- :mod:`.activity` — the activity-stream consumer (joins through invite codes);
- :mod:`._common` — ledger accounts, the policy, permission and length checks shared by the above.

Read-only functions are in :mod:`shequn.referrals.selectors`. Money rule: money moves only through
:func:`shequn.ledger.services.do_post`; each money module states its locking rule."""

from ._common import check_max_length, get_policy, member_account, merchant_account
from .activity import on_activity
from .alliance import (
    StatementResult,
    do_build_my_statements,
    do_build_statement,
    do_create_alliance,
    do_invite_to_alliance,
    do_join_alliance,
    do_list_product,
    do_respond_to_alliance_invitation,
    do_settle_my_statement,
    do_settle_statement,
)
from .binding import REFUSALS, do_bind, try_bind
from .commissions import (
    LAW_NOTE,
    OrderEvent,
    check_change_plan,
    check_levels,
    check_plan,
    check_plan_fields,
    check_plan_rules,
    compute_line,
    do_change_plan,
    do_create_plan,
    do_review_signal,
    do_set_plan_active,
    do_thaw_due,
    do_update_plan,
    on_order_event,
    select_plan,
)
from .fission import (
    RewardHook,
    check_fission_task,
    check_gift_address,
    check_gift_shipping,
    check_update_fission_task,
    do_cancel_gift,
    do_create_fission_task,
    do_set_fission_task_active,
    do_set_gift_address,
    do_ship_gift,
    do_update_fission_task,
    register_reward_hook,
)
from .links import ClickResult, do_get_or_create_link, do_record_click, do_record_join
from .payout_settings import (
    check_payout_provider,
    check_wechatpay_config,
    do_save_wechatpay_config,
    do_set_payout_provider,
    payout_settings,
)
from .withdrawals import (
    MANUAL_CHANNELS,
    do_approve_withdrawal,
    do_execute_payout,
    do_reconcile_withdrawal,
    do_reconcile_withdrawals,
    do_record_manual_payout,
    do_record_manual_payout_failed,
    do_reject_withdrawal,
    do_request_withdrawal,
)

__all__ = [
    "LAW_NOTE",
    "MANUAL_CHANNELS",
    "REFUSALS",
    "ClickResult",
    "OrderEvent",
    "RewardHook",
    "StatementResult",
    "check_change_plan",
    "check_fission_task",
    "check_gift_address",
    "check_gift_shipping",
    "check_levels",
    "check_max_length",
    "check_payout_provider",
    "check_plan",
    "check_plan_fields",
    "check_plan_rules",
    "check_update_fission_task",
    "check_wechatpay_config",
    "compute_line",
    "do_approve_withdrawal",
    "do_bind",
    "do_build_my_statements",
    "do_build_statement",
    "do_cancel_gift",
    "do_change_plan",
    "do_create_alliance",
    "do_create_fission_task",
    "do_create_plan",
    "do_execute_payout",
    "do_get_or_create_link",
    "do_invite_to_alliance",
    "do_join_alliance",
    "do_list_product",
    "do_reconcile_withdrawal",
    "do_reconcile_withdrawals",
    "do_record_click",
    "do_record_join",
    "do_record_manual_payout",
    "do_record_manual_payout_failed",
    "do_reject_withdrawal",
    "do_request_withdrawal",
    "do_respond_to_alliance_invitation",
    "do_review_signal",
    "do_save_wechatpay_config",
    "do_set_fission_task_active",
    "do_set_gift_address",
    "do_set_payout_provider",
    "do_set_plan_active",
    "do_settle_my_statement",
    "do_settle_statement",
    "do_ship_gift",
    "do_thaw_due",
    "do_update_fission_task",
    "do_update_plan",
    "get_policy",
    "member_account",
    "merchant_account",
    "on_activity",
    "on_order_event",
    "payout_settings",
    "register_reward_hook",
    "select_plan",
    "try_bind",
]
