"""``shequn restore FILE [--force] [--no-check]``: bring a ``shequn backup`` archive back.

Into the database the environment names (``SHEQUN_DATABASE_URL``; it must exist and, without
``--force``, be empty — ``createdb shequn_new`` first), the keys into ``$SHEQUN_HOME``, the uploads
into ``MEDIA_ROOT``; then ``shequn ledger check`` runs on the restored books (``--no-check`` skips it)
and the command exits non-zero when they do not balance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from shequn.core.backup import BackupError, restore_backup


class Command(BaseCommand):
    help = "Restore a `shequn backup` archive into the configured database, keys and uploads."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive")
        parser.add_argument("--force", action="store_true", help="replace a database that is not empty")
        parser.add_argument("--no-check", action="store_true", help="do not run the ledger check afterwards")

    def handle(self, *args: Any, **opts: Any) -> None:
        archive = Path(opts["archive"])
        if not archive.is_file():
            raise CommandError(f"备份文件不存在 / no such file: {archive}")
        try:
            result = restore_backup(archive, force=opts["force"])
        except BackupError as exc:
            raise CommandError(f"恢复失败 / restore failed: {exc}") from exc
        m = result.manifest
        self.stdout.write(f"restored the {m.vendor} database of {m.created_at} (shequn {m.version}), the keys and "
                          f"{result.media_files} uploaded file(s)")
        for note in result.notes:
            self.stderr.write(note)
        if not opts["no_check"]:
            call_command("ledger", "check", stdout=self.stdout, stderr=self.stderr)
