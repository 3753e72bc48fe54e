"""Django's ``makemessages``, also extracting the alias some modules import ``gettext_lazy`` as.

xgettext only knows the function names it is told about; a string marked ``_l("…")`` would
otherwise never reach the catalog and stay Chinese in the English console.
``core/tests/test_i18n.py`` fails when a module imports a translation function under a name
that is neither xgettext's nor listed here."""

from __future__ import annotations

from django.core.management.commands import makemessages

#: extra xgettext keywords: import aliases of django.utils.translation functions used in shequn
EXTRA_KEYWORDS = {"_l": "gettext_lazy"}


class Command(makemessages.Command):
    xgettext_options = [*makemessages.Command.xgettext_options, *(f"--keyword={k}" for k in EXTRA_KEYWORDS)]
