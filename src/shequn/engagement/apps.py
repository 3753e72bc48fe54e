from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EngagementConfig(AppConfig):
    name = "shequn.engagement"
    label = "engagement"
    verbose_name = _("活跃运营")

    def ready(self) -> None:
        from shequn.activity.registry import register_consumer

        from .services import handle_activity

        register_consumer(
            "engagement", handle_activity,
            kinds=["message", "reply", "reaction", "join", "leave", "check_in", "purchase", "invite", "live_view",
                   "content_view", "other"],
        )
