"""The community boards' stored members-present count (``PresenceStay``, ``CommunityPresenceDay``),
filled from the existing membership rows of every tenant (the same computation as
``analytics.presence.do_rebuild_presence``, on the historical models)."""

from zoneinfo import ZoneInfo

import django.db.models.deletion
from django.db import migrations, models


def fill(apps, schema_editor):
    from shequn.analytics.presence import rebuild_rows

    Tenant = apps.get_model("core", "Tenant")
    Membership = apps.get_model("communities", "Membership")
    Stay = apps.get_model("analytics", "PresenceStay")
    Day = apps.get_model("analytics", "CommunityPresenceDay")
    for tenant_id, zone in Tenant.objects.values_list("pk", "time_zone"):
        rows = Membership.objects.filter(tenant_id=tenant_id).values_list(
            "member_id", "community_id", "joined_at", "left_at").iterator(chunk_size=20_000)
        stays, deltas = rebuild_rows(rows, ZoneInfo(zone or "Asia/Shanghai"))
        Stay.objects.bulk_create([Stay(tenant_id=tenant_id, member_id=m, community_id=c, first_day=f, end_day=e)
                                  for m, c, f, e in stays], batch_size=5000)
        Day.objects.bulk_create([Day(tenant_id=tenant_id, community_id=c, day=d, entered=e, exited=x)
                                 for (c, d), (e, x) in sorted(deltas.items()) if e or x], batch_size=5000)


class Migration(migrations.Migration):

    dependencies = [
        ('analytics', '0004_health_figures'),
        ('core', '0004_webhooks'),
        ('communities', '0003_join_requests_partner_groups'),
    ]

    operations = [
        migrations.CreateModel(
            name='CommunityPresenceDay',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('community_id', models.BigIntegerField(verbose_name='社群')),
                ('day', models.DateField(verbose_name='日期')),
                ('entered', models.IntegerField(default=0, verbose_name='进入')),
                ('exited', models.IntegerField(default=0, verbose_name='离开')),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='core.tenant', verbose_name='组织')),
            ],
            options={
                'verbose_name': '社群在群人数变化',
                'verbose_name_plural': '社群在群人数变化',
                'constraints': [models.UniqueConstraint(fields=('tenant', 'community_id', 'day'), name='analytics_presence_day_unique')],
            },
        ),
        migrations.CreateModel(
            name='PresenceStay',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('community_id', models.BigIntegerField(verbose_name='社群')),
                ('member_id', models.BigIntegerField(verbose_name='会员')),
                ('first_day', models.DateField(verbose_name='起始日')),
                ('end_day', models.DateField(blank=True, null=True, verbose_name='结束日')),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='core.tenant', verbose_name='组织')),
            ],
            options={
                'verbose_name': '在群区间',
                'verbose_name_plural': '在群区间',
                'constraints': [models.UniqueConstraint(fields=('tenant', 'member_id', 'community_id', 'first_day'), name='analytics_presence_stay_unique')],
            },
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
