"""The ``shequn`` command: every ``manage.py`` command plus shequn's own.

``shequn import members FILE`` and ``shequn export members`` are spelled as operators expect and
map onto the ``import_data`` / ``export_data`` management commands."""

from __future__ import annotations

import os
import sys

from django.core.management import execute_from_command_line

ALIASES = {"import": "import_data", "export": "export_data"}


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shequn.settings")
    args = list(sys.argv if argv is None else argv)
    if len(args) > 1 and args[1] in ALIASES:
        args[1] = ALIASES[args[1]]

    execute_from_command_line(["shequn", *args[1:]])


if __name__ == "__main__":
    main()
