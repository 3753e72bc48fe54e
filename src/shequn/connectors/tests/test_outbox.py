"""The outbox worker with a scripted adapter: retries, backoff, 429 retry_after, rate limits,
dead letter, permanent failures, human-task degradation, concurrent workers."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shequn.communities.models import ChatGroup, Community
from shequn.connectors import signals
from shequn.connectors.adapters import DeliveryError, may_send, not_sent
from shequn.connectors.models import HumanTask, OutboxAction, RateBucket
from shequn.connectors.services import (
    connection_secrets,
    delivery,
    do_complete_human_task,
    do_create_connection,
    do_request_action,
    do_retry_action,
)
from shequn.core.errors import Conflict
from shequn.core.permissions import Principal
from shequn.core.testing import race


class Scripted:
    """Answers each delivered action from a queue of outcomes (default: success)."""

    def __init__(self, platform: str, outcomes: list[Any] | None = None) -> None:
        self.platform = platform
        self.outcomes = list(outcomes or [])
        self.delivered: list[int] = []

    async def deliver_batch(self, conn: Any, items: list[Any]) -> list[Any]:
        out = []
        for item in items:
            self.delivered.append(item.id)
            out.append(self.outcomes.pop(0) if self.outcomes else {"ok": item.id})
        return out


@pytest.fixture
def tg(tenant: Any, system: Any) -> dict[str, Any]:
    community = Community.objects.create(tenant=tenant, name="护肤群")
    conn = do_create_connection(system, platform="telegram", name="bot", config={},
                                secret_values={"bot_token": "123:abcdefghijklmnop", "webhook_secret": "s3cret-token"},
                                verify=False)
    g1 = ChatGroup.objects.create(tenant=tenant, community=community, platform="telegram", external_id="-1001",
                                  name="一群")
    g2 = ChatGroup.objects.create(tenant=tenant, community=community, platform="telegram", external_id="-1002",
                                  name="二群")
    return {"conn": conn, "g1": g1, "g2": g2}


def _send(tenant: Any, group: Any, key: str, text: str = "hi") -> OutboxAction:
    return do_request_action(tenant.pk, kind="send", group_id=group.pk, idempotency_key=key, payload={"text": text})


def test_connection_secrets_are_encrypted_and_hinted(tg: dict[str, Any]) -> None:
    conn = tg["conn"]
    assert "abcdefghijklmnop" not in conn.secrets_encrypted and "s3cret" not in conn.secrets_encrypted
    assert conn.secret_hints["bot_token"] == "••••mnop"
    assert connection_secrets(conn)["bot_token"] == "123:abcdefghijklmnop"


def test_request_is_idempotent_and_resolves_connection(tenant: Any, tg: dict[str, Any]) -> None:
    a = _send(tenant, tg["g1"], "k1")
    b = _send(tenant, tg["g1"], "k1", text="other")
    assert a.pk == b.pk and a.connection_id == tg["conn"].pk and a.status == "pending"


def test_success_marks_done(tenant: Any, tg: dict[str, Any], fake_adapter: Any) -> None:
    fake = Scripted("telegram")
    fake_adapter(fake)
    a = _send(tenant, tg["g1"], "k1")
    stats = delivery.deliver_due()
    a.refresh_from_db()
    assert stats.done == 1 and a.status == "done" and a.result == {"ok": a.pk} and a.attempts == 1


def test_transient_error_backs_off_then_dead_letter(tenant: Any, tg: dict[str, Any], fake_adapter: Any,
                                                    settings: Any) -> None:
    settings.SHEQUN = {**settings.SHEQUN, "OUTBOX_MAX_ATTEMPTS": 3}
    fake_adapter(Scripted("telegram", [DeliveryError("retry", "502 bad gateway")] * 5))
    a = _send(tenant, tg["g1"], "k1")
    now = timezone.now()
    delays = []
    for i in range(3):
        t = now + dt.timedelta(hours=i * 3)
        delivery.deliver_due(now=t)
        a.refresh_from_db()
        if a.status == "pending":
            delays.append((a.next_attempt_at - timezone.now()).total_seconds())
    assert a.status == "dead" and a.attempts == 3 and "502" in a.last_error
    # exponential: the second wait is longer than the first (equal jitter keeps ≥ half of 2×)
    assert 4 <= delays[0] <= 10.5 and 9 <= delays[1] <= 20.5
    # an operator retries the dead letter from the console
    do_retry_action(Principal.system(tenant.pk), a.pk)
    a.refresh_from_db()
    assert a.status == "pending" and a.attempts == 0
    with pytest.raises(Conflict):
        do_retry_action(Principal.system(tenant.pk), a.pk)


@given(st.integers(min_value=1, max_value=30))
def test_backoff_grows_and_is_capped(attempts: int) -> None:
    d = delivery.backoff_seconds(attempts)
    full = min(delivery.BACKOFF_CAP, delivery.BACKOFF_BASE * 2 ** (attempts - 1))
    assert full / 2 <= d <= full


def test_429_retry_after_is_honoured(tenant: Any, tg: dict[str, Any], fake_adapter: Any) -> None:
    fake = Scripted("telegram", [DeliveryError("rate_limited", "Too Many Requests", retry_after=37, scope="group")])
    fake_adapter(fake)
    a = _send(tenant, tg["g1"], "k1")
    b = _send(tenant, tg["g1"], "k2")
    t0 = timezone.now()
    stats = delivery.deliver_due(limit=1, now=t0)
    a.refresh_from_db()
    assert stats.rate_limited == 1 and a.status == "pending" and a.attempts == 0
    assert a.next_attempt_at >= t0 + dt.timedelta(seconds=37)
    # the whole group waits: b is not sent before retry_after either
    stats = delivery.deliver_due(now=t0 + dt.timedelta(seconds=30))
    b.refresh_from_db()
    assert stats.claimed == 0 and b.status == "pending" and b.next_attempt_at >= t0 + dt.timedelta(seconds=37)
    done = sum(delivery.deliver_due(now=t0 + dt.timedelta(seconds=s)).done for s in (80, 90))
    assert done == 2


def test_permanent_error_fails_with_reason(tenant: Any, tg: dict[str, Any], fake_adapter: Any) -> None:
    fake_adapter(Scripted("telegram", [DeliveryError("permanent", "Bad Request: chat not found")]))
    a = _send(tenant, tg["g1"], "k1")
    delivery.deliver_due()
    a.refresh_from_db()
    assert a.status == "failed" and a.last_error == "Bad Request: chat not found"
    tg["conn"].refresh_from_db()
    assert tg["conn"].error_count == 1


def test_per_group_rate_limit(tenant: Any, tg: dict[str, Any], fake_adapter: Any) -> None:
    """Telegram: 1/s per chat and 20/min per group; another group is not held back."""
    fake = Scripted("telegram")
    fake_adapter(fake)
    for i in range(25):
        _send(tenant, tg["g1"], f"a{i}")
    _send(tenant, tg["g2"], "b0")
    t0 = timezone.now()
    sent_by_second = []
    for s in range(120):  # a worker polling every 0.5 s for a minute
        sent_by_second.append(delivery.deliver_due(now=t0 + dt.timedelta(seconds=s / 2)).done)
    g1_done = OutboxAction.objects.filter(group=tg["g1"], status="done").count()
    assert OutboxAction.objects.get(idempotency_key="b0").status == "done"
    assert max(sent_by_second) <= 2  # ≤ 1 at a time per chat (+ the other group's one)
    assert 17 <= g1_done <= 20  # ≤ 20 in the minute, not much less; the minute bucket holds the rest back
    assert not OutboxAction.objects.filter(group=tg["g1"], status="pending", attempts__gt=0).exists()


def test_deletions_are_not_held_back_by_the_group_message_limits(tenant: Any, tg: dict[str, Any],
                                                                  fake_adapter: Any) -> None:
    """Telegram's per-chat limits count messages the bot sends; 25 deletions (a spam wave) go in one
    round, within the bot's overall 30/s, while the warnings queued with them stay paced."""
    fake = Scripted("telegram")
    fake_adapter(fake)
    for i in range(25):
        do_request_action(tenant.pk, kind="delete", group_id=tg["g1"].pk, idempotency_key=f"d{i}",
                          message_external_id=f"-1001:{i}")
        _send(tenant, tg["g1"], f"w{i}")
    t0 = timezone.now()
    first = delivery.deliver_due(now=t0)
    deleted = OutboxAction.objects.filter(kind="delete", status="done").count()
    assert deleted >= 14 and OutboxAction.objects.filter(kind="send", status="done").count() <= 1
    delivery.deliver_due(now=t0 + dt.timedelta(seconds=1))
    assert OutboxAction.objects.filter(kind="delete", status="done").count() == 25  # in ~1 s, not 25+ s
    assert first.done >= 15


