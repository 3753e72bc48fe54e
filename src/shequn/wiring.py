"""Every cross-app subscription of shequn, declared in one place and read top to bottom.

Data flows one way — connectors → activity stream → engines → analytics, interfaces on top — and a
lower app never imports a higher one (the import-linter contract in ``pyproject.toml``). When a lower
app must *reach* a higher one (the activity stream hands events to the engines, commerce tells
referrals an order was paid, a member merge must move memberships), the lower app owns a small
registry and this module, the only one that knows every app, fills it. No app registers itself in
its ``AppConfig.ready()``; :class:`shequn.apps.WiringConfig`, last in ``INSTALLED_APPS``, calls
:func:`connect` once every model is loaded.

Naming: an activity consumer is ``on_activity(tenant_id, events)``, an order listener
``on_order_event(event)``, a member-merge hook ``on_member_merged(tenant_id, from_id, to_id)``.
Delivery of both streams (activity, order events) is :mod:`shequn.core.streams`: committed batches,
one transaction per subscriber, retries with backoff, dead letters shown to staff."""

from __future__ import annotations

from shequn.activity import registry as activity_stream
from shequn.activity import services as activity_services
from shequn.analytics import health as analytics_health
from shequn.analytics import notify as analytics_notify
from shequn.analytics import presence as analytics_presence
from shequn.analytics import segments as analytics_segments
from shequn.analytics import services as analytics
from shequn.commerce import events as order_events
from shequn.commerce import selectors as commerce_selectors
from shequn.commerce import services as commerce
from shequn.communities import registry as communities_registry
from shequn.communities import selectors as communities_selectors
from shequn.communities import services as communities
from shequn.connectors import services as connectors
from shequn.connectors import signals as connector_outcomes
from shequn.core import webhooks
from shequn.engagement import selectors as engagement_selectors
from shequn.engagement import services as engagement
from shequn.ledger.wallet import LedgerCashWallet
from shequn.members import audiences as member_audiences
from shequn.members import registry as member_registry
from shequn.moderation import selectors as moderation_selectors
from shequn.moderation import services as moderation
from shequn.portal import services as portal
from shequn.referrals import services as referrals

#: the activity kinds engagement scores (everything a member does but edits and deletions)
ENGAGEMENT_KINDS = ("message", "reply", "reaction", "join", "leave", "check_in", "purchase", "invite",
                    "live_view", "content_view", "other")


