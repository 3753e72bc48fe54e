"""The members' habits (``MemberHabit``), stored by ``segments.do_refresh_habits`` every 15 minutes; until
the first refresh the segments compute habits from the events as before."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('analytics', '0011_member_summary'),
        ('core', '0004_webhooks'),
    ]

    operations = [
        migrations.CreateModel(
            name='MemberHabit',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('member_id', models.BigIntegerField(verbose_name='会员')),
                ('hours', models.IntegerField(default=0, verbose_name='活跃时段 (位)')),
                ('group_id', models.BigIntegerField(default=0, verbose_name='常驻群')),
                ('computed_at', models.DateTimeField(verbose_name='计算时间')),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='core.tenant', verbose_name='组织')),
            ],
            options={
                'verbose_name': '会员习惯',
                'verbose_name_plural': '会员习惯',
                'indexes': [models.Index(fields=['tenant', 'group_id'], name='analytics_habit_group_idx')],
                'constraints': [models.UniqueConstraint(fields=('tenant', 'member_id'), name='analytics_member_habit_unique')],
            },
        ),
    ]
