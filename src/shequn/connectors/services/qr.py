"""WeCom QR configs: 加入群聊 (``join_way``: up to 5 customer groups) and 联系我 (``contact_way``).
``state`` (≤ 30 chars) comes back on joins made through them, which is how referrals attributes a
join to an invitation."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _

from shequn.core.errors import Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from ..models import Connection, QrConfig
from ..platforms.wecom.outbound import WecomApi
from .connections import conn_info

STATE_MAX = 30


def check_qr_input(*, state: str, chat_ids: list[str] | None = None, users: list[str] | None = None) -> None:
    if len(state) > STATE_MAX:
        raise Invalid(_("state 最长 %(n)d 个字符") % {"n": STATE_MAX}, details={"field": "state"})
    if chat_ids is not None and not 1 <= len(chat_ids) <= 5:
        raise Invalid(_("加入群聊二维码需要 1 到 5 个群"), details={"field": "chat_ids"})
    if users is not None and not users:
        raise Invalid(_("联系我二维码需要至少一个成员"), details={"field": "users"})


def do_create_qr_config(principal: Principal, connection_id: int, *, kind: str, state: str = "", remark: str = "",
                        chat_ids: list[str] | None = None, users: list[str] | None = None) -> QrConfig:
    """Create a WeCom 加入群聊 (``join_way``: up to 5 customer groups) or 联系我 (``contact_way``) QR
    config. ``state`` (≤ 30 chars) is echoed back on joins made through it (for attribution)."""
    conn = Connection.objects.filter(tenant_id=principal.tenant_id, pk=connection_id, platform="wecom").first()
    if conn is None:
        raise NotFound(_("连接不存在"), details={"field": "connection_id"})
    if kind not in QrConfig.Kind.values:
        raise Invalid(_("未知的二维码类型: %(k)s") % {"k": kind}, details={"field": "kind"})
    if len(remark) > 30:
        raise Invalid(_("备注最长 30 个字符"), details={"field": "remark"})
    is_join = kind == QrConfig.Kind.JOIN_WAY
    check_qr_input(state=state, chat_ids=list(chat_ids or []) if is_join else None,
                   users=list(users or []) if not is_join else None)
    api = WecomApi(conn_info(conn))
    if is_join:
        made = api.add_join_way(chat_ids=list(chat_ids or []), state=state, remark=remark)
    else:
        made = api.add_contact_way(users=list(users or []), state=state, remark=remark)
    with transaction.atomic():
        qr = QrConfig.objects.create(tenant_id=principal.tenant_id, connection=conn, kind=kind,
                                     config_id=str(made["config_id"]), state=state, remark=remark,
                                     qr_code=str(made.get("qr_code") or ""), chat_ids=list(chat_ids or []),
                                     users=list(users or []))
        do_audit(principal, "connectors.qr_config", "qr_config", str(qr.pk), data={"kind": kind, "state": state})
    return qr
