"""Writers of the engagement app (``do_*``) and rule checks (``check_*``), one module per topic:

* :mod:`.scores` — engagement scores, lifecycle stages, relationship-ladder suggestions
* :mod:`.standing` — the standing-check registry (moderation fills it)
* :mod:`.roles` — role recommendations
* :mod:`.replies` — the reply-to-everyone queue
* :mod:`.points` — the points ledger (incl. the referrals fission reward)
* :mod:`.checkins` — check-ins, streaks, make-up cards, badges
* :mod:`.lotteries` — commit–reveal lotteries
* :mod:`.campaigns` / :mod:`.edits` — creating / changing badges, SOP content and schedules (and
  lotteries and red packets: their state rules are written in :mod:`.edits`)
* :mod:`.red_packets` — red packets and their wallets
* :mod:`.sop` — scheduled content (the SOP), quiet hours, post results
* :mod:`.health` — health alerts
* :mod:`.welcome` — welcome on join (per community and platform, batched, in the platform's window)
* :mod:`.activity` — the activity consumer

Contracts for other apps:

* :func:`register_standing_check` — moderation registers ``fn(tenant_id, member_id) -> str | None``
  (``None`` = clean, else the reason); role recommendations skip members with a bad standing.
* :func:`register_cash_wallet` — the fission ledger registers a :class:`Wallet` for cash red packets.
* :func:`on_activity` — the activity consumer (registered by the app wiring).
"""

from ..selectors import schedule_occurrences, shift_out_of_quiet, upcoming_occurrences
from ._common import check_member
from .activity import on_activity
from .campaigns import (
    OVERRIDE_PLATFORMS,
    check_badge,
    check_content_item,
    check_content_schedule,
    do_create_badge,
    do_create_content_item,
    do_create_content_schedule,
    do_set_schedule_active,
    schedule_form_data,
)
from .checkins import (
    CheckInResult,
    do_award_badges,
    do_buy_makeup_card,
    do_check_in,
    do_grant_makeup_cards,
    do_seed_streak_badges,
    do_use_makeup_card,
)
from .edits import (
    check_update_badge,
    check_update_content_item,
    check_update_content_schedule,
    check_update_lottery,
    check_update_red_packet,
    do_end_red_packet,
    do_update_badge,
    do_update_content_item,
    do_update_content_schedule,
    do_update_lottery,
    do_update_red_packet,
)
from .health import do_health_check
from .lotteries import (
    check_lottery,
    check_lottery_entry,
    check_lottery_rules,
    do_cancel_lottery,
    do_close_lottery,
    do_create_lottery,
    do_draw_lottery,
    do_enter_lottery,
    do_reroll,
    do_run_due_lotteries,
)
from .points import (
    RewardTask,
    do_points_adjust,
    do_points_earn,
    do_points_earn_many,
    do_points_spend,
    grant_fission_points,
)
from .red_packets import (
    PointsWallet,
    Wallet,
    check_red_packet,
    do_claim_red_packet,
    do_create_red_packet,
    do_expire_red_packets,
    register_cash_wallet,
)
from .replies import do_mark_no_reply_needed, do_reply_from_queue
from .roles import do_decide_role, do_recommend_roles, do_recommend_roles_all
from .scores import do_decide_ladder, do_recompute_scores, do_suggest_ladder, do_update_lifecycle
from .sop import LOOKBACK, do_collect_post_results, do_run_content_schedules, render_content
from .standing import (
    StandingCheck,
    check_good_standing,
    check_standing,
    register_standing_check,
    unregister_standing_check,
)
from .welcome import (
    check_welcome_body,
    do_flush_due_welcomes,
    do_flush_welcomes,
    do_save_welcome,
    render_welcome,
    welcome_for,
)

__all__ = [
    "LOOKBACK",
    "OVERRIDE_PLATFORMS",
    "CheckInResult",
    "PointsWallet",
    "RewardTask",
    "StandingCheck",
    "Wallet",
    "check_badge",
    "check_content_item",
    "check_content_schedule",
    "check_good_standing",
    "check_lottery",
    "check_lottery_entry",
    "check_lottery_rules",
    "check_member",
    "check_red_packet",
    "check_standing",
    "check_update_badge",
    "check_update_content_item",
    "check_update_content_schedule",
    "check_update_lottery",
    "check_update_red_packet",
    "check_welcome_body",
    "do_award_badges",
    "do_buy_makeup_card",
    "do_cancel_lottery",
    "do_check_in",
    "do_claim_red_packet",
    "do_close_lottery",
    "do_collect_post_results",
    "do_create_badge",
    "do_create_content_item",
    "do_create_content_schedule",
    "do_create_lottery",
    "do_create_red_packet",
    "do_decide_ladder",
    "do_decide_role",
    "do_draw_lottery",
    "do_end_red_packet",
    "do_enter_lottery",
    "do_expire_red_packets",
    "do_flush_due_welcomes",
    "do_flush_welcomes",
    "do_grant_makeup_cards",
    "do_health_check",
    "do_mark_no_reply_needed",
    "do_points_adjust",
    "do_points_earn",
    "do_points_earn_many",
    "do_points_spend",
    "do_recommend_roles",
    "do_recommend_roles_all",
    "do_recompute_scores",
    "do_reply_from_queue",
    "do_reroll",
    "do_run_content_schedules",
    "do_run_due_lotteries",
    "do_save_welcome",
    "do_seed_streak_badges",
    "do_set_schedule_active",
    "do_suggest_ladder",
    "do_update_badge",
    "do_update_content_item",
    "do_update_content_schedule",
    "do_update_lifecycle",
    "do_update_lottery",
    "do_update_red_packet",
    "do_use_makeup_card",
    "grant_fission_points",
    "on_activity",
    "register_cash_wallet",
    "register_standing_check",
    "render_content",
    "render_welcome",
    "schedule_form_data",
    "schedule_occurrences",  # a reader: lives in selectors, re-exported for existing callers
    "shift_out_of_quiet",  # a reader: lives in selectors, re-exported for existing callers
    "unregister_standing_check",
    "upcoming_occurrences",  # a reader: lives in selectors, re-exported for existing callers
    "welcome_for",
]
