from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    name = "shequn.core"
    label = "core"
    verbose_name = _("组织与权限")

    def ready(self) -> None:
        # -- outgoing webhooks (issue 14 C; to move into shequn/wiring.py) ------------------------
        # joins/leaves from the activity stream and paid/refunded orders from commerce's order events
        # become member.joined/left and order.paid/refunded webhooks, through the shared delivery
        # mechanism (core.streams: retried with backoff, dead-lettered for staff)
        from shequn.activity.registry import register_consumer
        from shequn.commerce.events import register_order_listener

        from .webhooks import on_activity, on_order_event

        register_consumer("webhooks", on_activity, kinds=["join", "leave"])
        register_order_listener("webhooks", on_order_event)
