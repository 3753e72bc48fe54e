"""Scheduled work of the analytics app: recompute the day buckets the activity consumer and the order
listener marked dirty, evaluate the health rules, and store the health figures, the referral forest
and the members' habits that the dashboards and segments read."""

from __future__ import annotations

from crontask import cron
from django.tasks import task

from shequn.core.models import Tenant

from . import figures, health, reach, segments, services


@cron("* * * * *")
@task(queue_name="engines")
def refresh_rollups() -> int:
    """Recompute every dirty (tenant, day) bucket (and the days of recent link clicks); returns how
    many were written."""
    services.do_mark_recent_clicks()
    return services.do_refresh()


@cron("*/5 * * * *")
@task(queue_name="engines")
def evaluate_health() -> int:
    """Every 5 minutes: evaluate the health rules of every tenant (open, keep, resolve notices);
    returns how many notices were opened."""
    opened = 0
    for tenant_id in Tenant.objects.filter(is_active=True).values_list("pk", flat=True):
        opened += health.do_evaluate(tenant_id)["opened"]
    return opened


@cron("*/5 * * * *")
@task(queue_name="engines")
def refresh_health_figures() -> int:
    """Every 5 minutes: store every tenant's health figures (``HealthFigures``) for the windows the
    page and the API read; returns the rows written. Its own task, so a failing rule evaluation does
    not stop the figures (and the other way round)."""
    return sum(health.do_refresh_figures(tenant_id)
               for tenant_id in Tenant.objects.filter(is_active=True).values_list("pk", flat=True))


@cron("*/5 * * * *")
@task(queue_name="engines")
def refresh_reach() -> int:
    """Every 5 minutes: recompute every tenant's referral forest (``ReachNode``); returns the nodes."""
    return sum(reach.do_refresh_reach(tenant_id)
               for tenant_id in Tenant.objects.filter(is_active=True).values_list("pk", flat=True))


@cron("*/5 * * * *")
@task(queue_name="engines")
def refresh_formula() -> int:
    """Every 5 minutes: store every tenant's formula figures (``FormulaFigures``: tenant-wide and per
    community, campaign and channel) for the windows the console home and the API read; returns the
    rows written."""
    return sum(figures.do_refresh_formula(tenant_id)
               for tenant_id in Tenant.objects.filter(is_active=True).values_list("pk", flat=True))


@cron("*/15 * * * *")
@task(queue_name="engines")
def refresh_habits() -> int:
    """Every 15 minutes: store every tenant's member habits (``MemberHabit``: active hours and
    preferred group over the last 30 days) that the segments' habit conditions read; returns the
    members. Not every 5: at 10M events one refresh takes ~9 s on PostgreSQL and 1.5–2.5 min on
    SQLite (a month of messages, the local hour per row), and a month's habits barely move in 15."""
    return sum(segments.do_refresh_habits(tenant_id)
               for tenant_id in Tenant.objects.filter(is_active=True).values_list("pk", flat=True))
