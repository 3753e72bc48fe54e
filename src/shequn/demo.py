"""Demo data: a car club (车友会) and a skincare community (护肤群) with ~2,000 members across WeCom,
Telegram and Matrix groups, role holders, tags, and 90 days of activity with a believable daily rhythm
— then every engine on top (:func:`seed_engines`): moderation (rule pack on, violations waiting in
the review queue), commerce (catalogue, paid and refunded orders, flash sale, group buy, coupons,
the 19.9 / 1999 tiers), referrals (plan, invite links, bindings, commissions on the ledger, fission
tasks, a withdrawal waiting for approval, the leaderboard) and engagement (scores and lifecycle,
check-ins and points, a lottery with entries, a cash red packet, content SOP schedules).

Activity goes through the real ingest service (``do_ingest``), so joins open memberships and the
stream looks exactly as a connector would leave it. Engine data goes through each engine's services.
Deterministic for a given seed, and idempotent: a second run adds nothing (each engine step is
skipped when its rows exist, and every money/points movement carries an idempotency key)."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone

from shequn.activity.models import ActivityEvent
from shequn.activity.services import do_ingest
from shequn.analytics.services import do_rebuild
from shequn.commerce.demo import do_seed_demo_commerce, do_spread_demo_orders
from shequn.commerce.events import deliver
from shequn.commerce.models import OrderEvent
from shequn.communities.models import ChatGroup, Community, CommunityRole, Membership, RoleAssignment
from shequn.core.errors import ShequnError
from shequn.core.models import DEMO_SLUG, Platform, Tenant
from shequn.core.permissions import Principal
from shequn.engagement.models import (
    ContentItem,
    ContentSchedule,
    Lottery,
    MemberScore,
    PointsEntry,
    RedPacket,
    WelcomeMessage,
)
from shequn.engagement.services import (
    do_award_badges,
    do_check_in,
    do_claim_red_packet,
    do_create_lottery,
    do_create_red_packet,
    do_enter_lottery,
    do_points_earn,
    do_recompute_scores,
    do_save_welcome,
    do_seed_streak_badges,
)
from shequn.ledger.selectors import account_balance
from shequn.members.models import Identity, Member, MemberTag, RelationshipLevel, Tag
from shequn.moderation.models import Decision, ModerationPolicy
from shequn.moderation.services import do_moderate_events, do_save_policy
from shequn.referrals.models import CommissionPlan, FissionTask, ReferralPolicy, RewardKind, Withdrawal
from shequn.referrals.services import do_bind, do_create_plan, do_get_or_create_link, do_request_withdrawal

TZ = ZoneInfo("Asia/Shanghai")

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红娥玲芬燕彬鹏浩宇轩然欣怡子涵梓萱一诺晨曦思远嘉怡雨桐"
NICKS = ["小{g}", "阿{g}", "{s}哥", "{s}姐", "老{s}", "{g}{g}", "{s}{g}", "{s}{g}{g}", "大{g}", "{g}宝妈"]
EN_NICKS = ["Lily", "Kevin", "Momo", "Leo", "Coco", "Tony", "Vivian", "Jack", "Summer", "Echo", "Ivy", "Sam",
            "Luna", "Ray", "Nina", "Max", "Grace", "Eric"]
HOURS = [0.2, 0.1, 0.05, 0.03, 0.03, 0.1, 0.4, 1.0, 1.6, 1.2, 1.0, 1.1, 1.7, 1.5, 0.9, 0.8, 0.9, 1.0,
         1.2, 1.6, 2.2, 2.4, 1.8, 0.8]

CAR_LINES = ["周末去郊区自驾有人一起吗?", "刚做完保养, 这家店师傅很专业", "新提的车, 求推荐贴膜", "今晚有人去夜骑吗",
             "油耗多少比较正常?", "轮胎换了米其林, 静音好多", "俱乐部活动照片已经发群相册了", "求推荐靠谱的洗车店",
             "冬天胎压要不要调?", "下周六的自驾路线定了吗", "这个改装合法吗?", "刚跑完高速, 平均 6.2 个油",
             "有没有一起去露营的", "车险快到期了, 哪家便宜", "今天签到", "群主辛苦了 👍", "照片好看!", "收到, 谢谢"]
SKIN_LINES = ["敏感肌用这个会不会刺激?", "今天的护肤小课堂讲得太好了", "油皮夏天怎么控油", "求推荐温和的洁面",
              "防晒一定要每天涂吗", "上次团购的面膜到了, 很好用", "换季脸干起皮怎么办", "晚上几点开直播?",
              "宝妈可以用吗", "这款精华什么时候补货", "打卡 第 12 天", "签到", "谢谢老师解答 🙏", "已下单",
              "皮肤状态好多了", "有没有孕妇可以用的"]

TAGS_CAR = ["车主", "新车主", "自驾游", "改装", "越野", "新能源", "老客户", "VIP"]
TAGS_SKIN = ["敏感肌", "油皮", "干皮", "混合皮", "宝妈", "学生党", "老客户", "VIP"]


@dataclass
class _Group:
    pk: int
    community_id: int
    platform: str
    external_id: str


def _name(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return rng.choice(EN_NICKS) + (str(rng.randint(1, 99)) if rng.random() < 0.3 else "")
    pattern = rng.choice(NICKS)
    return pattern.format(s=rng.choice(SURNAMES), g=rng.choice(GIVEN))


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3456789')}{rng.randint(0, 999_999_999):09d}"


def demo_exists() -> bool:
    return Tenant.objects.filter(slug=DEMO_SLUG).exists()


def seed_demo(
    *, members: int = 2000, days: int = 90, seed: int = 20261123, progress: Callable[[str], None] | None = None
) -> Tenant:
    """Create the demo tenant and its engine data. Idempotent: an existing demo tenant keeps its
    members and activity, and only engine data it lacks is added."""
    started = time.monotonic()
    out = progress or (lambda _msg: None)

    def say(msg: str) -> None:
        out(f"[{time.monotonic() - started:6.1f}s] {msg}")

    tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
    if tenant is None:
        tenant = _seed_base(members=members, days=days, seed=seed, say=say)
    seed_engines(tenant, seed=seed, progress=say)
    say("done")
    return tenant


def _seed_base(*, members: int, days: int, seed: int, say: Callable[[str], None]) -> Tenant:
    rng = random.Random(seed)
    now = timezone.now().astimezone(TZ)
    start = (now - dt.timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)

    with transaction.atomic():
        tenant = Tenant.objects.create(slug=DEMO_SLUG, name="城东生活馆 (演示)", kind=Tenant.Kind.MERCHANT)
        car = Community.objects.create(
            tenant=tenant, name="驰骋车友会", theme="自驾、保养与改装交流", audience="本地车主, 25-45 岁",
            needs="结伴出行、用车经验、靠谱门店", purpose=Community.Purpose.SHARING,
            category=Community.Category.INTEREST, stage=Community.Stage.GROWING,
            rules="1. 禁止广告、拼多多砍价和投票链接\n2. 禁止游戏链接\n3. 友善交流, 不人身攻击\n4. 违规三次移出群",
            announcement="本周六 9:00 集合, 环湖自驾, 报名找群主 🚗",
        )
        skin = Community.objects.create(
            tenant=tenant, name="水润护肤群", theme="科学护肤与好物分享", audience="关注护肤的女性用户",
            needs="护肤知识、适合自己的产品、会员价", purpose=Community.Purpose.SALES,
            category=Community.Category.PRODUCT, stage=Community.Stage.MATURE,
            rules="1. 禁止发广告和加微信引流\n2. 产品问题请 @客服\n3. 不晒单他家产品",
            announcement="每晚 8 点护肤小课堂 ✨",
        )
        entry = Community.objects.create(
            tenant=tenant, name="新人福利群", theme="新人入门与福利", audience="新关注的顾客", needs="了解门店与福利",
            purpose=Community.Purpose.SALES, category=Community.Category.RELATIONSHIP,
            entry_threshold=Community.EntryThreshold.FREE, stage=Community.Stage.SEEDING,
        )
        group_specs = [
            (car, Platform.WECOM, "wrOgAAAA-car-1", "驰骋车友会①群", 500),
            (car, Platform.WECOM, "wrOgAAAA-car-2", "驰骋车友会②群", 500),
            (car, Platform.TELEGRAM, "-1001234567890", "Chicheng Riders", 1000),
            (car, Platform.MATRIX, "!riders:shequn.local", "#riders", 1000),
            (skin, Platform.WECOM, "wrOgAAAA-skin-1", "水润护肤 1 群", 500),
            (skin, Platform.WECOM, "wrOgAAAA-skin-2", "水润护肤 2 群", 500),
            (skin, Platform.MATRIX, "!skincare:shequn.local", "#skincare", 1000),
            (entry, Platform.WECOM, "wrOgAAAA-new-1", "新人福利群", 500),
            (entry, Platform.WECOM, "wrOgAAAA-new-2", "新人福利 2 群", 500),
        ]
        groups = []
        capacity: dict[int, int] = {}
        for community, platform, ext, name, cap in group_specs:
            row = ChatGroup.objects.create(tenant=tenant, community=community, platform=platform, external_id=ext,
                                           name=name, capacity=cap)
            groups.append(_Group(row.pk, community.pk, str(platform), ext))
            capacity[row.pk] = cap
        car_groups = [g for g in groups if g.community_id == car.pk]
        skin_groups = [g for g in groups if g.community_id == skin.pk]
        entry_groups = [g for g in groups if g.community_id == entry.pk]
        seated: dict[int, int] = dict.fromkeys(capacity, 0)

        def seat(options: list[_Group]) -> _Group | None:
            """A group of ``options`` with a free seat (groups stay within their capacity)."""
            free = [g for g in options if seated[g.pk] < capacity[g.pk]]
            if not free:
                return None
            g = rng.choice(free)
            seated[g.pk] += 1
            return g

        tags = {name: Tag.objects.create(tenant=tenant, name=name) for name in dict.fromkeys(TAGS_CAR + TAGS_SKIN)}

        say(f"members: {members}")
        rows: list[Member] = []
        profile: list[tuple[float, list[_Group], dt.datetime, dt.datetime | None]] = []
        for _i in range(members):
            interest = rng.random()
            wanted = ([car_groups] if interest < 0.5 else [skin_groups] if interest < 0.9
                      else [car_groups, skin_groups])
            if rng.random() < 0.25:
                wanted.append(entry_groups)
            mine = [g for g in (seat(options) for options in wanted) if g is not None]
            if not mine:  # only with far more members than the demo's groups seat: the emptiest one
                mine = [min(car_groups + skin_groups, key=lambda g: seated[g.pk])]
                seated[mine[0].pk] += 1
            # a third were there before the window; the rest joined during it, more recently faster
            joined = (start - dt.timedelta(days=rng.randint(1, 400)) if rng.random() < 0.35
                      else start + dt.timedelta(days=days * math.sqrt(rng.random()), hours=rng.random() * 24))
            joined = min(joined, now - dt.timedelta(minutes=5))
            left = None
            if rng.random() < 0.08:
                left = joined + dt.timedelta(days=rng.uniform(1, 60))
                left = left if left < now else None
            activity = rng.lognormvariate(-1.3, 1.3)  # heavy tail: most lurk, a few talk a lot
            profile.append((activity, mine, joined, left))
            rows.append(Member(
                tenant=tenant, display_name=_name(rng), phone=_phone(rng) if rng.random() < 0.7 else "",
                source_channel=rng.choice(["门店扫码", "直播间", "老带新", "公众号", "抖音", "导入"]),
                first_seen_at=min(joined, now), consent_marketing=rng.random() < 0.6,
                relationship_level=rng.choices(list(RelationshipLevel.values), [70, 18, 8, 3, 1])[0],
            ))
        Member.objects.bulk_create(rows, batch_size=500)
        identities, member_tags = [], []
        for m, (_a, mine, _j, _l) in zip(rows, profile, strict=True):
            for plat in {g.platform for g in mine}:
                identities.append(Identity(tenant=tenant, member=m, platform=plat,
                                           external_id=_external_id(plat, m.pk), display_name=m.display_name,
                                           verified=True))
            pool = TAGS_CAR if mine[0] in car_groups else TAGS_SKIN
            for name in rng.sample(pool, k=rng.choice([0, 1, 1, 2, 3])):
                member_tags.append(MemberTag(tenant=tenant, member=m, tag=tags[name]))
        Identity.objects.bulk_create(identities, batch_size=1000)
        MemberTag.objects.bulk_create(member_tags, batch_size=1000, ignore_conflicts=True)

    # activity through the ingest service, in time order per batch
    say("activity: generating 90 days")
    events: list[dict[str, object]] = []
    seq = 0

    def add(kind: str, member: Member, group: _Group, when: dt.datetime, payload: dict[str, object]) -> None:
        nonlocal seq
        seq += 1
        events.append({
            "platform": group.platform, "event_id": f"demo-{seq}", "kind": kind, "occurred_at": when,
            "sender": _external_id(group.platform, member.pk), "sender_name": member.display_name,
            "group": group.external_id, "payload": payload,
        })

    for m, (activity, mine, joined, left) in zip(rows, profile, strict=True):
        for g in mine:
            add("join", m, g, joined, {"join_source": rng.choice(["qr", "invite_link", "live", "qr"])})
            if left is not None:
                add("leave", m, g, left, {"reason": rng.choice(["主动退群", "长期未活跃", ""])})
        lines = CAR_LINES if mine[0] in car_groups else SKIN_LINES
        day0 = max(joined, start)
        end = left or now
        span_days = max(0.0, (end - day0).total_seconds() / 86400)
        for d in range(int(span_days) + 1):
            day = (day0 + dt.timedelta(days=d)).replace(hour=0, minute=0, second=0, microsecond=0)
            weekend = day.weekday() >= 5
            fade = 1.0 if d < 30 else 0.85  # novelty wears off
            n = _poisson(rng, activity * fade * (1.4 if weekend else 1.0))
            for _ in range(n):
                when = day + dt.timedelta(hours=rng.choices(range(24), HOURS)[0], minutes=rng.randint(0, 59),
                                          seconds=rng.randint(0, 59))
                if when >= end or when < joined:
                    continue
                g = rng.choice(mine)
                r = rng.random()
                if r < 0.62:
                    add("message", m, g, when, {"text": rng.choice(lines)})
                elif r < 0.82:
                    add("reply", m, g, when, {"text": rng.choice(lines[-4:])})
                elif r < 0.93:
                    add("reaction", m, g, when, {"emoji": rng.choice(["👍", "❤️", "😂", "🎉"])})
                elif r < 0.985:
                    add("check_in", m, g, when, {})
                else:
                    add("purchase", m, g, when, {"amount_fen": rng.choice([1990, 9900, 12800, 29900])})
    events.sort(key=lambda e: e["occurred_at"])  # type: ignore[arg-type, return-value]
    say(f"activity: ingesting {len(events)} events")
    for i in range(0, len(events), 5000):
        do_ingest(tenant.pk, events[i : i + 5000], create_members=False)

    # role holders: the most active members of each community
    with transaction.atomic():
        by_activity = sorted(zip(rows, profile, strict=True), key=lambda x: -x[1][0])
        for community, groups_of in ((car, car_groups), (skin, skin_groups)):
            ranked = [m for m, p in by_activity if any(g in groups_of for g in p[1]) and p[3] is None]
            plan = [(CommunityRole.OWNER, 1, "群主 · 门店店长"), (CommunityRole.ADVOCATE, 3, "每月红包 + 免费保养一次"),
                    (CommunityRole.CUSTOMER_SERVICE, 2, "客服补贴"), (CommunityRole.CONTENT_CREATOR, 2, "内容稿费"),
                    (CommunityRole.GUEST_EXPERT, 1, "嘉宾分享")]
            k = 0
            for role, count, note in plan:
                for m in ranked[k : k + count]:
                    RoleAssignment.objects.create(tenant=tenant, community=community, member=m, role=role,
                                                  since=start, assigned_by="demo", reward_note=note)
                k += count
    return tenant


def _external_id(platform: str, member_id: int) -> str:
    if platform == Platform.MATRIX:
        return f"@m{member_id}:shequn.local"
    if platform == Platform.TELEGRAM:
        return str(700000000 + member_id)
    return f"wmDemo{member_id:06d}"


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


# --------------------------------------------------------------------------------------------- engines

DEMO_ADS = [
    "加微信 vx8866 领红包, 私聊送福利",
    "兼职刷单, 日结 300, 有意者加 V 信",
    "砍一刀帮我助力 https://pinduoduo.com/x?k=1",
    "高仿名牌包包代购, 加\u200b微\u200b信 ｂａｏ８８８",
    "点击领取 888 元红包 http://t.cn/aBcD",
    "低息贷款, 当天放款, 联系 QQ 12345678",
]


def seed_engines(tenant: Tenant, *, seed: int = 20261123, progress: Callable[[str], None] | None = None) -> None:
    """Every engine's demo data for an existing demo tenant. Each step is idempotent on its own."""
    say = progress or (lambda _msg: None)
    rng = random.Random(seed + 1)
    principal = Principal.system(tenant.pk, label="demo")
    communities = {c.name: c for c in Community.objects.filter(tenant=tenant)}
    car, skin = communities.get("驰骋车友会"), communities.get("水润护肤群")
    if car is None or skin is None:
        return
    say("engines: moderation")
    _seed_moderation(tenant, principal, car, skin, rng)
    say("engines: referrals + commerce")
    _seed_referrals_and_commerce(tenant, principal, skin, rng)
    say("engines: engagement")
    _seed_engagement(tenant, principal, car, skin, rng)
    say("analytics: rebuild")
    do_rebuild(tenant.pk)  # the rollups of the 90 days (the worker's refresh keeps them current after)


