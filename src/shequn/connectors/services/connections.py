"""Connections: a tenant's bot/app accounts on the platforms. Secrets are encrypted at rest
(:mod:`shequn.connectors.secrets`); only their last 4 characters are kept in clear for the console,
and the decrypted values exist only in memory while a delivery or a callback check uses them."""

from __future__ import annotations

import asyncio
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
from ..adapters import ConnInfo, DeliveryError
from ..models import Connection
from ..platforms.wecom.outbound import BAD_CORP_ID, BAD_SECRET, AccessError, check_access

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


def verify_connection(platform: str, config: Mapping[str, Any], secret_values: Mapping[str, str]) -> dict[str, Any]:
    """Check the credentials with the platform before they are stored; returns the config completed
    from the platform's answer. Raises :class:`Invalid` with a plain reason naming the field.

    * Matrix: ``whoami`` with the token (the homeserver reachable, the token valid, and its user the
      configured ``user_id``).
    * Telegram: ``getMe`` with the bot token (fills in ``bot_id`` / ``bot_username``). The bot's
      admin rights in each chat are checked when chats are known (:func:`shequn.connectors.services.
      telegram.do_check_telegram_rights`), not here: a new bot has no chats yet.
    * WeCom: ``gettoken`` with the corp id and secret, and the 客户联系 permission of that secret."""
    config = dict(config)
    info = ConnInfo(id=0, tenant_id=0, platform=platform, config=config,
                    secrets={k: str(v) for k, v in secret_values.items()})
    if platform == "matrix":
        return _verify_matrix(info, config)
    if platform == "telegram":
        return _verify_telegram(info, config)
    if platform == "wecom":
        return _verify_wecom(info, config)
    return config


def _verify_matrix(info: ConnInfo, config: dict[str, Any]) -> dict[str, Any]:
    from ..platforms.matrix.outbound import whoami  # noqa: PLC0415, RUF100  (matrix-nio takes seconds to import)

    try:
        me = whoami(info)
    except DeliveryError as exc:
        raise Invalid(_("Matrix 拒绝了这个 access_token: %(error)s") % {"error": exc.message[:200]},
                      details={"field": "secrets.access_token"}) from exc
    except Exception as exc:
        raise Invalid(_("无法连接 Matrix homeserver %(hs)s: %(error)s") % {
            "hs": config.get("homeserver"), "error": type(exc).__name__},
            details={"field": "config.homeserver"}) from exc
    user_id = str(me.get("user_id") or "")
    if config.get("user_id") and config["user_id"] != user_id:
        raise Invalid(_("这个 access_token 属于 %(actual)s, 不是 %(user)s") % {"actual": user_id,
                                                                          "user": config["user_id"]},
                      details={"field": "config.user_id"})
    config["user_id"] = user_id
    if me.get("device_id") and not config.get("device_id"):
        config["device_id"] = str(me["device_id"])
    return config


def _verify_telegram(info: ConnInfo, config: dict[str, Any]) -> dict[str, Any]:
    from aiogram.exceptions import (  # noqa: PLC0415, RUF100  (aiogram takes seconds to import)
        TelegramNetworkError,
        TelegramUnauthorizedError,
    )

    from ..platforms.telegram.outbound import get_me  # noqa: PLC0415, RUF100  (aiogram takes seconds to import)

    try:
        me = asyncio.run(get_me(info))
    except TelegramUnauthorizedError as exc:
        raise Invalid(_("Telegram 拒绝了这个 bot_token (%(error)s): 请在 @BotFather 复制完整的 token") % {
            "error": exc.message[:200]}, details={"field": "secrets.bot_token"}) from exc
    except TelegramNetworkError as exc:
        raise Invalid(_("无法连接 Telegram Bot API %(api)s: %(error)s") % {
            "api": config.get("api_base") or "https://api.telegram.org", "error": exc.message[:200]},
            details={"field": "config.api_base"}) from exc
    except Exception as exc:  # a 404 for a malformed token, a bad answer
        raise Invalid(_("Telegram 拒绝了这个 bot_token (%(error)s): 请在 @BotFather 复制完整的 token") % {
            "error": type(exc).__name__}, details={"field": "secrets.bot_token"}) from exc
    if not me.get("is_bot", True):
        raise Invalid(_("这个 token 不属于机器人账号"), details={"field": "secrets.bot_token"})
    config["bot_id"] = int(me["id"])
    if me.get("username"):
        config["bot_username"] = str(me["username"])
    return config


