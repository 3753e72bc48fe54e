"""Analytics: daily rollups and member-level facts, recomputed per (tenant, day) bucket.

Every table here is derived: ``services.do_refresh`` (incremental, from the dirty-day queue fed by
the activity consumer and the order listener) and ``services.do_rebuild`` (from scratch) are its one
writer, and both compute a day bucket the same deterministic way from the source tables, so replaying
an event, retrying a batch or rebuilding gives the same rows. Dimension columns use ``0`` / ``""``
for "none" so they can be part of a unique key on both databases."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from shequn.communities.models import CommunityRole
from shequn.core.models import TenantOwned
from shequn.members.models import LifecycleStage


class DirtyDay(TenantOwned):
    """A (tenant, local day) whose rollups must be recomputed: written by the activity consumer and
    the order listener (one upsert per distinct day of a batch), cleared by ``do_refresh``."""

    day = models.DateField(_("日期"))
    marked_at = models.DateTimeField(_("标记时间"), auto_now=True)

    class Meta:
        verbose_name = _("待重算日期")
        verbose_name_plural = _("待重算日期")
        constraints = [models.UniqueConstraint(fields=["tenant", "day"], name="analytics_dirty_day_unique")]


class DailyRollup(TenantOwned):
    """One day × community × group × campaign × channel × live session. Additive figures add up over
    any set of rows; the distinct ones (``visitors``, ``active_members``, ``buyers``, ``experienced``)
    are distinct within the row only — period-level distinct counts come from :class:`MemberDay`."""

    day = models.DateField(_("日期"))
    community_id = models.BigIntegerField(_("社群"), default=0)
    group_id = models.BigIntegerField(_("群"), default=0)
    campaign = models.CharField(_("活动"), max_length=64, blank=True, default="")
    channel = models.CharField(_("渠道"), max_length=64, blank=True, default="")
    live_session_id = models.BigIntegerField(_("直播场次"), default=0)

    visitors = models.PositiveIntegerField(_("链接访客"), default=0)
    joins = models.PositiveIntegerField(_("加入"), default=0)
    leaves = models.PositiveIntegerField(_("退出"), default=0)
    active_members = models.PositiveIntegerField(_("活跃成员"), default=0)
    experienced = models.PositiveIntegerField(_("体验人数"), default=0)
    messages = models.PositiveIntegerField(_("消息"), default=0)
    first_purchases = models.PositiveIntegerField(_("首单"), default=0)
    orders = models.PositiveIntegerField(_("订单"), default=0)
    buyers = models.PositiveIntegerField(_("买家"), default=0)
    repeat_buyers = models.PositiveIntegerField(_("复购买家"), default=0)
    gmv_fen = models.BigIntegerField(_("成交额(分)"), default=0)
    refunds = models.PositiveIntegerField(_("退款笔数"), default=0)
    refund_fen = models.BigIntegerField(_("退款(分)"), default=0)
    commission_fen = models.BigIntegerField(_("佣金(分)"), default=0)

    class Meta:
        verbose_name = _("日汇总")
        verbose_name_plural = _("日汇总")
        constraints = [models.UniqueConstraint(
            fields=["tenant", "day", "community_id", "group_id", "campaign", "channel", "live_session_id"],
            name="analytics_rollup_unique")]
        indexes = [models.Index(fields=["tenant", "community_id", "day"], name="analytics_rollup_comm_idx")]


class MemberDay(TenantOwned):
    """One member's facts on one local day in one community × campaign × channel (the member's join
    attribution for activity, the order's attribution for orders). Period-level distinct counts,
    cohorts, funnels and RFM read these rows."""

    day = models.DateField(_("日期"))
    member_id = models.BigIntegerField(_("会员"))
    community_id = models.BigIntegerField(_("社群"), default=0)
    campaign = models.CharField(_("活动"), max_length=64, blank=True, default="")
    channel = models.CharField(_("渠道"), max_length=64, blank=True, default="")
    joined = models.BooleanField(_("加入"), default=False)
    active = models.BooleanField(_("活跃"), default=False)
    experienced = models.BooleanField(_("体验"), default=False)
    messages = models.PositiveIntegerField(_("消息"), default=0)
    orders = models.PositiveIntegerField(_("订单"), default=0)
    gmv_fen = models.BigIntegerField(_("成交额(分)"), default=0)
    refund_fen = models.BigIntegerField(_("退款(分)"), default=0)

    class Meta:
        verbose_name = _("会员日事实")
        verbose_name_plural = _("会员日事实")
        constraints = [models.UniqueConstraint(
            fields=["tenant", "day", "member_id", "community_id", "campaign", "channel"],
            name="analytics_memberday_unique")]
        indexes = [models.Index(fields=["tenant", "day"], name="analytics_memberday_day_idx"),
                   models.Index(fields=["tenant", "member_id", "day"], name="analytics_memberday_mem_idx"),
                   # the formula's distinct experienced members and buyers read only these rows (a small
                   # share: most member-days are activity only)
                   models.Index(fields=["tenant", "day", "member_id"], name="analytics_memberday_exp_idx",
                                condition=models.Q(experienced=True) | models.Q(orders__gt=0))]


class DailyDistinct(TenantOwned):
    """Distinct members per local day, for the whole tenant (``community_id = -1``) and per community
    of the day's member-day rows: active members and buyers — the trend's and the community board's
    daily series, which summed over rollup rows would count a member active in two groups twice.
    Written by ``services.do_write_day`` with the day's rows (so the rebuild writes it too); equal to
    the distinct counts over the day's ``MemberDay`` rows (tested)."""

    day = models.DateField(_("日期"))
    community_id = models.BigIntegerField(_("社群"))  # -1: the whole tenant
    active_members = models.PositiveIntegerField(_("活跃成员"), default=0)
    buyers = models.PositiveIntegerField(_("买家"), default=0)

    class Meta:
        verbose_name = _("每日去重人数")
        verbose_name_plural = _("每日去重人数")
        constraints = [models.UniqueConstraint(fields=["tenant", "community_id", "day"],
                                               name="analytics_daily_distinct_unique")]


