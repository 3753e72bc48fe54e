from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PortalConfig(AppConfig):
    name = "shequn.portal"
    label = "portal"
    verbose_name = _("会员页面")

    def ready(self) -> None:
        # --- member data rights (sec): erasing a member ends their portal sessions
        from shequn.members.services import register_erasure_step

        from .services import do_end_member_sessions

        register_erasure_step("portal_sessions", do_end_member_sessions)
