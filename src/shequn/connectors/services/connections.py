"""Connections: a tenant's bot/app accounts on the platforms. Secrets are encrypted at rest
(:mod:`shequn.connectors.secrets`); only their last 4 characters are kept in clear for the console,
and the decrypted values exist only in memory while a delivery or a callback check uses them."""

from __future__ import annotations

import re
import secrets as pysecrets
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.communities.models import Community
from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from .. import secrets
from ..adapters import ConnInfo
from ..models import Connection

#: which secrets and config keys each platform's connection needs
REQUIRED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "matrix": (("homeserver", "user_id"), ("access_token",)),
    "telegram": ((), ("bot_token", "webhook_secret")),
    "wecom": (("corp_id",), ("corp_secret", "callback_token", "encoding_aes_key")),
}


def check_connection_input(platform: str, config: Mapping[str, Any], secret_values: Mapping[str, str],
                           *, partial: bool = False) -> None:
    if platform not in REQUIRED:
        raise Invalid(_("不支持的平台: %(p)s") % {"p": platform}, details={"field": "platform"})
    need_config, need_secrets = REQUIRED[platform]
    for key in need_config:
        if not partial and not str(config.get(key) or "").strip():
            raise Invalid(_("缺少配置项: %(k)s") % {"k": key}, details={"field": f"config.{key}"})
    for key in need_secrets:
        if not partial and not str(secret_values.get(key) or "").strip():
            raise Invalid(_("缺少密钥: %(k)s") % {"k": key}, details={"field": f"secrets.{key}"})
    if platform == "matrix" and config.get("homeserver") and not str(config["homeserver"]).startswith(
            ("http://", "https://")):
        raise Invalid(_("homeserver 必须以 http:// 或 https:// 开头"), details={"field": "config.homeserver"})
    ws = str(secret_values.get("webhook_secret") or "")
    if platform == "telegram" and ws and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", ws):
        raise Invalid(_("webhook_secret 只能包含字母、数字、_ 和 -, 最长 256"),
                      details={"field": "secrets.webhook_secret"})
    if platform == "wecom" and secret_values.get("encoding_aes_key") and len(secret_values["encoding_aes_key"]) != 43:
        raise Invalid(_("EncodingAESKey 必须是 43 个字符"), details={"field": "secrets.encoding_aes_key"})


def do_create_connection(principal: Principal, *, platform: str, name: str, config: Mapping[str, Any],
                         secret_values: Mapping[str, str], default_community_id: int | None = None) -> Connection:
    """Connect a platform. Secrets are encrypted at rest; only their last 4 characters are kept in
    clear (``secret_hints``) for the console."""
    check_connection_input(platform, config, secret_values)
    name = name.strip()
    if not name:
        raise Invalid(_("名称不能为空"), details={"field": "name"})
    if default_community_id is not None and not Community.objects.filter(
            tenant_id=principal.tenant_id, pk=default_community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "default_community_id"})
    clean = {k: str(v) for k, v in secret_values.items() if str(v)}
    with transaction.atomic():
        if Connection.objects.filter(tenant_id=principal.tenant_id, platform=platform, name=name).exists():
            raise Conflict(_("同名连接已存在"), details={"field": "name"})
        conn = Connection.objects.create(
            tenant_id=principal.tenant_id, platform=platform, name=name, config=dict(config),
            secrets_encrypted=secrets.encrypt(clean), secret_hints={k: secrets.hint(v) for k, v in clean.items()},
            hook_key=pysecrets.token_urlsafe(24), default_community_id=default_community_id,
        )
        do_audit(principal, "connectors.connect", "connection", str(conn.pk),
                 data={"platform": platform, "name": name, "secrets": sorted(clean)})
    return conn


def do_update_connection_secrets(principal: Principal, connection_id: int,
                                 secret_values: Mapping[str, str]) -> Connection:
    """Replace some secrets (blank values keep the stored one)."""
    with transaction.atomic():
        conn = Connection.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=connection_id).first()
        if conn is None:
            raise NotFound(_("连接不存在"))
        current = secrets.decrypt(conn.secrets_encrypted)
        changed = {k: str(v) for k, v in secret_values.items() if str(v)}
        check_connection_input(conn.platform, conn.config, {**current, **changed}, partial=True)
        current.update(changed)
        conn.secrets_encrypted = secrets.encrypt(current)
        conn.secret_hints = {k: secrets.hint(v) for k, v in current.items()}
        conn.save(update_fields=["secrets_encrypted", "secret_hints"])
        do_audit(principal, "connectors.secrets", "connection", str(conn.pk), data={"changed": sorted(changed)})
    return conn


def connection_secrets(conn: Connection) -> dict[str, str]:
    """Decrypted secrets, for adapters only. Never log or return them."""
    return secrets.decrypt(conn.secrets_encrypted)


def conn_info(conn: Connection) -> ConnInfo:
    """The plain snapshot of a connection (with its decrypted secrets) that platform calls take."""
    return ConnInfo(id=conn.pk, tenant_id=conn.tenant_id, platform=conn.platform, config=dict(conn.config or {}),
                    secrets=secrets.decrypt(conn.secrets_encrypted))


def do_note_connection_error(connection_id: int, message: str) -> None:
    Connection.objects.filter(pk=connection_id).update(
        error_count=F("error_count") + 1, last_error=message[:500], last_error_at=timezone.now())
