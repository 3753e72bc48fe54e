"""Leaderboards, fission rewards, fraud signals, posters and reports."""

from __future__ import annotations

import io
import os
from datetime import timedelta

import pytest
import redis
from django.db import transaction
from django.utils import timezone
from PIL import Image

from shequn.core.permissions import Principal
from shequn.referrals import leaderboard
from shequn.referrals.models import (
    CommissionState,
    FissionReward,
    FissionTask,
    FraudKind,
    FraudSignal,
    ReferralPolicy,
)
from shequn.referrals.posters import poster_png, qr_png
from shequn.referrals.selectors import kfactor_report, link_url, member_statement, top_referrers
from shequn.referrals.services import (
    do_create_plan,
    do_get_or_create_link,
    do_record_click,
    do_review_signal,
    fission,
    on_order_event,
    register_reward_hook,
)
from shequn.testing.factories import MemberFactory, order_line, paid_event, refund_event
from shequn.testing.scenarios import member_balance


def _plan(tenant, window=0):
    do_create_plan(Principal.system(tenant.pk), name="p", refund_window_days=window, rules=[{"rate_bps": 1000}])


def test_leaderboard_ties_go_to_who_got_there_first(tenant):
    t0 = timezone.now()
    leaderboard.do_bump(tenant.pk, "referrals", ["all"], 1, 2, at=t0 + timedelta(seconds=5))
    leaderboard.do_bump(tenant.pk, "referrals", ["all"], 2, 2, at=t0 + timedelta(seconds=1))
    leaderboard.do_bump(tenant.pk, "referrals", ["all"], 3, 5, at=t0)
    leaderboard.do_bump(tenant.pk, "referrals", ["all"], 4, 1, at=t0)
    rows = leaderboard.top(tenant.pk, "referrals", use_redis=False)
    assert [r.member_id for r in rows] == [3, 2, 1, 4]
    me = leaderboard.my_rank(tenant.pk, "referrals", 1)
    assert (me.rank, me.value, me.gap_to_next, me.total) == (3, 2, 1, 4)
    assert leaderboard.my_rank(tenant.pk, "referrals", 2).gap_to_next == 4  # needs 6 to pass 5
    assert leaderboard.my_rank(tenant.pk, "referrals", 3).gap_to_next is None
    assert leaderboard.my_rank(tenant.pk, "referrals", 99).rank is None


def test_leaderboards_by_period_and_scope_follow_valid_referrals(tenant):
    _plan(tenant)
    a, b = (MemberFactory(tenant=tenant, display_name=n) for n in ("A", "B"))
    p = Principal.system(tenant.pk)
    la = do_get_or_create_link(p, member_id=a.pk, campaign="春季")
    lb = do_get_or_create_link(p, member_id=b.pk)
    evs = [paid_event(tenant, MemberFactory(tenant=tenant, display_name=f"x{i}"), [order_line("g", 10000, "goods")],
                      code=la.code, campaign="春季")
           for i in range(3)]
    for ev in evs:
        on_order_event(ev)
    on_order_event(paid_event(tenant, MemberFactory(tenant=tenant, display_name="y"),
                              [order_line("g", 10000, "goods")], code=lb.code))
    assert [(r.member_id, r.value) for r in leaderboard.top(tenant.pk, "referrals")] == [(a.pk, 3), (b.pk, 1)]
    assert [r.member_id for r in leaderboard.top(tenant.pk, "referrals", "campaign:春季", "day")] == [a.pk]
    on_order_event(refund_event(evs[0]))  # refunded referrals are not valid
    assert leaderboard.top(tenant.pk, "referrals")[0].value == 2
    assert leaderboard.top(tenant.pk, "commission", period="month")[0].value == 2000
    assert top_referrers(tenant.pk)[0]["name"] == "A"


