"""PostgreSQL only: the event table becomes a declaratively partitioned table, RANGE on ``occurred_at``,
one partition per calendar month (UTC) from the oldest event's month to three months ahead, plus a
DEFAULT partition for anything outside (``shequn activity partitions`` creates the months ahead, and
moves rows out of the default partition when it creates their month).

Steps, in one transaction: rename the old table; create the partitioned one with the same columns
(identity included) and its partitions; copy the rows; drop the old table; then the primary key
``(id, occurred_at)`` (a partitioned table's unique keys must include the partition key), the same
indexes and foreign keys as before (re-created from the old table's definitions), the identity
restarted after the highest id, and the de-duplication keys (``activity_eventkey``) filled from the
events — they replace the unique constraint ``activity_unique_event``, which cannot span partitions.

SQLite: nothing changes (the unique constraint stays, ``activity_eventkey`` stays empty)."""

import datetime as dt

from django.db import migrations

TABLE = "activity_activityevent"
OLD = "activity_activityevent_unpartitioned"
MONTHS_AHEAD = 3


def _month(d):
    return dt.date(d.year, d.month, 1)


def _next(d):
    return dt.date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def partition(apps, schema_editor):
    conn = schema_editor.connection
    if conn.vendor != "postgresql":
        return
    with conn.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE relname = %s", [TABLE])
        if cur.fetchone()[0] == "p":  # already partitioned
            return
        cur.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
        cur.execute(f"ALTER TABLE {TABLE} RENAME TO {OLD}")
        cur.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = %s::regclass AND contype = 'f'", [OLD])
        fks = cur.fetchall()
        cur.execute("SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                    "WHERE x.indrelid = %s::regclass AND NOT x.indisunique AND NOT x.indisprimary", [OLD])
        indexes = cur.fetchall()
        cur.execute(f"CREATE TABLE {TABLE} (LIKE {OLD} INCLUDING DEFAULTS INCLUDING IDENTITY) "
                    "PARTITION BY RANGE (occurred_at)")
        cur.execute(f"SELECT min(occurred_at) AT TIME ZONE 'UTC' FROM {OLD}")
        oldest = cur.fetchone()[0]
        today = dt.datetime.now(dt.UTC).date()
        month = _month(oldest.date() if oldest else today)
        # a table holding years of history keeps one partition per month; anything older than ten years
        # (a wrong platform clock) lands in the default partition
        month = max(month, _month(today.replace(year=today.year - 10)))
        end = _month(today)
        for _ in range(MONTHS_AHEAD):
            end = _next(end)
        while month <= end:
            cur.execute(f"CREATE TABLE {TABLE}_p{month:%Y%m} PARTITION OF {TABLE} "
                        f"FOR VALUES FROM ('{month.isoformat()} 00:00+00') TO ('{_next(month).isoformat()} 00:00+00')")
            month = _next(month)
        cur.execute(f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT")
        cur.execute(f"INSERT INTO {TABLE} SELECT * FROM {OLD}")
        cur.execute(f"DROP TABLE {OLD}")
        cur.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id, occurred_at)")
        cur.execute(f"CREATE INDEX activity_event_key_idx ON {TABLE} (tenant_id, platform, platform_event_id)")
        for name, definition in indexes:
            # "CREATE INDEX name ON public.activity_activityevent_unpartitioned USING btree (...)"
            cur.execute(definition.replace(f" ON public.{OLD} ", f" ON {TABLE} ").replace(f" ON {OLD} ", f" ON {TABLE} "))
        for name, definition in fks:
            cur.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} {definition}")
        cur.execute(f"SELECT setval(pg_get_serial_sequence('{TABLE}', 'id'), COALESCE(max(id), 1), "
                    f"max(id) IS NOT NULL) FROM {TABLE}")
        cur.execute("INSERT INTO activity_eventkey (tenant_id, platform, platform_event_id, occurred_at) "
                    f"SELECT tenant_id, platform, platform_event_id, occurred_at FROM {TABLE} "
                    "ON CONFLICT (tenant_id, platform, platform_event_id) DO NOTHING")


class Migration(migrations.Migration):
    atomic = True

    dependencies = [
        ("activity", "0004_eventkey"),
        ("moderation", "0002_event_without_db_constraint"),
    ]

    operations = [migrations.RunPython(partition, migrations.RunPython.noop, elidable=False)]