class FormulaFigures(TenantOwned):
    """The counts behind the formula of the last ``days`` days (``period="now"``, ending ``end_day``)
    and the ``days`` before (``"before"``), tenant-wide (``slice=""``) or for one community /
    campaign / channel (``slice``, ``key``), as they were at ``computed_at``. Written by
    ``figures.do_refresh_formula`` (the one writer, every 5 minutes) for the windows in
    ``figures.STORED_DAYS``: the formula panel and the breakdown read these rows instead of counting
    distinct members over a month of member-day rows per request. Factors, product and attribution
    are derived at read time from the counts by the same code as live, so stored = live at
    ``computed_at``."""

    days = models.PositiveSmallIntegerField(_("天数"))
    slice = models.CharField(_("维度"), max_length=16, blank=True, default="")
    key = models.CharField(_("取值"), max_length=64, blank=True, default="")
    period = models.CharField(_("期间"), max_length=8)  # "now" | "before"
    end_day = models.DateField(_("截止日"))
    visitors = models.PositiveIntegerField(_("链接访客"), default=0)
    joins = models.PositiveIntegerField(_("加入"), default=0)
    experienced = models.PositiveIntegerField(_("体验人数"), default=0)
    buyers = models.PositiveIntegerField(_("买家"), default=0)
    orders = models.PositiveIntegerField(_("订单"), default=0)
    sales_fen = models.BigIntegerField(_("成交额(分)"), default=0)
    repeat_buyers = models.PositiveIntegerField(_("复购买家"), default=0)
    refund_fen = models.BigIntegerField(_("退款(分)"), default=0)
    computed_at = models.DateTimeField(_("计算时间"))

    class Meta:
        verbose_name = _("公式指标")
        verbose_name_plural = _("公式指标")
        constraints = [models.UniqueConstraint(fields=["tenant", "days", "slice", "key", "period"],
                                               name="analytics_formula_figures_unique")]


