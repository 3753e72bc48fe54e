"""Private helpers shared by several engagement topics."""

from __future__ import annotations

from django.utils.translation import gettext as _

from shequn.connectors.models import OutboxAction
from shequn.connectors.services import do_request_action
from shequn.core.errors import NotFound
from shequn.members.models import Member


def check_member(tenant_id: int, member_id: int) -> Member:
    m = Member.objects.filter(tenant_id=tenant_id, pk=member_id).first()
    if m is None:
        raise NotFound(_("会员不存在"), details={"field": "member_id"})
    return m



def _announce(tenant_id: int, group_id: int | None, key: str, text: str, source: str) -> OutboxAction | None:
    if group_id is None:
        return None
    return do_request_action(tenant_id, kind="send", group_id=group_id, idempotency_key=key,
                             payload={"text": text}, source=source)
