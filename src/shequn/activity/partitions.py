"""Monthly partitions of the event table on PostgreSQL (migration 0005): create the months ahead, and
archive old months to compressed files before dropping them.

* :func:`do_create_partitions` — one partition per calendar month (UTC), ``activity_activityevent_pYYYYMM``.
  Rows that landed in the DEFAULT partition (no month partition existed yet) are moved into the new
  partition in the same transaction, then it is attached.
* :func:`do_archive_months` — for every month partition before a given month: ``COPY`` it (CSV with a
  header, gzip) to ``$SHEQUN_HOME/archive/activity_activityevent_pYYYYMM.csv.gz``, read the file back and
  compare its row count with the partition's, then detach and drop the partition and delete the
  months' de-duplication keys. A count that differs stops before anything is dropped.

SQLite has no partitions: both raise :class:`~shequn.core.errors.Invalid`."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils.translation import gettext as _

from shequn.core.errors import Invalid

from .models import ActivityEvent, EventKey

TABLE = ActivityEvent._meta.db_table
_NAME = re.compile(rf"^{TABLE}_p(\d{{4}})(\d{{2}})$")


def month_start(d: dt.date) -> dt.date:
    return dt.date(d.year, d.month, 1)


def next_month(d: dt.date) -> dt.date:
    return dt.date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def _require_partitioned() -> None:
    if connection.vendor != "postgresql":
        raise Invalid(_("按月分区仅用于 PostgreSQL"), details={"field": "database"})


def partition_months() -> list[dt.date]:
    """The months that have a partition, oldest first."""
    _require_partitioned()
    with connection.cursor() as cur:
        cur.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = %s::regclass", [TABLE])
        names = [r[0] for r in cur.fetchall()]
    return sorted(dt.date(int(m[1]), int(m[2]), 1) for n in names if (m := _NAME.match(n)))


def _bounds(month: dt.date) -> tuple[str, str]:
    return f"{month.isoformat()} 00:00+00", f"{next_month(month).isoformat()} 00:00+00"


def do_create_partitions(months_ahead: int = 3, *, today: dt.date | None = None) -> list[str]:
    """Create the partitions of this month and the ``months_ahead`` next ones that are missing;
    return their names."""
    _require_partitioned()
    have = set(partition_months())
    month = month_start(today or dt.datetime.now(dt.UTC).date())
    created: list[str] = []
    for _i in range(months_ahead + 1):
        if month not in have:
            name = f"{TABLE}_p{month:%Y%m}"
            lo, hi = _bounds(month)
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute(f"LOCK TABLE {TABLE}_default IN ACCESS EXCLUSIVE MODE")
                cur.execute(f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS)")
                # rows of this month that fell into the default partition move with it
                cur.execute(f"WITH moved AS (DELETE FROM {TABLE}_default WHERE occurred_at >= %s AND "  # noqa: S608
                            f"occurred_at < %s RETURNING *) INSERT INTO {name} SELECT * FROM moved", [lo, hi])
                # DDL takes no bound parameters: the bounds are dates this function formatted
                cur.execute(f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')")
            created.append(name)
        month = next_month(month)
    return created


@dataclass
class Archived:
    month: dt.date
    rows: int
    path: Path
    bytes: int


def archive_dir() -> Path:
    return Path(settings.HOME) / "archive"


def do_archive_months(before: dt.date, *, directory: Path | None = None, dry_run: bool = False) -> list[Archived]:
    """Archive, verify and drop every month partition older than ``before`` (a month)."""
    _require_partitioned()
    before = month_start(before)
    if before > month_start(dt.datetime.now(dt.UTC).date()):
        raise Invalid(_("不能归档当前月份或未来月份"), details={"field": "before"})
    out_dir = directory or archive_dir()
    out: list[Archived] = []
    for month in [m for m in partition_months() if m < before]:
        name = f"{TABLE}_p{month:%Y%m}"
        path = out_dir / f"{name}.csv.gz"
        with connection.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {name}")  # noqa: S608 (a partition name we built)
            rows = int(cur.fetchone()[0])
        if dry_run:
            out.append(Archived(month, rows, path, 0))
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with transaction.atomic():
            with connection.cursor() as cur:
                # no writes into an archived month while it is copied and dropped
                cur.execute(f"LOCK TABLE {name} IN SHARE MODE")
                with gzip.open(tmp, "wb") as fh, cur.cursor.copy(
                        f"COPY (SELECT * FROM {name} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)"  # noqa: S608
                ) as copy:
                    for chunk in copy:
                        fh.write(chunk)
            written = _count_csv(tmp)
            if written != rows:
                tmp.unlink(missing_ok=True)
                raise Invalid(_("归档文件行数 %(file)s 与分区行数 %(rows)s 不符, 未删除任何数据")
                              % {"file": written, "rows": rows}, details={"field": "archive"})
            tmp.replace(path)
            with connection.cursor() as cur:
                cur.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {name}")
                cur.execute(f"DROP TABLE {name}")
            lo_at = dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC)
            nxt = next_month(month)
            EventKey.objects.filter(occurred_at__gte=lo_at,
                                    occurred_at__lt=dt.datetime(nxt.year, nxt.month, 1, tzinfo=dt.UTC)).delete()
        out.append(Archived(month, rows, path, path.stat().st_size))
    return out


def _count_csv(path: Path) -> int:
    with gzip.open(path, "rb") as fh, io.TextIOWrapper(fh, encoding="utf-8", newline="") as text:
        return sum(1 for _row in csv.reader(text)) - 1  # the header
