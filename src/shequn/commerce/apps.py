from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CommerceConfig(AppConfig):
    name = "shequn.commerce"
    label = "commerce"
    verbose_name = _("社群电商")

    def ready(self) -> None:
        from shequn.referrals.services import register_reward_hook

        from .events import register_order_listener
        from .services import grant_fission_coupon, ingest_purchase_activity

        # paid orders show up in the activity stream as "purchase" events (engagement sees them)
        register_order_listener("commerce.activity", ingest_purchase_activity)
        # referrals' fission task "reward after N valid invites: coupon" issues a commerce coupon
        register_reward_hook("coupon", grant_fission_coupon)

        # --- member data rights (sec): a member's data export includes their orders (amounts in fen);
        # orders hold no personal fields, so erasure keeps them as they are under the pseudonymous id
        from shequn.members.services import register_export_section

        from .selectors import member_orders_export

        register_export_section("orders", member_orders_export)
