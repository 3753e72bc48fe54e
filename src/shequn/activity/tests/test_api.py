"""Activity REST API: batch ingest (idempotent, bad events by index) and event listing."""

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shequn.activity.models import ActivityEvent
from shequn.communities.models import Membership
from shequn.members.models import Identity, Member

URL = "/api/v1/activity/events"
T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def ev(i, **kw):
    base = {"platform": "telegram", "event_id": f"e-{i}", "kind": "message", "sender": "tg-甲",
            "group": "room-甲", "occurred_at": (T0 + dt.timedelta(minutes=i)).isoformat()}
    return {**base, **kw}


def test_same_event_twice_is_stored_once(world, make_client):
    c = make_client(world.tenant)
    first = c.post(URL, {"events": [ev(1), ev(2), ev(1)]}).json()
    assert first == {"stored": 2, "duplicates": 1, "created_members": 0, "errors": []}
    second = c.post(URL, {"events": [ev(1), ev(2), ev(3)]}).json()
    assert second["stored"] == 1 and second["duplicates"] == 2
    assert ActivityEvent.objects.filter(tenant=world.tenant, platform_event_id__startswith="e-").count() == 3


def test_bad_events_reported_by_index_good_ones_stored(world, make_client):
    c = make_client(world.tenant)
    events = [
        ev(1),
        ev(2, platform="myspace"),
        "not an object",
        ev(4, occurred_at="yesterday"),
        ev(5, event_id=""),
        ev(6, payload=[1, 2]),
        ev(7, sender=None),
        ev(8, member_id="seven"),
        ev(9, kind="sticker"),  # unknown kind: stored as other
        ev(10),
    ]
    resp = c.post(URL, {"events": events})
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["stored"] == 3
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "platform"), (2, ""), (3, "occurred_at"), (4, "event_id"), (5, "payload"), (6, "sender"),
        (7, "member_id"),
    ]
    assert all(e["message"] for e in body["errors"])
    stored = ActivityEvent.objects.filter(tenant=world.tenant, platform_event_id__in=["e-1", "e-9", "e-10"])
    assert stored.count() == 3
    other = stored.get(platform_event_id="e-9")
    assert other.kind == "other" and other.payload["raw_kind"] == "sticker"


def test_unknown_sender_becomes_a_member(world, make_client):
    c = make_client(world.tenant)
    body = c.post(URL, {"events": [ev(1, sender="tg-new", sender_name="新朋友"), ev(2, sender="tg-new")]}).json()
    assert body["stored"] == 2 and body["created_members"] == 1
    ident = Identity.objects.get(tenant=world.tenant, platform="telegram", external_id="tg-new")
    assert ident.member.display_name == "新朋友"
    assert ident.member.last_active_at == T0 + dt.timedelta(minutes=2)
    off = c.post(URL, {"events": [ev(3, sender="tg-ghost")], "create_members": False}).json()
    assert off["created_members"] == 0 and off["stored"] == 1
    assert not Identity.objects.filter(external_id="tg-ghost").exists()


def test_join_and_leave_events_open_and_close_memberships(world, make_client):
    c = make_client(world.tenant)
    events = [ev(1, kind="join", sender="tg-joiner", payload={"join_source": "qr"}),
              ev(2, kind="message", sender="tg-joiner")]
    assert c.post(URL, {"events": events}).json()["stored"] == 2
    member = Member.objects.get(identities__external_id="tg-joiner")
    ms = Membership.objects.get(member=member, community=world.community, group=world.group)
    assert ms.left_at is None and ms.join_source == "qr" and ms.joined_at == T0 + dt.timedelta(minutes=1)
    c.post(URL, {"events": [ev(3, kind="leave", sender="tg-joiner", payload={"reason": "退群"})]})
    ms.refresh_from_db()
    assert ms.left_at == T0 + dt.timedelta(minutes=3) and ms.exit_reason == "退群"
    # replaying the join does not reopen it (the event is a duplicate)
    assert c.post(URL, {"events": events}).json()["duplicates"] == 2
    assert not Membership.objects.filter(member=member, left_at__isnull=True).exists()


def test_batch_limits(world, make_client):
    c = make_client(world.tenant)
    too_many = c.post(URL, {"events": [ev(i) for i in range(5001)]})
    assert too_many.status_code == 422
    assert too_many.json()["details"][0]["field"] == "body.payload.events"
    assert not ActivityEvent.objects.filter(platform_event_id="e-0").exists()


def test_list_events_filters_and_cursor(world, make_client):
    c = make_client(world.tenant)
    c.post(URL, {"events": [ev(i) for i in range(5)] + [ev(9, kind="check_in", sender="tg-x", group=None)]})
    all_items = c.get(URL, {"limit": 500}).json()["items"]
    assert len(all_items) == 7  # + the world's own event
    page = c.get(URL, {"limit": 2}).json()
    nxt = c.get(URL, {"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [e["id"] for e in page["items"] + nxt["items"]] == [e["id"] for e in all_items[:4]]
    assert {e["kind"] for e in c.get(URL, {"kind": "check_in"}).json()["items"]} == {"check_in"}
    by_member = c.get(URL, {"member_id": world.member.pk, "limit": 500}).json()["items"]
    assert len(by_member) == 6
    by_comm = c.get(URL, {"community_id": world.community.pk, "limit": 500}).json()["items"]
    assert len(by_comm) == 6
    window = c.get(URL, {"since": (T0 + dt.timedelta(minutes=1)).isoformat(),
                         "until": (T0 + dt.timedelta(minutes=3)).isoformat()}).json()["items"]
    assert sorted(e["platform_event_id"] for e in window) == ["e-1", "e-2"]
    assert c.get(URL, {"since": "not a date"}).status_code == 422


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=40),
       bad=st.sets(st.integers(min_value=0, max_value=39)))
def test_ingest_accounting_invariant(world, make_client, ids, bad):
    """stored + duplicates + errors == batch size, and each distinct good event id exists exactly once."""
    c = make_client(world.tenant)
    events = [ev(i, occurred_at="bad") if n in bad else ev(i) for n, i in enumerate(ids)]
    body = c.post(URL, {"events": events}).json()
    assert body["stored"] + body["duplicates"] + len(body["errors"]) == len(events)
    good_ids = {f"e-{i}" for n, i in enumerate(ids) if n not in bad}
    for eid in good_ids:
        assert ActivityEvent.objects.filter(tenant=world.tenant, platform_event_id=eid).count() == 1
