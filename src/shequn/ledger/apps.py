from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LedgerConfig(AppConfig):
    name = "shequn.ledger"
    label = "ledger"
    verbose_name = _("账本")

    def ready(self) -> None:
        # the ledger funds engagement's cash red packets (engagement never imports the ledger)
        from shequn.engagement.services import register_cash_wallet

        from .wallet import LedgerCashWallet

        register_cash_wallet(LedgerCashWallet())