class MemberPeriod(TenantOwned):
    """One member's facts over one local ISO week (``grain="week"``, ``period`` = its Monday) or
    calendar month (``grain="month"``, ``period`` = its first day): the sums of the member's
    :class:`MemberDay` rows of those days, and ``cohort`` = the start of the week/month of the member's
    first join (``MemberJourney.joined_at`` in the tenant's zone; null: never joined). Cohorts read
    these pre-grouped rows (O(members × periods)) instead of every member-day row.

    Invariant: a row exists exactly when the member has member-day rows in the period (``facts`` of
    them), and equals the sums of those rows (the hypothesis test checks it against a from-scratch
    computation). Written by ``services.do_write_day`` (the day's old rows subtracted and its new rows
    added, in the day's transaction), the journeys' recomputation (``cohort`` when a first join moved)
    and ``services.do_rebuild`` (one grouped ``INSERT … SELECT`` over the member-day rows)."""

    grain = models.CharField(_("周期"), max_length=5)  # "week" | "month"
    period = models.DateField(_("周期起始"))
    member_id = models.BigIntegerField(_("会员"))
    cohort = models.DateField(_("同期群"), null=True, blank=True)
    facts = models.IntegerField(_("事实行数"), default=0)
    active_facts = models.IntegerField(_("活跃事实行数"), default=0)
    orders = models.IntegerField(_("订单"), default=0)
    gmv_fen = models.BigIntegerField(_("成交额(分)"), default=0)

    class Meta:
        verbose_name = _("会员周期事实")
        verbose_name_plural = _("会员周期事实")
        constraints = [models.UniqueConstraint(fields=["tenant", "grain", "period", "member_id"],
                                               name="analytics_memberperiod_unique")]
        indexes = [models.Index(fields=["tenant", "member_id"], name="analytics_memberperiod_mem_idx")]


class MemberSummary(TenantOwned):
    """One member's lifetime facts, the sums of all their :class:`MemberDay` rows: ``days`` with
    facts, ``active_days`` (days with an active row), paid ``orders``, ``gmv_fen`` and the
    ``last_order_day`` (the last day with orders; null: never bought). The segments' order-count,
    active-day and RFM conditions read these rows (one per member, indexed) instead of grouping every
    member-day row per request.

    Invariant: a row exists exactly when the member has member-day rows, and equals the from-scratch
    sums of those rows (the hypothesis test checks it). Written with :class:`MemberPeriod` from the
    same per-day old/new sums by ``services.do_write_day`` (in the day's transaction), and set-based
    by ``services.do_rebuild`` (``do_fill_member_summaries``)."""

    member_id = models.BigIntegerField(_("会员"))
    days = models.IntegerField(_("有事实的天数"), default=0)
    active_days = models.IntegerField(_("活跃天数"), default=0)
    orders = models.IntegerField(_("订单"), default=0)
    gmv_fen = models.BigIntegerField(_("成交额(分)"), default=0)
    last_order_day = models.DateField(_("最近下单日"), null=True, blank=True)

    class Meta:
        verbose_name = _("会员累计事实")
        verbose_name_plural = _("会员累计事实")
        constraints = [models.UniqueConstraint(fields=["tenant", "member_id"], name="analytics_member_summary_unique")]
        # the RFM cut points are read by offset along these, the count rules filter on them (plain
        # indexes: a planner without statistics, SQLite's on a new table, picks them unambiguously)
        indexes = [models.Index(fields=["tenant", "last_order_day"], name="analytics_summary_recency_idx"),
                   models.Index(fields=["tenant", "orders"], name="analytics_summary_orders_idx"),
                   models.Index(fields=["tenant", "gmv_fen"], name="analytics_summary_gmv_idx"),
                   models.Index(fields=["tenant", "active_days"], name="analytics_summary_active_idx")]


class MemberHabit(TenantOwned):
    """One member's habits over the messages of the 30 days before ``computed_at``: ``hours`` = the
    local hours with a message (bit ``h`` set for hour ``h``), ``group_id`` = the group where the
    member sent the most (ties: the smaller id; 0 = no message in a group). Members without a message
    in the window have no row. Written by ``segments.do_refresh_habits`` (the one writer, every 15
    minutes), so the segments' habit conditions read an indexed table instead of a month of events."""

    member_id = models.BigIntegerField(_("会员"))
    hours = models.IntegerField(_("活跃时段 (位)"), default=0)
    group_id = models.BigIntegerField(_("常驻群"), default=0)
    computed_at = models.DateTimeField(_("计算时间"))

    class Meta:
        verbose_name = _("会员习惯")
        verbose_name_plural = _("会员习惯")
        constraints = [models.UniqueConstraint(fields=["tenant", "member_id"], name="analytics_member_habit_unique")]
        indexes = [models.Index(fields=["tenant", "group_id"], name="analytics_habit_group_idx")]


