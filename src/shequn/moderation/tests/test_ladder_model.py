"""Model-based check of the ladder: any sequence of ads and reversals climbs and descends exactly
as a tiny reference model says."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shequn.activity.services import do_ingest
from shequn.communities.models import ChatGroup, Community
from shequn.connectors.models import OutboxAction
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.moderation import services
from shequn.moderation.models import Strike, Violation

ADS = ["兼职刷单，日结300，在家就能做，加我薇信 vip_8888", "帮我砍一刀吧，就差一点了 https://mobile.yangkeduo.com/g",
       "急用钱的看过来，无抵押秒下款，黑户也能办，加V abc666", "百家乐稳赚不赔，日赚1000，联系 lucky_888"]
_n = itertools.count()

ops = st.lists(st.one_of(st.just(("ad", 0)), st.tuples(st.just("reverse"), st.integers(0, 20))),
               min_size=1, max_size=7)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=ops, limit=st.integers(1, 3))
def test_ladder_matches_reference_model(tenant: Tenant, seq: list[tuple[str, int]], limit: int) -> None:
    run = next(_n)
    community = Community.objects.create(tenant=tenant, name=f"c{run}")
    ChatGroup.objects.create(tenant=tenant, community=community, platform="matrix", external_id=f"!g{run}",
                             name="g")
    system = Principal.system(tenant.pk)
    services.do_save_policy(system, community.pk, warn_limit=limit, notify_on_reversal=False)
    warns, mutes = 0, 0  # the reference model: active warn and mute strikes
    added: dict[int, tuple[int, int]] = {}
    actioned: list[int] = []
    for i, (op, arg) in enumerate(seq):
        if op == "ad":
            do_ingest(tenant.pk, [{"platform": "matrix", "event_id": f"$m{run}-{i}", "kind": "message",
                                   "sender": f"@spam{run}", "group": f"!g{run}",
                                   "occurred_at": "2026-11-23T10:00:00+00:00",
                                   "payload": {"text": f"{ADS[i % 4]} {i}"}}])
            v = Violation.objects.filter(tenant=tenant, community=community).latest("pk")
            if warns >= limit and mutes:
                expected, delta = "kick", (0, 0)
            elif warns + 1 >= limit:
                expected, delta = "mute", (1, 1)
            else:
                expected, delta = "warn", (1, 0)
            assert v.ladder_step == expected, (seq, limit, i)
            warns, mutes = warns + delta[0], mutes + delta[1]
            added[v.pk] = delta
            actioned.append(v.pk)
        elif actioned:
            vid = actioned.pop(arg % len(actioned))
            services.do_review(system, vid, "reverse")
            w, m = added[vid]
            warns, mutes = warns - w, mutes - m
            assert not Strike.objects.filter(violation_id=vid, revoked_at__isnull=True).exists()
            if m:
                assert OutboxAction.objects.filter(tenant=tenant, idempotency_key=f"undo:{vid}:unmute").exists()
        active = Strike.objects.filter(tenant=tenant, community=community, revoked_at__isnull=True)
        assert active.filter(kind="warn").count() == warns
        assert active.filter(kind="mute").count() == mutes
