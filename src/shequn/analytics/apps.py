from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AnalyticsConfig(AppConfig):
    name = "shequn.analytics"
    label = "analytics"
    verbose_name = _("数据分析")

    def ready(self) -> None:
        # -- subscriptions (to move into shequn/wiring.py) ------------------------------------------
        # the rollups follow the activity stream (every kind) and commerce's order events: both only
        # mark local days dirty; analytics.tasks.refresh_rollups recomputes them every minute
        from shequn.activity.registry import register_consumer
        from shequn.commerce.events import register_order_listener

        from .services import on_activity, on_order_event

        register_consumer("analytics", on_activity)
        register_order_listener("analytics", on_order_event)