class CohortCell(TenantOwned):
    """One cell of the cohort table: the members whose first join fell in ``cohort`` (a week's Monday
    or a month's first day, ``grain``) who were active in ``period``, and their paid GMV there. The
    ``MemberPeriod`` rows of one (grain, period) grouped by cohort: recomputed for the week and the
    month of a written day, for every period of a member whose cohort moved, and set-based by the
    rebuild — so the cohorts page reads cohorts × periods rows, not one row per member."""

    grain = models.CharField(_("周期"), max_length=5)
    cohort = models.DateField(_("同期群"))
    period = models.DateField(_("周期起始"))
    active_members = models.PositiveIntegerField(_("活跃成员"), default=0)
    gmv_fen = models.BigIntegerField(_("成交额(分)"), default=0)

    class Meta:
        verbose_name = _("同期群单元")
        verbose_name_plural = _("同期群单元")
        constraints = [models.UniqueConstraint(fields=["tenant", "grain", "cohort", "period"],
                                               name="analytics_cohort_cell_unique")]


class MemberJourney(TenantOwned):
    """Each member's firsts (the funnel's steps) and join attribution, recomputed from the source
    tables for the members touched by a refreshed day."""

    member_id = models.BigIntegerField(_("会员"))
    community_id = models.BigIntegerField(_("首个社群"), default=0)
    campaign = models.CharField(_("活动"), max_length=64, blank=True, default="")
    channel = models.CharField(_("渠道"), max_length=64, blank=True, default="")
    inviter_id = models.BigIntegerField(_("邀请人"), default=0)
    live_session_id = models.BigIntegerField(_("直播场次"), default=0)
    clicked_at = models.DateTimeField(_("首次点击"), null=True, blank=True)
    joined_at = models.DateTimeField(_("首次入群"), null=True, blank=True)
    first_message_at = models.DateTimeField(_("首次发言"), null=True, blank=True)
    first_order_at = models.DateTimeField(_("首单"), null=True, blank=True)
    second_order_at = models.DateTimeField(_("第二单"), null=True, blank=True)

    class Meta:
        verbose_name = _("会员旅程")
        verbose_name_plural = _("会员旅程")
        constraints = [models.UniqueConstraint(fields=["tenant", "member_id"], name="analytics_journey_unique")]


# -- health notices ---------------------------------------------------------------------------------

class HealthSettings(TenantOwned):
    """A tenant's health thresholds and the channels a new notice goes out on (one row per tenant; a
    tenant without a row uses the field defaults). Written by ``health.do_save_settings``."""

    ad_wave_minutes = models.PositiveIntegerField(_("广告潮窗口 (分钟)"), default=60)
    ad_wave_threshold = models.PositiveIntegerField(_("广告潮阈值 (条)"), default=5)
    backlog_minutes = models.PositiveIntegerField(_("待回复超时 (分钟)"), default=30)
    backlog_threshold = models.PositiveIntegerField(_("积压阈值 (条)"), default=3)
    quiet_min_before = models.PositiveIntegerField(_("变冷最少前期消息"), default=10)
    notify_console = models.BooleanField(_("控制台提醒"), default=True)
    notify_owner = models.BooleanField(_("私信群主/客服"), default=False)
    staff_group_id = models.BigIntegerField(_("员工群"), default=0, help_text=_("提醒发到这个群 (0 = 不发)"))
    notify_webhook = models.BooleanField(_("Webhook 推送"), default=True)
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    class Meta:
        verbose_name = _("健康提醒设置")
        verbose_name_plural = _("健康提醒设置")
        constraints = [models.UniqueConstraint(fields=["tenant"], name="analytics_health_settings_one")]


