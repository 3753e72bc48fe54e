"""Content SOP: recurring posts, quiet hours, join-relative sequences and the no-sell cooldown."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from shequn.communities.models import Community, Membership
from shequn.connectors.models import OutboxAction
from shequn.engagement.models import ContentDelivery, ContentItem, ContentSchedule
from shequn.engagement.selectors import shift_out_of_quiet, upcoming_occurrences
from shequn.engagement.services import (
    do_collect_post_results,
    do_run_content_schedules,
    render_content,
)

SH = ZoneInfo("Asia/Shanghai")


def test_quiet_hours_shift_wraps_midnight():
    quiet = (dt.time(22), dt.time(8))
    late = dt.datetime(2026, 3, 9, 23, 30, tzinfo=SH)
    early = dt.datetime(2026, 3, 10, 6, 0, tzinfo=SH)
    noon = dt.datetime(2026, 3, 10, 12, 0, tzinfo=SH)
    assert shift_out_of_quiet(late, quiet, "Asia/Shanghai") == dt.datetime(2026, 3, 10, 8, 0, tzinfo=SH)
    assert shift_out_of_quiet(early, quiet, "Asia/Shanghai") == dt.datetime(2026, 3, 10, 8, 0, tzinfo=SH)
    assert shift_out_of_quiet(noon, quiet, "Asia/Shanghai") == noon
    assert shift_out_of_quiet(noon, (dt.time(12), dt.time(14)), "Asia/Shanghai") == noon.replace(hour=14)


def test_recurring_daily_tip_and_saturday_recipe_idempotent(tenant, community, group):
    tip = ContentItem.objects.create(tenant=tenant, title="每日小贴士", body="今天的保养小贴士")
    recipe = ContentItem.objects.create(tenant=tenant, title="周六食谱", kind="markdown", body="**红烧肉**")
    s1 = ContentSchedule.objects.create(tenant=tenant, content=tip, kind="recurring", community=community,
                                        time_of_day=dt.time(8, 0))
    s2 = ContentSchedule.objects.create(tenant=tenant, content=recipe, kind="recurring", group=group,
                                        time_of_day=dt.time(10, 0), weekdays=[5])
    ContentSchedule.objects.filter(pk__in=[s1.pk, s2.pk]).update(created_at=dt.datetime(2026, 3, 1, tzinfo=SH))
    now = dt.datetime(2026, 3, 14, 10, 30, tzinfo=SH)  # a Saturday
    counts = do_run_content_schedules(tenant.pk, now=now)
    # the 2-day look-back covers the 13th and 14th 08:00 tips; the recipe only on Saturday the 14th
    keys = sorted(ContentDelivery.objects.values_list("key", flat=True))
    assert counts["queued"] == len(keys) == 3
    assert sum(1 for k in keys if k.startswith(f"sop:{s2.pk}:")) == 1
    assert do_run_content_schedules(tenant.pk, now=now)["queued"] == 0
    action = OutboxAction.objects.get(idempotency_key__startswith=f"sop:{s2.pk}:")
    assert action.kind == "send" and action.payload == {"text": "**红烧肉**", "parse_mode": "Markdown"}


def test_quiet_hours_defer_a_fixed_post(tenant, community, group):
    item = ContentItem.objects.create(tenant=tenant, title="夜间通知", body="hi")
    s = ContentSchedule.objects.create(tenant=tenant, content=item, kind="fixed", group=group,
                                       run_at=dt.datetime(2026, 3, 9, 23, 0, tzinfo=SH))
    ContentSchedule.objects.filter(pk=s.pk).update(created_at=dt.datetime(2026, 3, 9, tzinfo=SH))
    assert do_run_content_schedules(tenant.pk, now=dt.datetime(2026, 3, 9, 23, 5, tzinfo=SH))["queued"] == 0
    assert do_run_content_schedules(tenant.pk, now=dt.datetime(2026, 3, 10, 7, 59, tzinfo=SH))["queued"] == 0
    assert do_run_content_schedules(tenant.pk, now=dt.datetime(2026, 3, 10, 8, 1, tzinfo=SH))["queued"] == 1
    d = ContentDelivery.objects.get()
    assert d.sent_at == dt.datetime(2026, 3, 10, 8, 0, tzinfo=SH)
    assert d.occurrence_at == dt.datetime(2026, 3, 9, 23, 0, tzinfo=SH)


@pytest.mark.parametrize(("joined_days_before", "expected"), [(3, "skipped_cooldown"), (45, "queued")])
def test_sequence_with_no_sell_cooldown(tenant, community, group, make_member, joined_days_before, expected):
    now = dt.datetime(2026, 3, 20, 9, 30, tzinfo=SH)
    promo = ContentItem.objects.create(tenant=tenant, title="新品优惠", body="限时 8 折", is_sales=True)
    offset = joined_days_before
    s = ContentSchedule.objects.create(tenant=tenant, content=promo, kind="sequence", community=community,
                                       day_offset=offset, time_of_day=dt.time(9, 0))
    ContentSchedule.objects.filter(pk=s.pk).update(created_at=now - dt.timedelta(days=60))
    m = make_member("新朋友", joined_days_ago=1)
    Membership.objects.filter(member=m).update(joined_at=now - dt.timedelta(days=offset, hours=1))
    do_run_content_schedules(tenant.pk, now=now)
    d = ContentDelivery.objects.get(member=m)
    assert d.status == expected
    assert OutboxAction.objects.filter(target_member=m).exists() == (expected == "queued")


def test_sales_post_held_back_in_a_young_community(tenant, group):
    Community.objects.filter(pk=group.community_id).update(created_at=dt.datetime(2026, 3, 10, tzinfo=SH))
    promo = ContentItem.objects.create(tenant=tenant, title="团购", body="买", is_sales=True)
    s = ContentSchedule.objects.create(tenant=tenant, content=promo, kind="fixed", group=group,
                                       run_at=dt.datetime(2026, 3, 20, 12, 0, tzinfo=SH))
    ContentSchedule.objects.filter(pk=s.pk).update(created_at=dt.datetime(2026, 3, 19, tzinfo=SH))
    counts = do_run_content_schedules(tenant.pk, now=dt.datetime(2026, 3, 20, 12, 1, tzinfo=SH))
    assert counts == {"queued": 0, "skipped_cooldown": 1, "no_route": 0}


def test_results_and_calendar_and_rendering(tenant, community, group, make_member, event):
    item = ContentItem.objects.create(tenant=tenant, title="链接", kind="link", body="看看", url="https://example.com/a")
    assert render_content(item, "wecom")["msgtype"] == "link"
    assert "https://example.com/a" in render_content(item, "telegram")["text"]
    now = dt.datetime(2026, 3, 20, 12, 0, tzinfo=SH)
    s = ContentSchedule.objects.create(tenant=tenant, content=item, kind="fixed", group=group,
                                       run_at=now - dt.timedelta(days=2))
    ContentSchedule.objects.filter(pk=s.pk).update(created_at=now - dt.timedelta(days=3))
    do_run_content_schedules(tenant.pk, now=now - dt.timedelta(days=2) + dt.timedelta(minutes=1))
    m = make_member()
    sent = now - dt.timedelta(days=2)
    event(m, "reply", sent + dt.timedelta(hours=1))
    event(m, "reaction", sent + dt.timedelta(hours=2))
    event(m, "reaction", sent + dt.timedelta(hours=30))  # outside 24 h
    assert do_collect_post_results(tenant.pk, now=now) == 1
    d = ContentDelivery.objects.get()
    assert (d.replies, d.reactions) == (1, 1)
    daily = ContentSchedule.objects.create(tenant=tenant, content=item, kind="recurring", community=community,
                                           time_of_day=dt.time(23, 0))
    cal = upcoming_occurrences(tenant.pk, now=now, days=2)
    assert [c["schedule_id"] for c in cal] == [daily.pk, daily.pk]
    assert cal[0]["at"].astimezone(SH).hour == 8  # 23:00 falls in quiet hours → next 08:00
