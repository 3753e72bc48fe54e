from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EngagementConfig(AppConfig):
    name = "shequn.engagement"
    label = "engagement"
    verbose_name = _("活跃运营")

    def ready(self) -> None:
        from shequn.activity.registry import register_consumer
        from shequn.referrals.services import register_reward_hook

        from .services import grant_fission_points, handle_activity

        register_consumer(
            "engagement", handle_activity,
            kinds=["message", "reply", "reaction", "join", "leave", "check_in", "purchase", "invite", "live_view",
                   "content_view", "other"],
        )
        # referrals' fission task "reward after N valid invites: points" credits engagement points
        register_reward_hook("points", grant_fission_points)
