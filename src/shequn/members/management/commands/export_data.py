"""``shequn export members [--format csv|xlsx] [-o FILE]``: export members (phones masked)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from shequn.members.importing import export_csv, export_xlsx

from .import_data import _tenant


class Command(BaseCommand):
    help = "Export data. Usage: shequn export members [--format csv|xlsx] [-o FILE]"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("what", choices=["members"])
        parser.add_argument("--tenant", default=None)
        parser.add_argument("--format", choices=["csv", "xlsx"], default="csv")
        parser.add_argument("-o", "--output", default=None, help="file (default: stdout for csv)")

    def handle(self, *args: Any, **opts: Any) -> None:
        tenant = _tenant(opts["tenant"])
        data = export_xlsx(tenant.pk) if opts["format"] == "xlsx" else export_csv(tenant.pk)
        if opts["output"]:
            Path(opts["output"]).write_bytes(data)
            self.stderr.write(f"written {opts['output']}")
        else:
            sys.stdout.buffer.write(data)
