"""Two workers judging the same member's messages at once must climb the ladder one rung each."""

from __future__ import annotations

import time

import pytest
from django.db import transaction
from django.utils import timezone

from shequn.activity.models import ActivityEvent
from shequn.communities.models import ChatGroup, Community
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.core.testing import race
from shequn.members.models import Identity, Member
from shequn.moderation import services
from shequn.moderation.models import Violation

ADS = ["兼职刷单，日结300，在家就能做，加我薇信 vip_8888", "急用钱的看过来，无抵押秒下款，黑户也能办，加V abc666"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_violations_of_one_member_escalate_once(monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = Tenant.objects.create(slug="race", name="并发")
    community = Community.objects.create(tenant=tenant, name="群")
    group = ChatGroup.objects.create(tenant=tenant, community=community, platform="matrix", external_id="!r",
                                     name="群")
    services.do_save_policy(Principal.system(tenant.pk), community.pk, warn_limit=1)
    member = Member.objects.create(tenant=tenant, display_name="spam", first_seen_at=timezone.now())
    Identity.objects.create(tenant=tenant, member=member, platform="matrix", external_id="@s")
    now = timezone.now()
    events = [
        ActivityEvent.objects.create(tenant=tenant, member=member, community=community, group=group,
                                     platform="matrix", platform_event_id=f"$c{i}", kind="message",
                                     occurred_at=now, received_at=now, payload={"text": text})
        for i, text in enumerate(ADS)
    ]
    services.moderator_for(tenant.pk, community.pk)  # warm the caches so both threads reach the ladder together
    real_plan = services.plan_actions

    def slow_plan(*args: object, **kwargs: object) -> object:
        plan = real_plan(*args, **kwargs)  # type: ignore[arg-type]
        time.sleep(0.3)  # hold the decision open: the other worker must wait, not read stale strikes
        return plan

    monkeypatch.setattr(services, "plan_actions", slow_plan)

    def work(i: int) -> None:
        with transaction.atomic():
            services.do_moderate_events(tenant.pk, [events[i]])

    errors = [r for r in race(work, len(events)) if isinstance(r, Exception)]
    assert not errors
    steps = sorted(Violation.objects.filter(tenant=tenant).values_list("ladder_step", flat=True))
    assert steps == ["kick", "mute"]  # without the member lock both would read "no warnings" and mute


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_moderating_outside_a_transaction_locks_in_its_own() -> None:
    """``shequn demo`` seeds violations outside any transaction: on PostgreSQL the member lock of
    the ladder needs one, so recording a violation opens its own (it crashed with "select_for_update
    cannot be used outside of a transaction")."""
    tenant = Tenant.objects.create(slug="bare", name="无事务")
    community = Community.objects.create(tenant=tenant, name="群")
    group = ChatGroup.objects.create(tenant=tenant, community=community, platform="matrix", external_id="!b",
                                     name="群")
    services.do_save_policy(Principal.system(tenant.pk), community.pk, warn_limit=1)
    member = Member.objects.create(tenant=tenant, display_name="spam", first_seen_at=timezone.now())
    now = timezone.now()
    event = ActivityEvent.objects.create(tenant=tenant, member=member, community=community, group=group,
                                         platform="matrix", platform_event_id="$b", kind="message",
                                         occurred_at=now, received_at=now, payload={"text": ADS[0]})
    assert transaction.get_autocommit()
    [violation] = services.do_moderate_events(tenant.pk, [event])
    assert violation.member_id == member.pk and violation.ladder_step == "mute"  # warn_limit=1
    assert Violation.objects.filter(tenant=tenant, event=event).count() == 1
