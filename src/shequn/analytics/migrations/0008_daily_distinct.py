"""Distinct active members and buyers per day (tenant-wide and per community), filled from the
existing member-day rows of every tenant."""

import django.db.models.deletion
from django.db import migrations, models


def fill(apps, schema_editor):
    from shequn.analytics.services import do_fill_daily_distinct

    for tenant_id in apps.get_model("core", "Tenant").objects.values_list("pk", flat=True):
        do_fill_daily_distinct(tenant_id)


class Migration(migrations.Migration):

    dependencies = [
        ('analytics', '0007_memberday_formula_idx'),
        ('core', '0004_webhooks'),
    ]

    operations = [
        migrations.CreateModel(
            name='DailyDistinct',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField(verbose_name='日期')),
                ('community_id', models.BigIntegerField(verbose_name='社群')),
                ('active_members', models.PositiveIntegerField(default=0, verbose_name='活跃成员')),
                ('buyers', models.PositiveIntegerField(default=0, verbose_name='买家')),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='core.tenant', verbose_name='组织')),
            ],
            options={
                'verbose_name': '每日去重人数',
                'verbose_name_plural': '每日去重人数',
                'constraints': [models.UniqueConstraint(fields=('tenant', 'community_id', 'day'), name='analytics_daily_distinct_unique')],
            },
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
