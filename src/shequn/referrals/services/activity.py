"""The referrals consumer of the activity stream: joins that carry an invite code are attributed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..models import (
    InviteLink,
    LinkEvent,
    LinkEventKind,
)
from .links import do_record_join


def on_activity(tenant_id: int, events: Iterable[Any]) -> None:
    """Activity consumer: a ``join`` whose payload carries ``invite_code`` (or ``state``, the WeCom
    join-QR parameter) is attributed to that link and binds the member. Idempotent: a join already
    recorded for (link, member, time) is skipped, so a retried batch adds nothing."""
    for ev in events:
        payload = ev.payload or {}
        code = str(payload.get("invite_code") or payload.get("state") or "")
        if not code or not ev.member_id:
            continue
        link = InviteLink.objects.filter(tenant_id=tenant_id, code=code).first()
        if link is None or LinkEvent.objects.filter(tenant_id=tenant_id, link=link, member_id=ev.member_id,
                                                    kind=LinkEventKind.JOIN, occurred_at=ev.occurred_at).exists():
            continue
        do_record_join(tenant_id, member_id=ev.member_id, code=code, group_id=ev.group_id, now=ev.occurred_at)