def _verify_wecom(info: ConnInfo, config: dict[str, Any]) -> dict[str, Any]:
    try:
        check_access(info)
    except AccessError as exc:
        if exc.step == "token" and exc.errcode in BAD_CORP_ID:
            raise Invalid(_("企业微信拒绝了这个企业 ID (corp_id): %(code)s %(msg)s") % {
                "code": exc.errcode, "msg": exc.errmsg[:120]}, details={"field": "config.corp_id"}) from exc
        if exc.step == "token":
            hint = _("请使用「客户联系」应用的 Secret") if exc.errcode in BAD_SECRET else ""
            raise Invalid(_("企业微信拒绝了这个 Secret (corp_secret): %(code)s %(msg)s %(hint)s") % {
                "code": exc.errcode, "msg": exc.errmsg[:120], "hint": hint},
                details={"field": "secrets.corp_secret"}) from exc
        raise Invalid(_("这个 Secret 没有客户联系权限 (%(code)s %(msg)s): 请在企业微信管理后台「客户联系 → API」"
                        "中使用客户联系 Secret, 或给应用开启客户联系权限") % {
            "code": exc.errcode, "msg": exc.errmsg[:120]}, details={"field": "secrets.corp_secret"}) from exc
    except Exception as exc:
        raise Invalid(_("无法连接企业微信 API %(api)s: %(error)s") % {
            "api": config.get("api_base") or "https://qyapi.weixin.qq.com", "error": type(exc).__name__},
            details={"field": "config.api_base"}) from exc
    return config


def do_create_connection(principal: Principal, *, platform: str, name: str, config: Mapping[str, Any],
                         secret_values: Mapping[str, str], default_community_id: int | None = None,
                         verify: bool = True) -> Connection:
    """Connect a platform. With ``verify`` (the API and the console) the credentials are checked with
    the platform first (:func:`verify_connection`): a bogus token is refused, not stored. Secrets are
    encrypted at rest; only their last 4 characters are kept in clear (``secret_hints``) for the console."""
    check_connection_input(platform, config, secret_values)
    if verify:
        config = verify_connection(platform, config, secret_values)
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
        if changed:
            conn.config = verify_connection(conn.platform, conn.config, {**current, **changed})
        current.update(changed)
        conn.secrets_encrypted = secrets.encrypt(current)
        conn.secret_hints = {k: secrets.hint(v) for k, v in current.items()}
        conn.save(update_fields=["secrets_encrypted", "secret_hints", "config"])
        do_audit(principal, "connectors.secrets", "connection", str(conn.pk), data={"changed": sorted(changed)})
    return conn


def do_set_connection_active(principal: Principal, connection_id: int, active: bool, *, reason: str = "") -> Connection:
    """Switch a connection off (its sync / polling stops within seconds, no delivery) or on again."""
    with transaction.atomic():
        conn = Connection.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=connection_id).first()
        if conn is None:
            raise NotFound(_("连接不存在"))
        if conn.is_active != active:
            conn.is_active = active
            conn.save(update_fields=["is_active"])
            do_audit(principal, "connectors.activate" if active else "connectors.deactivate", "connection",
                     str(conn.pk), reason=reason)
    return conn


def do_delete_connection(principal: Principal, connection_id: int, *, reason: str = "") -> None:
    """Delete a connection with its rooms and raw callbacks. The communities' groups and the activity
    stay; its pending actions lose their connection (another connection of the group may take them)."""
    with transaction.atomic():
        conn = Connection.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=connection_id).first()
        if conn is None:
            raise NotFound(_("连接不存在"))
        do_audit(principal, "connectors.delete", "connection", str(conn.pk), reason=reason,
                 data={"platform": conn.platform, "name": conn.name})
        conn.delete()


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
