"""Django's ``makemessages`` with two shequn rules.

* Every string of the shequn package goes to the one project catalog (``LOCALE_PATHS[0]``,
  ``src/shequn/locale``). Django would give an app with its own ``locale/`` dir (the console,
  whose ``locale/zh_Hans`` translates unfold's English strings) a second English catalog, and a
  msgid used both there and elsewhere would then need translating twice.
* The alias some modules import ``gettext_lazy`` as is extracted too: xgettext only knows the
  names it is told, so a string marked ``_l("…")`` would never reach the catalog.
  ``core/tests/test_i18n.py`` fails when a module imports a translation function under a name
  that is neither xgettext's nor listed here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.commands import makemessages

import shequn

#: extra xgettext keywords: import aliases of django.utils.translation functions used in shequn
EXTRA_KEYWORDS = {"_l": "gettext_lazy"}
PACKAGE = os.path.abspath(Path(shequn.__file__).parent)


class Command(makemessages.Command):
    xgettext_options = [*makemessages.Command.xgettext_options, *(f"--keyword={k}" for k in EXTRA_KEYWORDS)]

    def find_files(self, root: Any) -> list[Any]:
        files = super().find_files(root)
        if settings.LOCALE_PATHS:
            catalog = os.path.abspath(settings.LOCALE_PATHS[0])
            for f in files:
                if os.path.abspath(f.dirpath).startswith(PACKAGE + os.sep) or os.path.abspath(f.dirpath) == PACKAGE:
                    f.locale_dir = catalog
        return files