def connect() -> None:
    """Fill every registry. Idempotent: each registry is keyed by name, so a second call (tests that
    re-run ``django.setup``) replaces rather than duplicates."""

    # --- members: a merge moves what higher apps hold about the merged member; imports place members ---------------
    member_registry.register_merge_hook("communities", communities.on_member_merged)
    member_registry.register_merge_hook("activity", activity_services.on_member_merged)
    # an imported row that names a community opens a membership there (source: import)
    member_registry.register_placement(communities.MemberPlacement())
    # a member's data export (PIPL access) gathers what every app holds; erasure scrubs it
    member_registry.register_export_section("memberships", communities_selectors.member_export_memberships)
    member_registry.register_export_section("roles", communities_selectors.member_export_roles)
    member_registry.register_export_section("activity", activity_services.member_export)
    member_registry.register_export_section("orders", commerce_selectors.member_orders_export)
    member_registry.register_erasure_step("activity", activity_services.on_member_erased)
    member_registry.register_erasure_step("portal_sessions", portal.do_end_member_sessions)
    # saved segments (analytics) are the audiences of SOP schedules (engagement cannot import analytics)
    member_audiences.register_audiences(analytics_segments.audience_member_ids, analytics_segments.audience_choices)

    # --- activity stream → engines ---------------------------------------------------------------------------------
    # moderation judges every message, reply and edit (the strike ladder: moderation/services.py)
    activity_stream.register_consumer("moderation", moderation.on_activity,
                                      kinds=[str(k) for k in moderation.MESSAGE_KINDS])
    # engagement scores what members do (scores, check-ins, reply tracking, health)
    activity_stream.register_consumer("engagement", engagement.on_activity, kinds=list(ENGAGEMENT_KINDS))
    # referrals binds members who joined through an invite code
    activity_stream.register_consumer("referrals", referrals.on_activity, kinds=["join"])

    # analytics: every event marks its day dirty; analytics.tasks.refresh_rollups recomputes the rollups
    activity_stream.register_consumer("analytics", analytics.on_activity)
    # other systems hear of joins and leaves through their webhook endpoints (core/webhooks.py)
    activity_stream.register_consumer("webhooks", webhooks.on_activity, kinds=["join", "leave"])

    # --- commerce order events → listeners -------------------------------------------------------------------------
    # paid orders show up in the activity stream as "purchase" events (engagement sees them)
    order_events.register_order_listener("commerce.activity", commerce.on_order_event)
    # paid → accrue commission, refunded/cancelled → reverse (the commission rule:
    # referrals/services/commissions.py). on_order_event reads OrderEventData through the structural
    # OrderEvent protocol (mutable fields there, a frozen dataclass here), which mypy cannot match.
    order_events.register_order_listener("referrals", referrals.on_order_event)  # type: ignore[arg-type]
    # analytics: an order event marks the order's days dirty (sales, buyers, refunds in the rollups)
    order_events.register_order_listener("analytics", analytics.on_order_event)
    # paid and refunded orders become order.paid / order.refunded webhooks
    order_events.register_order_listener("webhooks", webhooks.on_order_event)

    # --- connectors: the outcome of an outbox action → whoever queued it -------------------------------------------
    # the ladder counts only actions that were applied (a failed mute is no mute)
    connector_outcomes.register_settled_listener("moderation", moderation.on_action_settled)

    # --- analytics health notices → staff ----------------------------------------------------------------------------
    # a new notice becomes a health.alert webhook (core/webhooks.py) when the tenant keeps the feed on
    analytics_health.register_notice_channel("webhook", analytics_notify.to_webhooks)
    # and a message to the staff group / a DM to the community's 群主 and 客服 through the connectors' outbox
    analytics_health.register_notice_channel("staff", analytics_notify.to_staff)

    # --- communities: entry thresholds and tier privileges ------------------------------------------------------------
    # the paid threshold admits members holding an active tier of the community; the partner tier's
    # may_create_groups lets a member open their own group (communities.do_open_partner_group)
    communities_registry.register_entitlement(commerce_selectors.holds_paid_tier)
    communities_registry.register_privilege(commerce_selectors.has_tier_privilege)
    # a decided platform join request is answered on the platform (approve_join / decline_join outbox actions)
    communities_registry.register_join_decision_listener("connectors", connectors.on_join_decided)
    # a community that becomes gated (or gains groups while gated) makes every platform way in ask:
    # Matrix rooms go from public to knock (outbox), the portal's direct Telegram links are revoked
    communities_registry.register_gate_listener("connectors", connectors.on_community_gated)
    communities_registry.register_gate_listener("portal", portal.on_community_gated)
    # every membership write moves analytics' stored members-present count of the community boards
    communities_registry.register_membership_listener("analytics", analytics_presence.on_memberships_changed)

    # --- engine ↔ engine hooks (the engines never import each other for these) -------------------------------------
    # lotteries and red packets refuse members who are banned, muted or recently struck
    engagement.register_standing_check(moderation_selectors.standing_problem)
    # the operator's own campaign texts are not ads when a member relays them word for word
    moderation_selectors.register_campaign_source(engagement_selectors.campaign_texts)
    # fission task rewards "after N valid invites": points (engagement) and coupons (commerce)
    referrals.register_reward_hook("points", engagement.grant_fission_points)
    referrals.register_reward_hook("coupon", commerce.grant_fission_coupon)

    # --- money -----------------------------------------------------------------------------------------------------
    # cash red packets are funded from the ledger (engagement never imports the ledger's internals)
    engagement.register_cash_wallet(LedgerCashWallet())
