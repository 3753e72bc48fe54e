"""Background work of the engagement app (scheduled with crontask; day-of-week literal)."""

from __future__ import annotations

from crontask import cron
from django.tasks import task

from shequn.core.models import Tenant

from . import services
from .services.welcome import flush_welcomes  # noqa: F401  (enqueued by the welcome service; re-exported)


def _tenants() -> list[int]:
    return list(Tenant.objects.filter(is_active=True).values_list("pk", flat=True))


@task(queue_name="engines")
def recompute_scores(tenant_id: int) -> int:
    """Full recompute of every member's score and lifecycle stage (set-based SQL)."""
    return services.do_recompute_scores(tenant_id)


@cron("17 3 * * *")
@task(queue_name="engines")
def nightly_engagement() -> int:
    """Nightly: full score recompute (months roll over, silence decays), ladder suggestions, health."""
    n = 0
    for tid in _tenants():
        n += services.do_recompute_scores(tid)
        services.do_suggest_ladder(tid)
        services.do_health_check(tid)
        services.do_collect_post_results(tid)
    return n


@cron("41 4 * * *")
@task(queue_name="engines")
def recommend_roles() -> int:
    """Daily: role recommendations (advocate, customer service, content) for every community, shown on
    the community page in the console for one-click assignment."""
    return sum(services.do_recommend_roles_all(tid) for tid in _tenants())


@cron("* * * * *")
@task(queue_name="engines")
def run_due_lotteries() -> dict[str, int]:
    return services.do_run_due_lotteries()


@cron("*/5 * * * *")
@task(queue_name="engines")
def expire_red_packets() -> int:
    return services.do_expire_red_packets()


@cron("* * * * *")
@task(queue_name="engines")
def flush_due_welcomes() -> int:
    """The sweep behind the batched welcomes (the deferred ``flush_welcomes`` task is the fast path)."""
    return services.do_flush_due_welcomes()


@cron("*/5 * * * *")
@task(queue_name="engines")
def run_content_schedules() -> int:
    n = 0
    for tid in _tenants():
        n += services.do_run_content_schedules(tid)["queued"]
    return n