class HealthNotice(TenantOwned):
    """One health rule firing on one target (a group, a community, or the tenant: ``0`` = none). At most
    one notice per (rule, community, group) is open; it resolves when the rule stops firing, and a later
    firing opens a new one. ``health.do_evaluate`` is the one writer."""

    class Severity(models.TextChoices):
        RED = "red", _("严重")
        AMBER = "amber", _("注意")

    rule = models.CharField(_("规则"), max_length=32)
    severity = models.CharField(_("级别"), max_length=8, choices=Severity.choices)
    community_id = models.BigIntegerField(_("社群"), default=0)
    group_id = models.BigIntegerField(_("群"), default=0)
    subject = models.CharField(_("对象"), max_length=200, blank=True)
    message = models.CharField(_("说明"), max_length=300)
    data = models.JSONField(_("数据"), default=dict, blank=True)
    opened_at = models.DateTimeField(_("开始"))
    last_seen_at = models.DateTimeField(_("最近一次"))
    resolved_at = models.DateTimeField(_("已恢复"), null=True, blank=True)

    class Meta:
        verbose_name = _("健康提醒")
        verbose_name_plural = _("健康提醒")
        constraints = [models.UniqueConstraint(fields=["tenant", "rule", "community_id", "group_id"],
                                               condition=models.Q(resolved_at__isnull=True),
                                               name="analytics_notice_one_open")]
        indexes = [models.Index(fields=["tenant", "resolved_at", "opened_at"], name="analytics_notice_open_idx")]


class ReachNode(TenantOwned):
    """One member of the referral forest (a referrer or a referred member) with their place in it:
    ``generation`` (bindings below a root; 0 = a root, -1 = in a cycle with no root), and as an
    ancestor: ``direct`` (their K), ``second``, ``reach`` (all generations) and ``depth``. Derived from
    referrals' bindings by ``reach.do_refresh_reach`` (the one writer), so dashboards read an indexed
    table instead of walking the forest."""

    member_id = models.BigIntegerField(_("会员"))
    generation = models.IntegerField(_("代"), default=0)
    direct = models.PositiveIntegerField(_("直接邀请"), default=0)
    second = models.PositiveIntegerField(_("第二代"), default=0)
    reach = models.PositiveIntegerField(_("传播人数"), default=0)
    depth = models.PositiveIntegerField(_("链深"), default=0)
    computed_at = models.DateTimeField(_("计算时间"))

    class Meta:
        verbose_name = _("传播节点")
        verbose_name_plural = _("传播节点")
        constraints = [models.UniqueConstraint(fields=["tenant", "member_id"], name="analytics_reach_node_unique")]
        indexes = [models.Index(fields=["tenant", "-reach", "member_id"], name="analytics_reach_top_idx"),
                   models.Index(fields=["tenant", "generation"], name="analytics_reach_gen_idx")]


class HealthFigures(TenantOwned):
    """The counts behind one target's health figures (a group or a community: ``level``) over the last
    ``days`` local days, as they were at ``computed_at``. Derived from memberships, members, rollups,
    moderation verdicts and the reply queue by ``health.do_refresh_figures`` (the one writer, run every
    5 minutes by ``analytics.tasks.refresh_health_figures``) for the windows in
    ``health.STORED_WINDOWS``, so the health page and ``GET /analytics/health`` read a few indexed rows
    instead of scanning every open membership. Rates are not stored: they are derived from these
    counts by the same code as the live figures, so stored = live at ``computed_at``."""

    level = models.CharField(_("层级"), max_length=16)  # "group" or "community"
    target_id = models.BigIntegerField(_("对象"))
    community_id = models.BigIntegerField(_("社群"), default=0)
    days = models.PositiveSmallIntegerField(_("天数"))
    members = models.PositiveIntegerField(_("成员"), default=0)
    silent = models.PositiveIntegerField(_("沉默成员"), default=0)
    active_member_days = models.PositiveIntegerField(_("活跃人天"), default=0)
    questions = models.PositiveIntegerField(_("待回复消息"), default=0)
    answered = models.PositiveIntegerField(_("已回复"), default=0)
    median_first_response_s = models.FloatField(_("首次回复中位数 (秒)"), null=True, blank=True)
    messages = models.PositiveIntegerField(_("消息"), default=0)
    ads = models.PositiveIntegerField(_("广告"), default=0)
    joins = models.PositiveIntegerField(_("加入"), default=0)
    leaves = models.PositiveIntegerField(_("退出"), default=0)
    computed_at = models.DateTimeField(_("计算时间"))

    class Meta:
        verbose_name = _("健康指标")
        verbose_name_plural = _("健康指标")
        constraints = [models.UniqueConstraint(fields=["tenant", "level", "days", "target_id"],
                                               name="analytics_health_figures_unique")]


