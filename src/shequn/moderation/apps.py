from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ModerationConfig(AppConfig):
    name = "shequn.moderation"
    label = "moderation"
    verbose_name = _("群规执行")

    def ready(self) -> None:
        from shequn.activity.registry import register_consumer
        from shequn.engagement.services import register_standing_check

        from .selectors import standing_problem
        from .services import MESSAGE_KINDS, moderate_consumer

        register_consumer("moderation", moderate_consumer, kinds=[str(k) for k in MESSAGE_KINDS])
        # lotteries and red packets refuse members who are banned, muted or recently struck
        register_standing_check(standing_problem)
        # the operator's own campaign texts (engagement's content library) are not ads when a member
        # who is not new relays them word for word (issue 16)
        from shequn.engagement.models import ContentItem

        from .selectors import register_campaign_source

        def content_library(tenant_id: int) -> list[str]:
            kinds = (ContentItem.Kind.TEXT, ContentItem.Kind.MARKDOWN)
            return list(ContentItem.objects.filter(tenant_id=tenant_id, kind__in=kinds).exclude(body="")
                        .order_by("pk").values_list("body", flat=True)[:500])

        register_campaign_source(content_library)
