"""The event table partitioned by month on PostgreSQL (migration 0005, ``shequn.activity.partitions``):
de-duplication across months through the event keys, the default partition, creating months ahead
(rows moved out of the default partition), archiving a month to a verified gzip'd CSV and dropping it."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io

import pytest
from django.core.management import call_command
from django.db import connection

from shequn.activity import partitions
from shequn.activity.models import ActivityEvent, EventKey
from shequn.activity.services import do_ingest
from shequn.activity.tasks import create_partitions
from shequn.core.models import Tenant

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _ev(i: int, when: dt.datetime) -> dict[str, object]:
    return {"platform": "telegram", "event_id": f"p-{i}", "kind": "message", "sender": f"u{i % 3}",
            "occurred_at": when.isoformat(), "payload": {"text": f"第{i}条"}}


def _where(pk: int) -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT tableoid::regclass::text FROM activity_activityevent WHERE id = %s", [pk])
        return str(cur.fetchone()[0])


def test_the_table_is_partitioned_by_month_with_a_default_partition():
    with connection.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE relname = 'activity_activityevent'")
        assert cur.fetchone()[0] == "p"
        cur.execute("SELECT pg_get_partkeydef('activity_activityevent'::regclass)")
        assert cur.fetchone()[0] == "RANGE (occurred_at)"
    months = partitions.partition_months()
    this = partitions.month_start(dt.datetime.now(dt.UTC).date())
    assert this in months and len([m for m in months if m > this]) >= 3


def test_ingest_deduplicates_across_months_and_routes_rows_to_their_month():
    tenant = Tenant.objects.create(slug="part", name="分区")
    now = dt.datetime.now(dt.UTC)
    first = do_ingest(tenant.pk, [_ev(1, now), _ev(2, now - dt.timedelta(days=40))])
    assert first.stored == 2
    # the same keys again, one with another time (another month): still one row each
    again = do_ingest(tenant.pk, [_ev(1, now - dt.timedelta(days=70)), _ev(2, now)])
    assert again.stored == 0 and again.duplicates == 2
    assert ActivityEvent.objects.filter(tenant=tenant).count() == 2
    assert EventKey.objects.filter(tenant=tenant).count() == 2
    assert _where(first.event_ids[0]).endswith(f"_p{now:%Y%m}") or _where(first.event_ids[1]).endswith(
        f"_p{now:%Y%m}")


def test_a_month_created_later_takes_its_rows_from_the_default_partition_and_archive_drops_it(tmp_path):
    tenant = Tenant.objects.create(slug="arch", name="归档")
    old = dt.datetime(2019, 5, 17, 8, 30, tzinfo=dt.UTC)
    res = do_ingest(tenant.pk, [_ev(i, old + dt.timedelta(hours=i)) for i in range(7)])
    assert res.stored == 7
    assert _where(res.event_ids[0]) == "activity_activityevent_default"

    made = partitions.do_create_partitions(0, today=dt.date(2019, 5, 3))
    assert made == ["activity_activityevent_p201905"]
    assert {_where(pk) for pk in res.event_ids} == {"activity_activityevent_p201905"}
    assert partitions.do_create_partitions(0, today=dt.date(2019, 5, 3)) == []  # idempotent

    with pytest.raises(partitions.Invalid):
        partitions.do_archive_months(partitions.next_month(partitions.month_start(dt.datetime.now(dt.UTC).date())))
    dry = partitions.do_archive_months(dt.date(2019, 6, 1), directory=tmp_path, dry_run=True)
    assert [(a.month, a.rows) for a in dry] == [(dt.date(2019, 5, 1), 7)]
    assert ActivityEvent.objects.filter(tenant=tenant).count() == 7

    done = partitions.do_archive_months(dt.date(2019, 6, 1), directory=tmp_path)
    assert [(a.month, a.rows) for a in done] == [(dt.date(2019, 5, 1), 7)]
    with gzip.open(done[0].path, "rt", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["platform_event_id"] for r in rows) == [f"p-{i}" for i in range(7)]
    assert rows[0]["payload"].startswith("{")
    assert dt.date(2019, 5, 1) not in partitions.partition_months()
    assert ActivityEvent.objects.filter(tenant=tenant).count() == 0
    assert EventKey.objects.filter(tenant=tenant).count() == 0


def test_the_commands(tmp_path, settings):
    settings.HOME = tmp_path
    out = io.StringIO()
    call_command("activity", "partitions", "--months", "4", stdout=out)
    assert "created" in out.getvalue()
    out = io.StringIO()
    call_command("activity", "archive", "--before", "2000-01", stdout=out)
    assert "nothing to archive" in out.getvalue()


def test_the_nightly_task_keeps_three_months_ahead():
    with connection.cursor() as cur:
        nxt = partitions.next_month(partitions.next_month(partitions.next_month(
            partitions.month_start(dt.datetime.now(dt.UTC).date()))))
        cur.execute(f"DROP TABLE activity_activityevent_p{nxt:%Y%m}")
    assert create_partitions.call() == 1
    assert nxt in partitions.partition_months()
    assert create_partitions.call() == 0
