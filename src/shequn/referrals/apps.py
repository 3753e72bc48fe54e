from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReferralsConfig(AppConfig):
    name = "shequn.referrals"
    label = "referrals"
    verbose_name = _("裂变分销")

    def ready(self) -> None:
        from shequn.activity.registry import register_consumer

        from .services import on_activity_events, register_with_commerce

        register_consumer("referrals", on_activity_events, kinds=["join"])
        register_with_commerce()