@pytest.mark.redis
def test_leaderboard_redis_mirror_matches_sql(tenant, settings):
    settings.REDIS_URL = settings.REDIS_URL or os.environ["SHEQUN_REDIS_URL"]  # per-worker db (settings_test)
    r = redis.Redis.from_url(settings.REDIS_URL)
    for key in r.scan_iter(f"shequn:lb:{tenant.pk}:*"):
        r.delete(key)
    t0 = timezone.now()
    with transaction.atomic():
        for m, v, dt in [(1, 2, 1), (2, 2, 5), (3, 5, 0), (4, 1, 0)]:
            leaderboard.do_bump(tenant.pk, "referrals", ["all"], m, v, at=t0 + timedelta(seconds=dt))
    # on_commit does not fire inside the test transaction: rebuild from SQL, the recovery path
    leaderboard.do_rebuild_redis(tenant.pk, "referrals", "all", "all")
    sql = leaderboard.top(tenant.pk, "referrals", use_redis=False)
    red = leaderboard.top(tenant.pk, "referrals", use_redis=True)
    assert [(x.member_id, x.value) for x in red] == [(x.member_id, x.value) for x in sql]
    # a tie at the cut-off: Redis alone would order 2 before 1 (reverse lexicographic); 1 got there first
    top2 = leaderboard.top(tenant.pk, "referrals", n=2, use_redis=True)
    assert [x.member_id for x in top2] == [3, 1] == [x.member_id for x in sql[:2]]


def test_fission_task_rewards_once(tenant, monkeypatch):
    _plan(tenant)
    granted = []
    monkeypatch.setattr(fission, "_REWARD_HOOKS", dict(fission._REWARD_HOOKS))  # restore the wired hooks
    register_reward_hook("points", lambda tid, mid, task: granted.append((mid, task.reward_value)))
    FissionTask.objects.create(tenant=tenant, name="邀3得积分", threshold=3, reward_kind="points", reward_value=50)
    FissionTask.objects.create(tenant=tenant, name="邀2得现金", threshold=2, reward_kind="cash", reward_value=500)
    a = MemberFactory(tenant=tenant, display_name="A")
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    for i in range(4):
        on_order_event(paid_event(tenant, MemberFactory(tenant=tenant, display_name=f"x{i}"),
                                  [order_line("g", 1000, "goods")], code=link.code))
    assert granted == [(a.pk, 50)]
    assert FissionReward.objects.filter(member=a).count() == 2
    assert member_balance(tenant, a, "available") == 4 * 100 + 500


def test_ip_cluster_is_flagged_not_blocked_by_default(tenant):
    _plan(tenant)
    a = MemberFactory(tenant=tenant, display_name="A")
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    for i in range(5):
        x = MemberFactory(tenant=tenant, display_name=f"x{i}")
        do_record_click(link.code, member_id=x.pk, ip="192.168.1.9")
        on_order_event(paid_event(tenant, x, [order_line("g", 1000, "goods")], code=link.code))
    sig = FraudSignal.objects.filter(kind=FraudKind.IP_CLUSTER)
    # "> 3 referred purchases per IP": the 4th and 5th buyers are flagged, nothing is blocked
    assert sig.count() == 2 and not any(s.blocking for s in sig)
    assert sig.order_by("pk")[0].detail["buyers"] == 4
    assert member_balance(tenant, a, "available") == 500


def test_blocking_holds_commission_until_review(tenant):
    _plan(tenant)
    ReferralPolicy.objects.create(tenant=tenant, fraud_blocking=True)
    a = MemberFactory(tenant=tenant, display_name="A", phone="13800000000")
    x = MemberFactory(tenant=tenant, display_name="X", phone="13800000000")
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    on_order_event(paid_event(tenant, x, [order_line("g", 1000, "goods")], code=link.code))
    sig = FraudSignal.objects.get(kind=FraudKind.SAME_PHONE)
    assert sig.blocking and sig.commission.state == CommissionState.HELD
    assert member_balance(tenant, a, "available") == 0 and member_balance(tenant, a, "commission_pending") == 100
    others = FraudSignal.objects.exclude(pk=sig.pk)  # same phone also reads as a re-registration
    assert set(others.values_list("kind", flat=True)) == {FraudKind.REREGISTRATION}
    do_review_signal(Principal.system(tenant.pk), sig.pk, decision="cleared")
    assert member_balance(tenant, a, "available") == 0  # still held: another blocking signal is open
    for other in others:
        do_review_signal(Principal.system(tenant.pk), other.pk, decision="cleared")
    assert member_balance(tenant, a, "available") == 100


