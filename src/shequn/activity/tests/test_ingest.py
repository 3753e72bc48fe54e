import datetime as dt

import pytest
from django.utils import timezone

from shequn.activity import registry
from shequn.activity.models import ActivityEvent
from shequn.activity.services import do_dispatch, do_ingest
from shequn.communities.models import ChatGroup, Community, Membership
from shequn.core import streams
from shequn.core.models import DeliveryFailure
from shequn.core.testing import race
from shequn.members.models import Identity, Member


@pytest.fixture
def group(tenant):
    c = Community.objects.create(tenant=tenant, name="车友会")
    return ChatGroup.objects.create(tenant=tenant, community=c, platform="matrix", external_id="!r:x", name="r")


def ev(i, kind="message", sender="@a:x", group="!r:x", when=None, **extra):
    return {"platform": "matrix", "event_id": f"$e{i}", "kind": kind, "sender": sender, "group": group,
            "occurred_at": (when or timezone.now()).isoformat(), "payload": extra}


def test_same_event_twice_is_stored_once(tenant, group):
    first = do_ingest(tenant.pk, [ev(1), ev(2)])
    again = do_ingest(tenant.pk, [ev(1), ev(2), ev(3)])
    assert (first.stored, first.duplicates) == (2, 0)
    assert (again.stored, again.duplicates) == (1, 2)
    assert ActivityEvent.objects.filter(tenant=tenant).count() == 3


def test_duplicates_inside_one_batch_are_stored_once(tenant, group):
    result = do_ingest(tenant.pk, [ev(1), ev(1)])
    assert (result.stored, result.duplicates) == (1, 1)


def test_event_ids_are_per_tenant(tenant, other_tenant, group):
    do_ingest(tenant.pk, [ev(1)])
    result = do_ingest(other_tenant.pk, [ev(1)])
    assert result.stored == 1


def test_bad_events_are_reported_by_index_and_good_ones_stored(tenant, group):
    batch = [ev(1), {"platform": "icq", "event_id": "x"}, ev(2, when=None) | {"occurred_at": "yesterday"},
             "not an object", ev(3) | {"event_id": ""}, ev(4)]
    result = do_ingest(tenant.pk, batch)
    assert result.stored == 2
    assert [(e.index, e.field) for e in result.errors] == [
        (1, "platform"), (2, "occurred_at"), (3, ""), (4, "event_id")]
    assert ActivityEvent.objects.count() == 2


def test_unknown_kind_is_stored_raw_as_other(tenant, group):
    do_ingest(tenant.pk, [ev(1, kind="m.sticker")])
    e = ActivityEvent.objects.get()
    assert e.kind == "other" and e.payload["raw_kind"] == "m.sticker"


def test_unknown_sender_becomes_a_member_with_identity(tenant, group):
    do_ingest(tenant.pk, [ev(1, sender="@new:x") | {"sender_name": "新朋友"}])
    identity = Identity.objects.get(tenant=tenant, platform="matrix", external_id="@new:x")
    assert identity.member.display_name == "新朋友"
    assert ActivityEvent.objects.get().member_id == identity.member_id


def test_resolves_group_and_community_and_last_active(tenant, group):
    when = timezone.now() - dt.timedelta(hours=1)
    do_ingest(tenant.pk, [ev(1, when=when)])
    e = ActivityEvent.objects.get()
    assert (e.group_id, e.community_id) == (group.pk, group.community_id)
    assert Member.objects.get().last_active_at == when.replace(microsecond=when.microsecond)


def test_join_and_leave_open_and_close_memberships(tenant, group):
    t0 = timezone.now() - dt.timedelta(days=2)
    do_ingest(tenant.pk, [ev(1, kind="join", when=t0), ev(2, kind="leave", when=t0 + dt.timedelta(days=1),
                                                          reason="退群")])
    m = Membership.objects.get()
    assert m.joined_at == t0 and m.left_at is not None and m.exit_reason == "退群"
    do_ingest(tenant.pk, [ev(3, kind="join")])
    assert Membership.objects.filter(left_at__isnull=True).count() == 1
    assert Membership.objects.count() == 2  # history kept
    # a replayed join does not open a second membership
    do_ingest(tenant.pk, [ev(3, kind="join")])
    assert Membership.objects.count() == 2


def test_batch_limit(tenant):
    result = do_ingest(tenant.pk, [ev(i) for i in range(5001)])
    assert result.stored == 0 and result.errors[0].index == -1


def test_consumers_get_new_events_and_failures_are_retried(tenant, group):
    seen = []
    calls = {"n": 0}

    def ok(tenant_id, events):
        seen.extend(e.platform_event_id for e in events)

    def flaky(tenant_id, events):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")

    registry.register_consumer("t-ok", ok, kinds=["message"])
    registry.register_consumer("t-flaky", flaky)
    try:
        do_ingest(tenant.pk, [ev(1), ev(2, kind="join")])
        assert seen == ["$e1"]  # kinds filter honoured
        failure = DeliveryFailure.objects.get()
        assert failure.stream == "activity" and failure.subscriber == "t-flaky" and failure.state == "pending"
        assert "boom" in failure.error and failure.attempts == 1
        # the replay of the same events stores nothing new and dispatches nothing
        do_ingest(tenant.pk, [ev(1)])
        assert seen == ["$e1"]
        assert streams.retry_due() == 0  # not due yet: backoff
        assert streams.retry_due(now=timezone.now() + streams.RETRY_BASE) == 1
        assert DeliveryFailure.objects.get().state == "resolved"
        assert seen == ["$e1"]  # only the failed consumer was re-run
        assert do_dispatch(tenant.pk, failure.refs, only="t-flaky") == {"t-flaky": "ok"}
    finally:
        registry.unregister_consumer("t-ok")
        registry.unregister_consumer("t-flaky")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_ingest_of_the_same_events_stores_each_once(tenant):
    batch = [ev(i, sender=f"@u{i % 7}:x", group=None) for i in range(300)]

    # each thread sends the batch in its own order; unknown senders are created concurrently
    results = race(lambda i: do_ingest(tenant.pk, batch[75 * i:] + batch[:75 * i]), 4)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert [r.errors for r in results] == [[], [], [], []]
    assert sum(r.stored for r in results) == 300
    assert sum(r.duplicates for r in results) == 900
    assert ActivityEvent.objects.filter(tenant=tenant).count() == 300
    # no orphan members from the threads that lost the race
    assert Identity.objects.filter(tenant=tenant).count() == 7
    assert Member.objects.filter(tenant=tenant).count() == 7
    assert ActivityEvent.objects.filter(tenant=tenant, member__isnull=True).count() == 0
