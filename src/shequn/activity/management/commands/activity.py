"""``shequn activity partitions [--months N]`` and ``shequn activity archive --before YYYY-MM [--dry-run]``:
the monthly partitions of the event table on PostgreSQL (``shequn.activity.partitions``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shequn.activity import partitions
from shequn.core.errors import Invalid


def _month(value: str) -> dt.date:
    try:
        return dt.datetime.strptime(value, "%Y-%m").date()
    except ValueError as exc:
        raise CommandError(f"--before: YYYY-MM expected, got {value!r}") from exc


class Command(BaseCommand):
    help = "Monthly partitions of the activity event table (PostgreSQL): create ahead, archive and drop old."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        p = sub.add_parser("partitions", help="create the partitions of this month and the next ones")
        p.add_argument("--months", type=int, default=3, help="months ahead (default 3)")
        a = sub.add_parser("archive", help="dump each month before --before to $SHEQUN_HOME/archive, verify, drop")
        a.add_argument("--before", required=True, help="YYYY-MM: months before this one are archived")
        a.add_argument("--dry-run", action="store_true", help="only say what would be archived")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            if opts["action"] == "partitions":
                made = partitions.do_create_partitions(opts["months"])
                for name in made:
                    self.stdout.write(f"created {name}")
                months = partitions.partition_months()
                self.stdout.write(f"{len(made)} created; partitions {months[0]:%Y-%m} … {months[-1]:%Y-%m}"
                                  if months else f"{len(made)} created")
            else:
                done = partitions.do_archive_months(_month(opts["before"]), dry_run=opts["dry_run"])
                for a in done:
                    verb = "would archive" if opts["dry_run"] else "archived"
                    self.stdout.write(f"{verb} {a.month:%Y-%m}: {a.rows} rows → {a.path} ({a.bytes} bytes)")
                if not done:
                    self.stdout.write("nothing to archive")
        except Invalid as exc:
            raise CommandError(exc.message) from exc