def test_confirmed_fraud_voids_the_commission(tenant):
    _plan(tenant)
    ReferralPolicy.objects.create(tenant=tenant, fraud_blocking=True)
    a = MemberFactory(tenant=tenant, display_name="A", phone="13800000000")
    MemberFactory(tenant=tenant, display_name="旧号", phone="13900000000")
    x = MemberFactory(tenant=tenant, display_name="新号", phone="13900000000")  # re-registration with a known phone
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    on_order_event(paid_event(tenant, x, [order_line("g", 1000, "goods")], code=link.code))
    sig = FraudSignal.objects.get(kind=FraudKind.REREGISTRATION)
    do_review_signal(Principal.system(tenant.pk), sig.pk, decision="confirmed")
    assert member_balance(tenant, a, "commission_pending") == 0 and member_balance(tenant, a, "available") == 0


def test_refund_rate_signal(tenant):
    _plan(tenant)
    a = MemberFactory(tenant=tenant, display_name="A")
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    evs = [paid_event(tenant, MemberFactory(tenant=tenant, display_name=f"x{i}"), [order_line("g", 1000, "goods")],
                      code=link.code) for i in range(4)]
    for ev in evs:
        on_order_event(ev)
    on_order_event(refund_event(evs[0]))
    assert FraudSignal.objects.filter(kind=FraudKind.REFUND_RATE, referrer=a).count() == 1


def test_existing_customer_signal(tenant):
    _plan(tenant)
    a, x = (MemberFactory(tenant=tenant, display_name=n) for n in ("A", "X"))
    on_order_event(paid_event(tenant, x, [order_line("g", 1000, "goods")]))
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    on_order_event(paid_event(tenant, x, [order_line("g", 1000, "goods")], code=link.code))
    assert FraudSignal.objects.filter(kind=FraudKind.EXISTING_CUSTOMER).exists()


def test_poster_and_qr_render(tenant):
    a = MemberFactory(tenant=tenant, display_name="阿丽")
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    url = link_url(link)
    assert url.endswith(f"/r/{link.code}")
    for font in ("auto", None):  # with the CJK font if installed, and with Pillow's default font
        png = poster_png(url=url, member_name="阿丽", community_name="车友会", font_path=font)
        img = Image.open(io.BytesIO(png))
        assert img.format == "PNG" and img.size == (750, 1200)
    assert Image.open(io.BytesIO(qr_png(url))).format == "PNG"


def test_statement_and_kfactor(tenant):
    _plan(tenant, window=7)
    a = MemberFactory(tenant=tenant, display_name="A")
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk, campaign="春季")
    for i in range(4):
        x = MemberFactory(tenant=tenant, display_name=f"买家{i}")
        do_record_click(link.code, member_id=x.pk)
        if i < 2:
            on_order_event(paid_event(tenant, x, [order_line("g", 1000, "goods")], code=link.code))
    st = member_statement(tenant.pk, a.pk)
    assert st.pending_fen == 200 and st.available_fen == 0
    assert {row["from"] for row in st.lines} == {"买家0", "买家1"}
    assert all(row["available_at"] > timezone.now() + timedelta(days=6) for row in st.lines)
    [row] = kfactor_report(tenant.pk)
    assert (row["campaign"], row["invites"], row["payers"], row["sharers"], row["k_factor"]) == ("春季", 4, 2, 1, 2.0)
