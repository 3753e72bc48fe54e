"""Live sessions (直播): creating a session and recording a viewer who joined the community through it
(a membership with join_source "live", opened through :func:`shequn.communities.services.do_join`)."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.communities.models import Community, JoinSource
from shequn.communities.services import do_join
from shequn.core.errors import Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from ..models import LiveJoin, LiveSession
from ._common import _member


def check_live_session(
    tenant_id: int, *, title: str, starts_at: dt.datetime, platform: str = "wechat_channels",
    ends_at: dt.datetime | None = None, host_member_id: int | None = None, host_name: str = "",
    community_id: int | None = None,
) -> None:
    """Every rule of :func:`do_create_live_session`, without writing."""
    if not title or not title.strip() or len(title) > 200:
        raise Invalid(_("直播标题不能为空 (最多 200 个字符)"), details={"field": "title"})
    if ends_at is not None and ends_at <= starts_at:
        raise Invalid(_("结束时间必须晚于开始时间"), details={"field": "ends_at"})
    if host_member_id is not None:
        _member(tenant_id, host_member_id, "host_member_id")
    if community_id is not None and not Community.objects.filter(tenant_id=tenant_id, pk=community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "community_id"})


@transaction.atomic
def do_end_live_session(principal: Principal, live_session_id: int, *, now: dt.datetime | None = None) -> LiveSession:
    """Record the end of a live stream (now)."""
    now = now or timezone.now()
    live = LiveSession.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=live_session_id).first()
    if live is None:
        raise NotFound(_("直播场次不存在"), details={"field": "live_session_id"})
    if live.ends_at is None or live.ends_at > now:
        live.ends_at = max(now, live.starts_at + dt.timedelta(seconds=1))
        live.save(update_fields=["ends_at"])
        do_audit(principal, "commerce.live.end", "LiveSession", live.pk)
    return live


@transaction.atomic
def do_create_live_session(
    principal: Principal, *, title: str, starts_at: dt.datetime, platform: str = "wechat_channels",
    ends_at: dt.datetime | None = None, host_member_id: int | None = None, host_name: str = "",
    community_id: int | None = None,
) -> LiveSession:
    check_live_session(principal.tenant_id, title=title, starts_at=starts_at, platform=platform, ends_at=ends_at,
                       host_member_id=host_member_id, host_name=host_name, community_id=community_id)
    live = LiveSession.objects.create(
        tenant_id=principal.tenant_id, title=title.strip()[:200], platform=platform[:32], starts_at=starts_at,
        ends_at=ends_at, host_id=host_member_id, host_name=host_name[:120], community_id=community_id,
    )
    do_audit(principal, "commerce.live.create", "LiveSession", live.pk, data={"title": live.title})
    return live


@transaction.atomic
def do_record_live_join(principal: Principal, live_session_id: int, member_id: int,
                        community_id: int | None = None) -> LiveJoin:
    """A viewer joined the community through this live stream: open a membership (join_source live)."""
    live = LiveSession.objects.filter(tenant_id=principal.tenant_id, pk=live_session_id).first()
    if live is None:
        raise NotFound(_("直播场次不存在"), details={"field": "live_session_id"})
    member = _member(principal.tenant_id, member_id)
    cid = community_id or live.community_id
    community = Community.objects.filter(tenant_id=principal.tenant_id, pk=cid).first() if cid else None
    if community is None:
        raise Invalid(_("需要指定社群"), details={"field": "community_id"})
    now = timezone.now()
    join, created = LiveJoin.objects.get_or_create(
        tenant_id=principal.tenant_id, session=live, member=member, community=community, defaults={"joined_at": now}
    )
    if created:  # an open membership of the community already there is kept as it is
        do_join(principal, member, community, source=JoinSource.LIVE, joined_at=now)
    return join
