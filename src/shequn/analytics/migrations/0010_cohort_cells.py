"""The cohort cells (``CohortCell``): the member-period rows grouped by cohort, filled for every tenant."""

import django.db.models.deletion
from django.db import migrations, models


def fill(apps, schema_editor):
    from shequn.analytics.services import do_fill_cohort_cells

    for tenant_id in apps.get_model("core", "Tenant").objects.values_list("pk", flat=True):
        do_fill_cohort_cells(tenant_id)


class Migration(migrations.Migration):

    dependencies = [
        ('analytics', '0009_formula_figures'),
        ('core', '0004_webhooks'),
    ]

    operations = [
        migrations.CreateModel(
            name='CohortCell',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('grain', models.CharField(max_length=5, verbose_name='周期')),
                ('cohort', models.DateField(verbose_name='同期群')),
                ('period', models.DateField(verbose_name='周期起始')),
                ('active_members', models.PositiveIntegerField(default=0, verbose_name='活跃成员')),
                ('gmv_fen', models.BigIntegerField(default=0, verbose_name='成交额(分)')),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='core.tenant', verbose_name='组织')),
            ],
            options={
                'verbose_name': '同期群单元',
                'verbose_name_plural': '同期群单元',
                'constraints': [models.UniqueConstraint(fields=('tenant', 'grain', 'cohort', 'period'), name='analytics_cohort_cell_unique')],
            },
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