def _open_members(tenant: Tenant, community: Community) -> list[int]:
    return sorted(set(Membership.objects.filter(tenant=tenant, community=community, left_at__isnull=True)
                      .values_list("member_id", flat=True)))


def _seed_moderation(tenant: Tenant, principal: Principal, car: Community, skin: Community, rng: random.Random) -> None:
    """The default rule pack on in both communities: the car club queues ads for a person to review
    (人工审核), the skincare community runs in dry-run mode (演练: the planned actions are shown, the
    demo groups have no bot). A handful of ads from members go through the real ingest and verdict."""
    if not ModerationPolicy.objects.filter(tenant=tenant).exists():
        do_save_policy(principal, car.pk, enabled=True, on_ad=Decision.REVIEW)
        do_save_policy(principal, skin.pk, enabled=True, dry_run=True)
    groups = {g.pk: g for g in ChatGroup.objects.filter(tenant=tenant, community__in=[car, skin])}
    # half of the ads in each community (alternating), spread over its members, so both the review
    # queue (car club) and the dry run (skincare) show several
    by_community: list[list[tuple[int, int]]] = [
        [mg for mg in _member_groups(tenant, list(groups)) if groups[mg[1]].community_id == c.pk] for c in (car, skin)
    ]
    if not all(by_community):
        return
    picks = []
    for i in range(len(DEMO_ADS)):
        pool = by_community[i % 2]
        picks.append(pool[(i // 2) * len(pool) // ((len(DEMO_ADS) + 1) // 2)])
    now = timezone.now()
    events = []
    for i, ((member_id, group_id), text) in enumerate(zip(picks, DEMO_ADS, strict=True)):
        g = groups[group_id]
        events.append({"platform": g.platform, "event_id": f"demo-ad-{i}", "kind": "message",
                       "occurred_at": now - dt.timedelta(hours=3 * (len(DEMO_ADS) - i)),
                       "sender": _external_id(g.platform, member_id), "group": g.external_id,
                       "payload": {"text": text}})
    do_ingest(tenant.pk, events, create_members=False)
    # judged here, not only by the dispatch task: the demo shows the queue before a worker runs
    stored = list(ActivityEvent.objects.filter(tenant=tenant, platform_event_id__startswith="demo-ad-"))
    do_moderate_events(tenant.pk, stored)


def _member_groups(tenant: Tenant, group_ids: list[int]) -> list[tuple[int, int]]:
    return sorted(set(Membership.objects.filter(tenant=tenant, group_id__in=group_ids, left_at__isnull=True)
                      .values_list("member_id", "group_id")))


def _seed_referrals_and_commerce(tenant: Tenant, principal: Principal, skin: Community, rng: random.Random) -> None:
    """Referrals first (plan, links, bindings, fission tasks), so commerce's sandbox orders earn
    commissions; order events are delivered here (the worker would do it later), then one
    referrer asks to withdraw more than the approval threshold."""
    people = _open_members(tenant, skin)
    if len(people) < 4:
        return
    shuffled = people[:]
    rng.shuffle(shuffled)
    n_ref = max(1, min(6, len(shuffled) // 8))
    referrers, buyers = shuffled[:n_ref], shuffled[n_ref:n_ref + 40]
    if not CommissionPlan.objects.filter(tenant=tenant).exists():
        ReferralPolicy.objects.update_or_create(tenant=tenant, defaults={"withdrawal_approval_above_fen": 2000})
        do_create_plan(principal, name="护肤好物分销 10%", community_id=skin.pk,
                       refund_window_days=0, rules=[{"rate_bps": 1000}])
        FissionTask.objects.create(tenant=tenant, name="邀请 3 位好友下单得 100 积分", threshold=3,
                                   reward_kind=RewardKind.POINTS, reward_value=100)
        FissionTask.objects.create(tenant=tenant, name="邀请 5 位好友下单得 ¥10 现金", threshold=5,
                                   reward_kind=RewardKind.CASH, reward_value=1000)
        for r in referrers:
            do_get_or_create_link(principal, member_id=r, community_id=skin.pk)
        for i, b in enumerate(buyers):
            try:
                do_bind(principal, member_id=b, referrer_id=referrers[i % len(referrers)])
            except ShequnError:
                continue
    do_seed_demo_commerce(principal, community_id=skin.pk, member_ids=buyers)
    do_spread_demo_orders(tenant.pk, days=90)  # the orders carried the seeding instant: give them 90 days
    # listeners are idempotent on the event id: delivering an event the worker already delivered is harmless
    for event_id in OrderEvent.objects.filter(tenant=tenant).order_by("pk").values_list("pk", flat=True):
        deliver(event_id)
    if not Withdrawal.objects.filter(tenant=tenant).exists():
        best = max(referrers, key=lambda r: account_balance(tenant.pk, "member", r, "available"))
        available = account_balance(tenant.pk, "member", best, "available")
        if available > 2000:
            with contextlib.suppress(ShequnError):  # e.g. the ledger says no: the demo goes on without one
                do_request_withdrawal(principal, member_id=best, amount_fen=available - available % 100,
                                      idempotency_key="demo-withdrawal-1", payee="demo-openid")


def _seed_engagement(tenant: Tenant, principal: Principal, car: Community, skin: Community, rng: random.Random) -> None:
    now = timezone.now()
    if not MemberScore.objects.filter(tenant=tenant).exists():
        do_recompute_scores(tenant.pk)  # scores, then lifecycle stages
    car_people, skin_people = _open_members(tenant, car), _open_members(tenant, skin)
    regulars = skin_people[: max(1, len(skin_people) // 10)]
    if do_seed_streak_badges(tenant.pk):  # streak milestones (3 / 7 / 30 / 100 days), shown on the check-in page
        for mid in regulars[:60]:  # an older demo's check-ins earn theirs now
            do_award_badges(tenant.pk, mid)
    # a week of check-ins from the regulars and a welcome gift (keys "demo:welcome:<id>": done once,
    # even when the demo is run again on a later day)
    if not PointsEntry.objects.filter(tenant=tenant, idempotency_key__startswith="demo:welcome:").exists():
        for mid in regulars[:60]:
            # streaks that vary: from a single day to a month, some broken by a missed day
            length = rng.choice([1, 2, 3, 3, 5, 7, 7, 10, 14, 21, 30])
            gap = rng.choice([None, None, None, length // 2 or None])
            for d in range(length):
                if d == gap:
                    continue
                with contextlib.suppress(ShequnError):  # one per local day
                    do_check_in(tenant.pk, mid, at=now - dt.timedelta(days=d, hours=2), source="portal")
        for mid in regulars[:20]:
            do_points_earn(tenant.pk, mid, 50, kind="gift", idempotency_key=f"demo:welcome:{mid}", reason="新人礼包")
    if not Lottery.objects.filter(tenant=tenant).exists() and car_people:
        lot = do_create_lottery(principal, title="周末自驾抽奖: 免费保养", community_id=car.pk,
                                closes_at=now + dt.timedelta(days=2), draw_at=now + dt.timedelta(days=2, hours=1),
                                prizes=[("免费保养一次", 1), ("车载香薰", 3)])
        for mid in car_people[:: max(1, len(car_people) // 40)][:40]:
            try:
                do_enter_lottery(tenant.pk, lot.pk, mid)
            except ShequnError:
                continue
    if not RedPacket.objects.filter(tenant=tenant).exists() and skin_people:
        group = ChatGroup.objects.filter(tenant=tenant, community=skin).order_by("pk").first()
        packet = do_create_red_packet(principal, total=8800, count=20, currency="cash",
                                      group_id=group.pk if group else None, community_id=skin.pk,
                                      title="护肤群周年庆红包", expires_in=dt.timedelta(hours=24))
        for mid in skin_people[1::7][:12]:
            try:
                do_claim_red_packet(tenant.pk, packet.pk, mid, randint=rng.randint)
            except ShequnError:
                continue
    if not WelcomeMessage.objects.filter(tenant=tenant).exists():
        do_save_welcome(principal, car.pk,
                        body="欢迎 {name} 加入{community} 🚗 邀请人: {inviter}\n"
                             "入群先看群规: {rules_link}\n会员中心 (签到、活动、福利): {portal_link}")
        do_save_welcome(principal, skin.pk, platform="wecom", batch_seconds=15,
                        body="欢迎 {name} ✨ 群规: {rules_link} 新人券在会员中心领取: {portal_link}")
        do_save_welcome(principal, skin.pk, body="欢迎 {name} 加入{community} ✨ 群规: {rules_link}")
    if not ContentItem.objects.filter(tenant=tenant).exists():
        lesson = ContentItem.objects.create(tenant=tenant, title="护肤小课堂", body="今晚 8 点: 换季敏感肌怎么护理 ✨")
        welcome = ContentItem.objects.create(tenant=tenant, title="新人第 1 天",
                                             body="欢迎入群! 回复「福利」领取新人券 🎁")
        ride = ContentItem.objects.create(tenant=tenant, title="周末自驾召集", kind=ContentItem.Kind.LINK,
                                          body="本周六环湖自驾, 点击报名", url="https://example.com/ride")
        entry = Community.objects.filter(tenant=tenant, name="新人福利群").first()
        ContentSchedule.objects.create(tenant=tenant, content=lesson, kind=ContentSchedule.Kind.RECURRING,
                                       community=skin, time_of_day=dt.time(20, 0))
        ContentSchedule.objects.create(tenant=tenant, content=welcome, kind=ContentSchedule.Kind.SEQUENCE,
                                       community=entry or skin, time_of_day=dt.time(10, 0), day_offset=1)
        ContentSchedule.objects.create(tenant=tenant, content=ride, kind=ContentSchedule.Kind.RECURRING,
                                       community=car, time_of_day=dt.time(19, 30), weekdays=[3])