def test_missing_capability_becomes_human_task(tenant: Any, system: Any) -> None:
    community = Community.objects.create(tenant=tenant, name="企微群")
    g = ChatGroup.objects.create(tenant=tenant, community=community, platform="wecom", external_id="wrOg",
                                 name="客户群")
    a = do_request_action(tenant.pk, kind="kick", group_id=g.pk, idempotency_key="kick1", target_external_id="wmX",
                          reason="发广告")
    assert a.status == "delegated"
    task = HumanTask.objects.get(action=a)
    assert task.due_at > timezone.now() and task.status == "open" and "移出群" in task.title
    do_complete_human_task(system, task.pk, note="已移出")
    a.refresh_from_db()
    assert a.status == "done" and a.result["note"] == "已移出"


def test_adapter_delegate_opens_human_task(tenant: Any, tg: dict[str, Any], fake_adapter: Any) -> None:
    fake_adapter(Scripted("telegram", [DeliveryError("delegate", "消息超过 48 小时")]))
    a = do_request_action(tenant.pk, kind="delete", group_id=tg["g1"].pk, idempotency_key="d1", message_external_id="5")
    delivery.deliver_due()
    a.refresh_from_db()
    assert a.status == "delegated" and HumanTask.objects.get(action=a).instructions == "消息超过 48 小时"


