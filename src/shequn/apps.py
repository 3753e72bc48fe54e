from django.apps import AppConfig


class WiringConfig(AppConfig):
    """The top of the house (last in ``INSTALLED_APPS``): holds the commands that span every app
    (``shequn demo``) and, once every app is loaded, declares the cross-app subscriptions
    (:mod:`shequn.wiring`)."""

    name = "shequn"
    label = "shequn"
    verbose_name = "shequn"

    def ready(self) -> None:
        # the wiring imports every app's models: only once they are loaded
        from shequn import wiring  # noqa: PLC0415

        wiring.connect()
