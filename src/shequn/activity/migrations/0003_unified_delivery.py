"""Activity consumers now fail into the shared ``core.DeliveryFailure`` table (``shequn.core.streams``):
copy the unresolved ``DispatchFailure`` rows there (stream ``activity``, due for a retry now; rows of
tenants that no longer exist are dropped), then drop ``DispatchFailure``. Resolved rows are history
only and are not copied. Reversing re-creates an empty ``DispatchFailure`` table."""

from django.db import migrations
from django.utils import timezone

MAX_ATTEMPTS = 8  # shequn.core.streams.MAX_ATTEMPTS when this was written


def copy_unresolved(apps, schema_editor):
    DispatchFailure = apps.get_model("activity", "DispatchFailure")
    DeliveryFailure = apps.get_model("core", "DeliveryFailure")
    Tenant = apps.get_model("core", "Tenant")
    tenants = set(Tenant.objects.values_list("pk", flat=True))
    now = timezone.now()
    rows = []
    for f in DispatchFailure.objects.filter(resolved=False).order_by("pk").iterator():
        if f.tenant_id not in tenants:
            continue
        rows.append(DeliveryFailure(
            tenant_id=f.tenant_id, stream="activity", subscriber=f.consumer[:64], refs=list(f.event_ids or []),
            error=f.error or "", attempts=min(f.attempts, MAX_ATTEMPTS - 1), state="pending", next_attempt_at=now,
        ))
    DeliveryFailure.objects.bulk_create(rows, batch_size=500)


class Migration(migrations.Migration):

    dependencies = [
        ("activity", "0002_initial"),
        ("core", "0002_delivery_failure"),
    ]

    operations = [
        migrations.RunPython(copy_unresolved, migrations.RunPython.noop),
        migrations.DeleteModel(
            name="DispatchFailure",
        ),
    ]