def test_no_connection_is_transient(tenant: Any, system: Any, fake_adapter: Any) -> None:
    fake_adapter(Scripted("matrix"))
    community = Community.objects.create(tenant=tenant, name="m")
    g = ChatGroup.objects.create(tenant=tenant, community=community, platform="matrix", external_id="!r:x", name="r")
    a = do_request_action(tenant.pk, kind="send", group_id=g.pk, idempotency_key="m1", payload={"text": "x"})
    delivery.deliver_due()
    a.refresh_from_db()
    assert a.status == "pending" and a.attempts == 1 and "连接" in a.last_error


def test_expired_lease_is_reclaimed_and_stale_worker_cannot_overwrite(tenant: Any, tg: dict[str, Any],
                                                                      fake_adapter: Any) -> None:
    fake_adapter(Scripted("telegram"))
    a = _send(tenant, tg["g1"], "k1")
    t0 = timezone.now()
    first = delivery.claim(now=t0)  # worker 1 claims, then "dies"
    assert [i.id for i in first] == [a.pk]
    assert delivery.claim(now=t0 + dt.timedelta(minutes=1)) == []  # lease still held
    second = delivery.claim(now=t0 + delivery.LEASE + dt.timedelta(seconds=2))
    assert [i.id for i in second] == [a.pk]
    assert delivery.record(first[0], {"late": True}) == "stale"
    assert delivery.record(second[0], {"ok": True}) == "done"
    a.refresh_from_db()
    assert a.result == {"ok": True} and a.attempts == 2


