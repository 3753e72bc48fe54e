"""``shequn backup [--output FILE]``: the database, the keys and the uploads in one archive.

    shequn backup                               # $SHEQUN_HOME/backups/shequn-<UTC time>.tar.gz
    shequn backup --output /srv/backups/site.tar.gz

What is inside and how it is made: ``shequn.core.backup``. The archive holds SECRET_KEY (and
FIELD_KEY): keep it where you keep keys."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from shequn.core.backup import BackupError, create_backup


class Command(BaseCommand):
    help = "Back up the database, the secret key and the uploads into one .tar.gz archive."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", default=None, help="archive path (default: $SHEQUN_HOME/backups/…)")

    def handle(self, *args: Any, **opts: Any) -> None:
        output = opts["output"]
        if not output:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            output = Path(settings.HOME) / "backups" / f"shequn-{stamp}.tar.gz"
        try:
            manifest = create_backup(Path(output))
        except BackupError as exc:
            raise CommandError(f"备份失败 / backup failed: {exc}") from exc
        self.stderr.write(f"backup of the {manifest.vendor} database, the keys and {manifest.media_files} "
                          "uploaded file(s) written to:")
        self.stdout.write(str(Path(output).resolve()))
