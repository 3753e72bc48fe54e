"""Creating the engagement campaign objects an operator sets up by hand: badges, SOP content items
(with per-platform texts) and their schedules (fixed time, recurring, N days after joining). The
console's add forms and the API call these writers; their ``check_*`` validators run first in both,
so the same input gives the same error naming the same field."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from shequn.communities.models import ChatGroup, Community
from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.audiences import audience_choices

from ..models import Badge, ContentItem, ContentSchedule

_SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")
#: the platforms a content item may carry its own text for
OVERRIDE_PLATFORMS = ("wecom", "telegram", "matrix")


def check_badge(tenant_id: int, *, code: str, name: str, rule: str, threshold: int, description: str = "",
                badge_id: int | None = None) -> None:
    """Every rule of :func:`do_create_badge` (``badge_id``: the badge being changed keeps its code)."""
    if not _SLUG.match(code or ""):
        raise Invalid(_("代码只能由字母、数字、- 和 _ 组成 (最多 64 个)"), details={"field": "code"})
    if not name or not name.strip() or len(name) > 64:
        raise Invalid(_("请填写名称 (最多 64 个字符)"), details={"field": "name"})
    if rule not in Badge.Rule.values:
        raise Invalid(_("未知的徽章规则"), details={"field": "rule"})
    if not isinstance(threshold, int) or threshold < 1:
        raise Invalid(_("门槛至少为 1"), details={"field": "threshold"})
    if len(description) > 200:
        raise Invalid(_("说明最多 200 个字符"), details={"field": "description"})
    same_code = Badge.objects.filter(tenant_id=tenant_id, code=code)
    if (same_code.exclude(pk=badge_id) if badge_id is not None else same_code).exists():
        raise Conflict(_("徽章代码已存在: %(c)s") % {"c": code}, details={"field": "code"})


@transaction.atomic
def do_create_badge(principal: Principal, *, code: str, name: str, rule: str, threshold: int,
                    description: str = "") -> Badge:
    check_badge(principal.tenant_id, code=code, name=name, rule=rule, threshold=threshold, description=description)
    badge = Badge.objects.create(tenant_id=principal.tenant_id, code=code, name=name.strip(), rule=rule,
                                 threshold=threshold, description=description)
    do_audit(principal, "engagement.badge.create", "badge", str(badge.pk), data={"rule": rule, "threshold": threshold})
    return badge


def check_content_item(tenant_id: int, *, title: str, kind: str = ContentItem.Kind.TEXT, body: str = "",
                       url: str = "", image_url: str = "", is_sales: bool = False,
                       platform_overrides: Mapping[str, str] | None = None) -> None:
    if not title or not title.strip() or len(title) > 120:
        raise Invalid(_("请填写标题 (最多 120 个字符)"), details={"field": "title"})
    if kind not in ContentItem.Kind.values:
        raise Invalid(_("未知的内容类型"), details={"field": "kind"})
    if kind in (ContentItem.Kind.TEXT, ContentItem.Kind.MARKDOWN) and not body.strip():
        raise Invalid(_("文本内容需要正文"), details={"field": "body"})
    if kind == ContentItem.Kind.LINK and not url:
        raise Invalid(_("链接卡片需要链接"), details={"field": "url"})
    if kind == ContentItem.Kind.IMAGE and not image_url:
        raise Invalid(_("图片内容需要图片地址"), details={"field": "image_url"})
    for key in (platform_overrides or {}):
        if key not in OVERRIDE_PLATFORMS:
            raise Invalid(_("未知的平台: %(p)s") % {"p": key}, details={"field": f"platform_overrides.{key}"})


@transaction.atomic
def do_create_content_item(principal: Principal, *, title: str, kind: str = ContentItem.Kind.TEXT, body: str = "",
                           url: str = "", image_url: str = "", is_sales: bool = False,
                           platform_overrides: Mapping[str, str] | None = None) -> ContentItem:
    check_content_item(principal.tenant_id, title=title, kind=kind, body=body, url=url, image_url=image_url,
                       is_sales=is_sales, platform_overrides=platform_overrides)
    overrides = {k: v for k, v in (platform_overrides or {}).items() if v and v.strip()}
    item = ContentItem.objects.create(tenant_id=principal.tenant_id, title=title.strip(), kind=kind, body=body,
                                      url=url, image_url=image_url, is_sales=is_sales, platform_overrides=overrides)
    do_audit(principal, "engagement.content.create", "content_item", str(item.pk), data={"kind": kind})
    return item


def check_content_schedule(
    tenant_id: int, *, content_id: int | None, kind: str, community_id: int | None = None,
    group_id: int | None = None, run_at: dt.datetime | None = None, time_of_day: dt.time | None = None,
    weekdays: Sequence[int] = (), day_offset: int = 0, respect_quiet_hours: bool = True,
    audience_id: int | None = None,
) -> None:
    if content_id is None or not ContentItem.objects.filter(tenant_id=tenant_id, pk=content_id).exists():
        raise NotFound(_("内容不存在"), details={"field": "content_id"})
    if kind not in ContentSchedule.Kind.values:
        raise Invalid(_("未知的排期类型"), details={"field": "kind"})
    if community_id is None and group_id is None:
        raise Invalid(_("请选择社群或群"), details={"field": "community_id"})
    if community_id is not None and not Community.objects.filter(tenant_id=tenant_id, pk=community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "community_id"})
    if group_id is not None and not ChatGroup.objects.filter(tenant_id=tenant_id, pk=group_id).exists():
        raise NotFound(_("群不存在"), details={"field": "group_id"})
    if kind == ContentSchedule.Kind.FIXED and run_at is None:
        raise Invalid(_("定时发送需要发送时间"), details={"field": "run_at"})
    if kind != ContentSchedule.Kind.FIXED and time_of_day is None:
        raise Invalid(_("周期和序列发送需要每日时间"), details={"field": "time_of_day"})
    if any(not isinstance(d, int) or not 0 <= d <= 6 for d in weekdays):
        raise Invalid(_("星期须在 0 (周一) 到 6 (周日) 之间"), details={"field": "weekdays"})
    if kind == ContentSchedule.Kind.SEQUENCE and not 0 <= day_offset <= 365:
        raise Invalid(_("入群后天数须在 0 到 365 之间"), details={"field": "day_offset"})
    if audience_id is not None and audience_id not in dict(audience_choices(tenant_id)):
        raise NotFound(_("人群不存在"), details={"field": "audience_id"})


@transaction.atomic
def do_create_content_schedule(
    principal: Principal, *, content_id: int | None, kind: str, community_id: int | None = None,
    group_id: int | None = None, run_at: dt.datetime | None = None, time_of_day: dt.time | None = None,
    weekdays: Sequence[int] = (), day_offset: int = 0, respect_quiet_hours: bool = True,
    audience_id: int | None = None,
) -> ContentSchedule:
    """An SOP item: a content item sent at a fixed time, on a recurring time, or N days after each
    member joined (a sequence is several such items of one community)."""
    check_content_schedule(principal.tenant_id, content_id=content_id, kind=kind, community_id=community_id,
                           group_id=group_id, run_at=run_at, time_of_day=time_of_day, weekdays=weekdays,
                           day_offset=day_offset, respect_quiet_hours=respect_quiet_hours, audience_id=audience_id)
    assert content_id is not None  # checked above
    s = ContentSchedule.objects.create(
        tenant_id=principal.tenant_id, content_id=content_id, kind=kind, community_id=community_id, group_id=group_id,
        run_at=run_at, time_of_day=time_of_day, weekdays=sorted(set(weekdays)), day_offset=day_offset,
        respect_quiet_hours=respect_quiet_hours, audience_id=audience_id)
    do_audit(principal, "engagement.schedule.create", "content_schedule", str(s.pk), data={"kind": kind})
    return s


@transaction.atomic
def do_set_schedule_active(principal: Principal, schedule_id: int, *, active: bool) -> ContentSchedule:
    """Pause or resume an SOP item."""
    s = ContentSchedule.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=schedule_id).first()
    if s is None:
        raise NotFound(_("排期不存在"), details={"field": "schedule_id"})
    if s.active != active:
        s.active = active
        s.save(update_fields=["active"])
        do_audit(principal, "engagement.schedule.resume" if active else "engagement.schedule.pause",
                 "content_schedule", str(s.pk))
    return s


def schedule_form_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """The console form's cleaned data as the service's arguments."""
    return {"content_id": getattr(data.get("content"), "pk", None), "kind": data.get("kind") or "",
            "community_id": getattr(data.get("community"), "pk", None),
            "group_id": getattr(data.get("group"), "pk", None), "run_at": data.get("run_at"),
            "time_of_day": data.get("time_of_day"), "weekdays": [int(d) for d in data.get("weekdays_list") or []],
            "day_offset": data.get("day_offset") or 0, "respect_quiet_hours": bool(data.get("respect_quiet_hours")),
            "audience_id": int(data["audience_id"]) if data.get("audience_id") else None}