class Segment(TenantOwned):
    """A saved audience: a rule made of structured fields (every blank field matches everyone), its
    members evaluated live by :func:`shequn.analytics.segments.segment_member_ids`. Used as the
    audience of an SOP schedule, a coupon grant and a tier invitation."""

    name = models.CharField(_("名称"), max_length=80)
    lifecycle_stage = models.CharField(_("生命周期"), max_length=16, blank=True, default="",
                                       choices=LifecycleStage.choices)
    tag = models.ForeignKey("members.Tag", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                            verbose_name=_("标签"))
    role = models.CharField(_("角色"), max_length=16, blank=True, default="", choices=CommunityRole.choices)
    min_recency = models.PositiveSmallIntegerField(_("最近购买评分 ≥ (R, 1–5)"), null=True, blank=True)
    min_frequency = models.PositiveSmallIntegerField(_("购买频次评分 ≥ (F, 1–5)"), null=True, blank=True)
    min_monetary = models.PositiveSmallIntegerField(_("消费金额评分 ≥ (M, 1–5)"), null=True, blank=True)
    min_orders = models.PositiveIntegerField(_("累计订单 ≥"), null=True, blank=True)
    max_orders = models.PositiveIntegerField(_("累计订单 ≤"), null=True, blank=True)
    min_active_days = models.PositiveIntegerField(_("活跃天数 ≥"), null=True, blank=True)
    active_hour_from = models.PositiveSmallIntegerField(_("活跃时段起 (时)"), null=True, blank=True)
    active_hour_to = models.PositiveSmallIntegerField(_("活跃时段止 (时)"), null=True, blank=True)
    preferred_group = models.ForeignKey("communities.ChatGroup", null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+", verbose_name=_("常驻群"))
    purchased_product = models.ForeignKey("commerce.Product", null=True, blank=True, on_delete=models.SET_NULL,
                                          related_name="+", verbose_name=_("买过的商品"))
    exclude_tier_code = models.CharField(_("排除已有等级"), max_length=32, blank=True, default="",
                                         help_text=_("例如 partner: 排除已是合伙人的会员"))
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    class Meta:
        verbose_name = _("人群")
        verbose_name_plural = _("人群")
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="analytics_segment_name_unique")]

    def __str__(self) -> str:
        return self.name


# -- the community boards' members-present count ------------------------------------------------------

class PresenceStay(TenantOwned):
    """One member's presence in one community in whole local days: the member is present at the end
    of every day from ``first_day`` up to, not including, ``end_day`` (``None``: still present). The
    member's membership rows of the community (one per group, re-joins are new rows) merged: present
    at the end of day D means a stay with ``joined_at < end of D <= left_at`` (or open) — so a stay
    covers the days ``local(joined_at) <= D < local(left_at)``. Written by
    ``presence.do_update_presence`` (the one writer, called for every membership write through
    communities' membership listeners) and ``presence.do_rebuild_presence``; it is the "before" the
    next change is compared with."""

    community_id = models.BigIntegerField(_("社群"))
    member_id = models.BigIntegerField(_("会员"))
    first_day = models.DateField(_("起始日"))
    end_day = models.DateField(_("结束日"), null=True, blank=True)

    class Meta:
        verbose_name = _("在群区间")
        verbose_name_plural = _("在群区间")
        constraints = [models.UniqueConstraint(fields=["tenant", "member_id", "community_id", "first_day"],
                                               name="analytics_presence_stay_unique")]


class CommunityPresenceDay(TenantOwned):
    """Per community and local day: how many members became present (``entered``) and how many stopped
    being present (``exited``) at the end of that day. Members present at the end of day D =
    Σ (entered − exited) over the community's rows with ``day <= D``; the board reads one sum and the
    window's rows. Written with :class:`PresenceStay` by the same writer (days without a change have
    no row)."""

    community_id = models.BigIntegerField(_("社群"))
    day = models.DateField(_("日期"))
    entered = models.IntegerField(_("进入"), default=0)
    exited = models.IntegerField(_("离开"), default=0)

    class Meta:
        verbose_name = _("社群在群人数变化")
        verbose_name_plural = _("社群在群人数变化")
        constraints = [models.UniqueConstraint(fields=["tenant", "community_id", "day"],
                                               name="analytics_presence_day_unique")]
