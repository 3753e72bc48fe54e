"""Background work of the moderation app."""

from __future__ import annotations

from crontask import cron
from django.tasks import task

from shequn.core.models import Tenant

from . import services


@task(queue_name="engines")
def retrain_tenant_model(tenant_id: int) -> int:
    """Rebuild a tenant's classifier after moderator decisions (enqueued on commit of a review)."""
    return services.do_retrain_tenant_model(tenant_id).examples


@cron("17 * * * *")
@task(queue_name="engines")
def check_rate_alerts() -> int:
    """Hourly: ad-group alerts for communities whose violation rate passed the threshold today."""
    return sum(len(services.do_check_rate_alerts(t)) for t in Tenant.objects.filter(is_active=True)
               .values_list("pk", flat=True))


@cron("43 * * * *")
@task(queue_name="engines")
def prune_fingerprints() -> int:
    return services.do_prune_fingerprints()