class Gated(Scripted):
    """A scripted adapter that asks the engine before each platform call, as the real ones do."""

    async def deliver_batch(self, conn: Any, items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            if not await may_send(item):
                out.append(not_sent())
                continue
            self.delivered.append(item.id)
            out.append({"ok": item.id})
        return out


def test_the_engine_commits_the_start_of_a_call_the_platform_cannot_deduplicate(
        tenant: Any, tg: dict[str, Any], fake_adapter: Any) -> None:
    fake = Gated("telegram")
    fake_adapter(fake)
    send = _send(tenant, tg["g1"], "k1")
    ban = do_request_action(tenant.pk, kind="ban", group_id=tg["g2"].pk, idempotency_key="k2", target_external_id="42")
    stats = delivery.deliver_due()
    send.refresh_from_db()
    ban.refresh_from_db()
    assert stats.done == 2 and sorted(fake.delivered) == sorted([send.pk, ban.pk])
    assert send.attempt_started_at is not None  # sendMessage: no idempotency key, marked before the call
    assert ban.attempt_started_at is None  # a ban twice is one ban: no mark needed


def test_an_interrupted_send_goes_to_a_person_and_is_never_sent_twice(tenant: Any, tg: dict[str, Any],
                                                                      fake_adapter: Any) -> None:
    fake_adapter(Scripted("telegram"))
    settled: list[dict[str, Any]] = []
    signals.register_settled_listener("test.settled", lambda **kw: settled.append(kw))
    try:
        a = _send(tenant, tg["g1"], "k1")
        t0 = timezone.now()
        first = delivery.claim(now=t0)
        assert delivery._mark_started(first[0])  # the call began … and the worker died
        again = delivery.claim(now=t0 + delivery.LEASE + dt.timedelta(seconds=2))
    finally:
        signals._LISTENERS.pop("test.settled", None)
    a.refresh_from_db()
    assert again == [] and a.status == "dead" and a.last_error == delivery.interrupted_reason()
    assert a.next_attempt_at is None and a.lease_token == ""
    assert [(s["action_id"], s["status"]) for s in settled] == [(a.pk, "dead")]
    assert delivery.record(first[0], {"late": True}) == "stale"
    # the person checked the group: not there, so retry from the console
    do_retry_action(Principal.system(tenant.pk), a.pk)
    a.refresh_from_db()
    assert a.status == "pending" and a.attempt_started_at is not None
    assert [i.id for i in delivery.claim()] == [a.pk]
    a.refresh_from_db()
    assert a.attempt_started_at is None  # each claim starts unmarked


def test_a_claimed_but_unsent_action_or_a_resend_safe_one_is_sent_again(tenant: Any, tg: dict[str, Any],
                                                                        fake_adapter: Any) -> None:
    fake_adapter(Scripted("telegram"))
    unsent = _send(tenant, tg["g1"], "k1")
    ban = do_request_action(tenant.pk, kind="ban", group_id=tg["g2"].pk, idempotency_key="k2", target_external_id="42")
    t0 = timezone.now()
    first = delivery.claim(now=t0)
    assert {i.id for i in first} == {unsent.pk, ban.pk}
    OutboxAction.objects.filter(pk=ban.pk).update(attempt_started_at=t0)  # even had its call begun
    again = delivery.claim(now=t0 + delivery.LEASE + dt.timedelta(seconds=2))
    assert {i.id for i in again} == {unsent.pk, ban.pk}


def test_the_leases_of_a_dead_delivery_process_of_this_host_are_released_at_once(
        tenant: Any, tg: dict[str, Any], fake_adapter: Any) -> None:
    fake_adapter(Scripted("telegram"))
    a = _send(tenant, tg["g1"], "k1")
    t0 = timezone.now()
    (item,) = delivery.claim(now=t0)
    assert item.lease_token.startswith(f"{delivery.HOST_TAG}:{os.getpid()}:")
    assert delivery.release_abandoned(now=t0) == 0  # this process is alive
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    for minute, (token, released) in enumerate([
            (f"{delivery.HOST_TAG}:{gone.stdout.strip()}:ab12cd34ef56", 1),  # its pid is gone
            (f"{delivery.HOST_TAG}:{os.getpid()}:00000000", 1),  # this pid, an earlier process's token
            ("0123abcd:1:ab12cd34ef56", 0)], start=1):  # another host's: its lease runs out
        t = t0 + dt.timedelta(minutes=minute)  # (the group's message bucket has a token again)
        OutboxAction.objects.filter(pk=a.pk).update(status="sending", lease_token=token,
                                                    next_attempt_at=t + delivery.LEASE)
        assert delivery.release_abandoned(now=t) == released, token
        assert [i.id for i in delivery.claim(now=t)] == ([a.pk] if released else [])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_claim_disjoint_rows(tenant: Any, system: Any) -> None:
    community = Community.objects.create(tenant=tenant, name="并发")
    do_create_connection(system, platform="matrix", name="m", config={"homeserver": "http://127.0.0.1:9",
                                                                       "user_id": "@b:x"},
                         secret_values={"access_token": "tok-123456789012"}, verify=False)
    groups = [ChatGroup.objects.create(tenant=tenant, community=community, platform="matrix", external_id=f"!{i}:x",
                                       name=str(i)) for i in range(40)]
    for i, g in enumerate(groups):
        do_request_action(tenant.pk, kind="send", group_id=g.pk, idempotency_key=f"c{i}", payload={"text": "x"})
    RateBucket.objects.all().delete()
    claimed = race(lambda _i: [a.id for a in delivery.claim(limit=15, platforms=["matrix"])], 4)
    assert not [c for c in claimed if isinstance(c, Exception)], claimed
    flat = [x for c in claimed if isinstance(c, list) for x in c]
    assert len(flat) == len(set(flat))  # nobody claimed a row twice
    assert 0 < len(flat) <= 10  # the bot account's bucket (10 tokens) is shared by all workers
    assert OutboxAction.objects.filter(status="sending").count() == len(flat)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gaps=st.lists(st.floats(min_value=0.05, max_value=4.0), min_size=40, max_size=90))
def test_group_limits_hold_in_every_window(tenant: Any, tg: dict[str, Any], gaps: list[float]) -> None:
    """Whatever the polling pattern, a Telegram group never gets more than 20 actions in any 60 s
    window nor more than 2 in any 1 s window (the bucket bound: burst + rate × window)."""
    OutboxAction.objects.all().delete()
    RateBucket.objects.all().delete()
    for i in range(30):
        _send(tenant, tg["g1"], f"h{i}")
    t = timezone.now()
    sent: list[float] = []
    for gap in gaps:
        t += dt.timedelta(seconds=gap)
        for item in delivery.claim(now=t, platforms=["telegram"]):
            sent.append(t.timestamp())
            delivery.record(item, {"ok": True}, now=t)
    for i, start in enumerate(sent):
        assert sum(1 for s in sent[i:] if s - start < 60) <= 20
        assert sum(1 for s in sent[i:] if s - start < 1) <= 2
