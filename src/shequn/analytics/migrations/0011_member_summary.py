"""The members' lifetime facts (``MemberSummary``), filled for every tenant from its member-day rows
(``services.do_fill_member_summaries``, the rebuild's fill step): the segments read them instead of
grouping every member-day row per request."""

import django.db.models.deletion
from django.db import migrations, models


def fill(apps, schema_editor):
    from shequn.analytics.services import do_fill_member_summaries

    for tenant_id in apps.get_model("core", "Tenant").objects.values_list("pk", flat=True):
        do_fill_member_summaries(tenant_id)


class Migration(migrations.Migration):

    dependencies = [
        ('analytics', '0010_cohort_cells'),
        ('core', '0004_webhooks'),
    ]

    operations = [
        migrations.CreateModel(
            name='MemberSummary',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('member_id', models.BigIntegerField(verbose_name='会员')),
                ('days', models.IntegerField(default=0, verbose_name='有事实的天数')),
                ('active_days', models.IntegerField(default=0, verbose_name='活跃天数')),
                ('orders', models.IntegerField(default=0, verbose_name='订单')),
                ('gmv_fen', models.BigIntegerField(default=0, verbose_name='成交额(分)')),
                ('last_order_day', models.DateField(blank=True, null=True, verbose_name='最近下单日')),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='core.tenant', verbose_name='组织')),
            ],
            options={
                'verbose_name': '会员累计事实',
                'verbose_name_plural': '会员累计事实',
                'indexes': [models.Index(fields=['tenant', 'last_order_day'], name='analytics_summary_recency_idx'), models.Index(fields=['tenant', 'orders'], name='analytics_summary_orders_idx'), models.Index(fields=['tenant', 'gmv_fen'], name='analytics_summary_gmv_idx'), models.Index(fields=['tenant', 'active_days'], name='analytics_summary_active_idx')],
                'constraints': [models.UniqueConstraint(fields=('tenant', 'member_id'), name='analytics_member_summary_unique')],
            },
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
