"""Lottery end to end: rules, weighted entries paid with points, close (commitment), draw, reroll,
announcement through the outbox, and ``shequn lottery verify`` on the published record."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from shequn.connectors.models import OutboxAction
from shequn.core.errors import Conflict, Invalid
from shequn.engagement import fairness
from shequn.engagement.models import Lottery, LotteryWinner
from shequn.engagement.selectors import lottery_public_record
from shequn.engagement.services import (
    do_check_in,
    do_close_lottery,
    do_create_lottery,
    do_draw_lottery,
    do_enter_lottery,
    do_points_earn,
    do_reroll,
    do_run_due_lotteries,
)


@pytest.fixture
def lottery(system, community, group):
    now = timezone.now()
    return do_create_lottery(system, title="周末抽奖", closes_at=now + dt.timedelta(hours=1),
                             draw_at=now + dt.timedelta(hours=2), prizes=[("一等奖", 1), ("二等奖", 2)],
                             community_id=community.pk, group_id=group.pk, entry_cost_points=10, max_tickets=3)


def test_full_draw_is_verifiable_and_tamper_evident(tenant, lottery, make_member, system, tmp_path, capsys):
    members = [make_member(f"m{i}") for i in range(12)]
    for i, m in enumerate(members):
        do_points_earn(tenant.pk, m.pk, 30, kind="gift", idempotency_key=f"g{m.pk}")
        do_enter_lottery(tenant.pk, lottery.pk, m.pk, tickets=1 + i % 3)
    with pytest.raises(Conflict):
        do_enter_lottery(tenant.pk, lottery.pk, members[0].pk)
    rec = lottery_public_record(Lottery.objects.get(pk=lottery.pk))
    assert "seed" not in rec and "snapshot" not in rec and len(rec["seed_commitment"]) == 64
    with pytest.raises(Conflict):
        do_draw_lottery(tenant.pk, lottery.pk)  # must close (commit) first
    do_run_due_lotteries(now=timezone.now() + dt.timedelta(minutes=61))  # closes
    lot = Lottery.objects.get(pk=lottery.pk)
    assert lot.status == "closed" and len(lot.snapshot["entrants"]) == 12
    assert "seed" not in lottery_public_record(lot)
    assert OutboxAction.objects.filter(idempotency_key=f"lottery:{lot.pk}:commit").exists()
    do_run_due_lotteries(now=timezone.now() + dt.timedelta(minutes=121))  # draws
    lot.refresh_from_db()
    assert lot.status == "drawn"
    winners = LotteryWinner.objects.filter(lottery=lot)
    assert winners.count() == 3
    assert OutboxAction.objects.get(idempotency_key=f"lottery:{lot.pk}:winners").payload["text"].count("\n") >= 3
    gone = winners.order_by("position").first().member_id
    repl = do_reroll(system, lot.pk, gone, reason="未领奖")
    assert repl is not None and repl.member_id not in {w.member_id for w in winners.exclude(member_id=repl.member_id)}

    record = lottery_public_record(Lottery.objects.get(pk=lot.pk))
    assert fairness.verify(record).ok
    good = tmp_path / "lottery.json"
    good.write_text(json.dumps(record, ensure_ascii=False))
    call_command("lottery", "verify", str(good))
    assert "OK" in capsys.readouterr().out

    tampered = json.loads(json.dumps(record))
    tampered["snapshot"]["entrants"][0]["weight"] += 5
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(tampered, ensure_ascii=False))
    with pytest.raises(CommandError):
        call_command("lottery", "verify", str(bad))
    assert "snapshot" in capsys.readouterr().err


def test_entry_rules(tenant, system, community, make_member):
    now = timezone.now()
    lot = do_create_lottery(system, title="铁粉专享", closes_at=now + dt.timedelta(hours=1),
                            draw_at=now + dt.timedelta(hours=1), prizes=[("礼盒", 1)],
                            rules={"min_streak": 2, "joined_before": (now - dt.timedelta(days=30)).date().isoformat(),
                                   "community_id": community.pk})
    veteran = make_member("老会员", joined_days_ago=60)
    newbie = make_member("新会员", joined_days_ago=3)
    outsider = make_member("外人", join=False)
    with pytest.raises(Invalid) as e:
        do_enter_lottery(tenant.pk, lot.pk, outsider.pk)
    assert e.value.code == "rule_community"
    with pytest.raises(Invalid) as e:
        do_enter_lottery(tenant.pk, lot.pk, newbie.pk)
    assert e.value.code == "rule_joined"
    with pytest.raises(Invalid) as e:
        do_enter_lottery(tenant.pk, lot.pk, veteran.pk)
    assert e.value.code == "rule_streak"
    do_check_in(tenant.pk, veteran.pk, at=now - dt.timedelta(days=1))
    do_check_in(tenant.pk, veteran.pk, at=now)
    assert do_enter_lottery(tenant.pk, lot.pk, veteran.pk).weight == 1
    with pytest.raises(Invalid):
        do_create_lottery(system, title="x", closes_at=now + dt.timedelta(hours=1), draw_at=now + dt.timedelta(hours=2),
                          prizes=[("a", 1)], rules={"bogus": 1})


def test_beacon_lottery_waits_for_the_public_value(tenant, system, make_member):
    now = timezone.now()
    lot = do_create_lottery(system, title="公证抽奖", closes_at=now + dt.timedelta(minutes=1),
                            draw_at=now + dt.timedelta(minutes=2), prizes=[("奖", 3)], beacon="drand round 123456")
    for i in range(20):
        do_enter_lottery(tenant.pk, lot.pk, make_member(f"m{i}").pk)
    do_close_lottery(tenant.pk, lot.pk)
    assert do_run_due_lotteries(now=now + dt.timedelta(minutes=5))["drawn"] == 0
    with pytest.raises(Invalid):
        do_draw_lottery(tenant.pk, lot.pk)
    do_draw_lottery(tenant.pk, lot.pk, beacon_value="abc123")
    rec = lottery_public_record(Lottery.objects.get(pk=lot.pk))
    assert rec["beacon_value"] == "abc123" and fairness.verify(rec).ok
    rec["beacon_value"] = "other"  # another beacon value gives another order (1 in 6840 chance not)
    assert not fairness.verify(rec).ok


def test_export_command_prints_the_public_record(tenant, system, make_member, capsys):
    now = timezone.now()
    lot = do_create_lottery(system, title="导出", closes_at=now + dt.timedelta(hours=1),
                            draw_at=now + dt.timedelta(hours=1), prizes=[("奖", 1)])
    do_enter_lottery(tenant.pk, lot.pk, make_member().pk)
    do_close_lottery(tenant.pk, lot.pk)
    do_draw_lottery(tenant.pk, lot.pk)
    call_command("lottery", "export", str(lot.pk), "--tenant", tenant.slug)
    rec = json.loads(capsys.readouterr().out)
    assert rec["seed"] and fairness.verify(rec).ok
    with pytest.raises(CommandError):
        call_command("lottery", "export", str(lot.pk), "--tenant", "nope")
