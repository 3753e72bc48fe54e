"""The member × week / month rollup (``MemberPeriod``) behind the cohorts, filled from the existing
member-day rows of every tenant (``services.do_fill_member_periods``, the rebuild's last step)."""

import django.db.models.deletion
from django.db import migrations, models


def fill(apps, schema_editor):
    from shequn.analytics.services import do_fill_member_periods

    for tenant_id in apps.get_model("core", "Tenant").objects.values_list("pk", flat=True):
        do_fill_member_periods(tenant_id, cells=False)  # CohortCell comes in 0010


class Migration(migrations.Migration):

    dependencies = [
        ('analytics', '0005_presence'),
        ('core', '0004_webhooks'),
    ]

    operations = [
        migrations.CreateModel(
            name='MemberPeriod',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('grain', models.CharField(max_length=5, verbose_name='周期')),
                ('period', models.DateField(verbose_name='周期起始')),
                ('member_id', models.BigIntegerField(verbose_name='会员')),
                ('cohort', models.DateField(blank=True, null=True, verbose_name='同期群')),
                ('facts', models.IntegerField(default=0, verbose_name='事实行数')),
                ('active_facts', models.IntegerField(default=0, verbose_name='活跃事实行数')),
                ('orders', models.IntegerField(default=0, verbose_name='订单')),
                ('gmv_fen', models.BigIntegerField(default=0, verbose_name='成交额(分)')),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='core.tenant', verbose_name='组织')),
            ],
            options={
                'verbose_name': '会员周期事实',
                'verbose_name_plural': '会员周期事实',
                'indexes': [models.Index(fields=['tenant', 'member_id'], name='analytics_memberperiod_mem_idx')],
                'constraints': [models.UniqueConstraint(fields=('tenant', 'grain', 'period', 'member_id'), name='analytics_memberperiod_unique')],
            },
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
