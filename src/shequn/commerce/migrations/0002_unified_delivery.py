"""Order-event listeners now fail into the shared ``core.DeliveryFailure`` table
(``shequn.core.streams``; only failures are stored, successes are not tracked any more): copy the
failed ``OrderEventDelivery`` rows there (stream ``order_events``, refs ``[event_id]``, due for a retry
now), then drop ``OrderEventDelivery``. ``OrderEvent`` rows stay. Successful rows are not copied.
Reversing re-creates an empty ``OrderEventDelivery`` table."""

from django.db import migrations
from django.utils import timezone

MAX_ATTEMPTS = 8  # shequn.core.streams.MAX_ATTEMPTS when this was written


def copy_failed(apps, schema_editor):
    OrderEventDelivery = apps.get_model("commerce", "OrderEventDelivery")
    DeliveryFailure = apps.get_model("core", "DeliveryFailure")
    now = timezone.now()
    rows = []
    for d in OrderEventDelivery.objects.filter(ok=False).select_related("event").order_by("pk").iterator():
        rows.append(DeliveryFailure(
            tenant_id=d.event.tenant_id, stream="order_events", subscriber=d.listener[:64], refs=[d.event_id],
            error=d.error or "(no error recorded)", attempts=max(1, min(d.attempts, MAX_ATTEMPTS - 1)),
            state="pending", next_attempt_at=now,
        ))
    DeliveryFailure.objects.bulk_create(rows, batch_size=500)


class Migration(migrations.Migration):

    dependencies = [
        ("commerce", "0001_initial"),
        ("core", "0002_delivery_failure"),
    ]

    operations = [
        migrations.RunPython(copy_failed, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="ordereventdelivery",
            name="order_event_delivery_once",
        ),
        migrations.DeleteModel(
            name="OrderEventDelivery",
        ),
    ]
