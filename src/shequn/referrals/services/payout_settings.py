"""Payout settings: which provider pays a tenant's withdrawals and the tenant's WeChat Pay merchant
credentials (edited in the console with real fields, never raw JSON).

The merchant private key and the APIv3 key are encrypted at rest (:mod:`shequn.core.fieldcrypt`)
and never returned: the console shows ``••••`` and the last four characters; leaving a secret field
empty when saving keeps the stored value. Choosing ``wechat`` needs a complete configuration."""

from __future__ import annotations

import re
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from django.db import transaction
from django.utils.translation import gettext as _

from shequn.core import fieldcrypt
from shequn.core.errors import Invalid
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from ..models import PayoutProviderName, ReferralPolicy, WeChatPayConfig
from ._common import _require, check_max_length, get_policy

_MCHID = re.compile(r"^\d{6,32}$")
_APPID = re.compile(r"^wx[0-9a-zA-Z]{6,30}$")
_SERIAL = re.compile(r"^[0-9A-Fa-f]{8,64}$")


def _pem_body(value: str) -> str:
    """A pasted PEM (or its base64 body alone, wrapped by the callers), line endings normalised."""
    return (value or "").strip().replace("\r\n", "\n")


def _pem_base64(value: str) -> str:
    """The base64 of a PEM without its ``-----BEGIN/END-----`` lines (a hint of a PEM's footer says nothing)."""
    return "".join(line.strip() for line in value.splitlines() if not line.startswith("-----"))


def check_private_key(value: str) -> str:
    pem = _pem_body(value)
    if not pem.startswith("-----BEGIN"):
        pem = "-----BEGIN PRIVATE KEY-----\n" + pem + "\n-----END PRIVATE KEY-----\n"
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise Invalid(_("商户 API 私钥格式不正确: 请粘贴 apiclient_key.pem 的全部内容"),
                      details={"field": "private_key"}) from exc
    if not isinstance(key, RSAPrivateKey):
        raise Invalid(_("商户 API 私钥必须是 RSA 私钥"), details={"field": "private_key"})
    return pem


def check_public_key(value: str) -> str:
    pem = _pem_body(value)
    if not pem.startswith("-----BEGIN"):
        pem = "-----BEGIN PUBLIC KEY-----\n" + pem + "\n-----END PUBLIC KEY-----\n"
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise Invalid(_("微信支付公钥格式不正确: 请粘贴商户平台下载的 pub_key.pem 的全部内容"),
                      details={"field": "public_key"}) from exc
    if not isinstance(key, RSAPublicKey):
        raise Invalid(_("微信支付公钥必须是 RSA 公钥"), details={"field": "public_key"})
    return pem


def check_wechatpay_config(*, mchid: str, appid: str, cert_serial_no: str, public_key_id: str, public_key: str,
                           private_key: str, apiv3_key: str, has_stored_secrets: bool) -> dict[str, str]:
    """Validate the form; returns the cleaned values. Secrets may be empty when already stored."""
    mchid, appid = (mchid or "").strip(), (appid or "").strip()
    cert_serial_no, public_key_id = (cert_serial_no or "").strip(), (public_key_id or "").strip()
    for name, value in (("mchid", mchid), ("appid", appid), ("cert_serial_no", cert_serial_no),
                        ("public_key_id", public_key_id)):
        check_max_length(WeChatPayConfig, name, value)
    if not _MCHID.match(mchid):
        raise Invalid(_("商户号应为数字"), details={"field": "mchid"})
    if not _APPID.match(appid):
        raise Invalid(_("AppID 应以 wx 开头"), details={"field": "appid"})
    if not _SERIAL.match(cert_serial_no):
        raise Invalid(_("商户 API 证书序列号应为十六进制字符"), details={"field": "cert_serial_no"})
    if not public_key_id:
        raise Invalid(_("请填写微信支付公钥 ID"), details={"field": "public_key_id"})
    clean = {"mchid": mchid, "appid": appid, "cert_serial_no": cert_serial_no.upper(),
             "public_key_id": public_key_id, "public_key": check_public_key(public_key)}
    apiv3_key = (apiv3_key or "").strip()
    if apiv3_key and len(apiv3_key.encode()) != 32:
        raise Invalid(_("APIv3 密钥必须是 32 个字符"), details={"field": "apiv3_key"})
    if (private_key or "").strip():
        clean["private_key"] = check_private_key(private_key)
    elif not has_stored_secrets:
        raise Invalid(_("请填写商户 API 私钥"), details={"field": "private_key"})
    if apiv3_key:
        clean["apiv3_key"] = apiv3_key
    elif not has_stored_secrets:
        raise Invalid(_("请填写 APIv3 密钥"), details={"field": "apiv3_key"})
    return clean


@transaction.atomic
def do_save_wechatpay_config(principal: Principal, *, mchid: str, appid: str, cert_serial_no: str,
                             public_key_id: str, public_key: str, private_key: str = "",
                             apiv3_key: str = "") -> WeChatPayConfig:
    """Create or update the tenant's WeChat Pay merchant configuration (``finance.write``). Empty
    secret fields keep the stored secrets. Audited with the names of the changed fields only."""
    _require(principal, "finance.write")
    config = WeChatPayConfig.objects.select_for_update().filter(tenant_id=principal.tenant_id).first()
    clean = check_wechatpay_config(mchid=mchid, appid=appid, cert_serial_no=cert_serial_no,
                                   public_key_id=public_key_id, public_key=public_key, private_key=private_key,
                                   apiv3_key=apiv3_key, has_stored_secrets=bool(config and config.secrets_encrypted))
    if config is None:
        config = WeChatPayConfig(tenant_id=principal.tenant_id)
    stored = fieldcrypt.decrypt(config.secrets_encrypted)
    secrets: dict[str, str] = {k: clean.pop(k) for k in ("private_key", "apiv3_key") if k in clean}
    changed = sorted([k for k, v in clean.items() if getattr(config, k, None) != v] + list(secrets))
    for k, v in clean.items():
        setattr(config, k, v)
    stored.update(secrets)
    config.secrets_encrypted = fieldcrypt.encrypt(stored)
    config.secret_hints = {k: fieldcrypt.hint(_pem_base64(v)) for k, v in stored.items()}
    config.save()
    do_audit(principal, "referrals.wechatpay.save", "WeChatPayConfig", config.pk, data={"changed": changed})
    return config


def wechatpay_configured(tenant_id: int) -> bool:
    config = WeChatPayConfig.objects.filter(tenant_id=tenant_id).only("secrets_encrypted").first()
    return bool(config and config.secrets_encrypted)


def check_payout_provider(tenant_id: int, provider: str) -> str:
    if provider not in PayoutProviderName.values:
        raise Invalid(_("未知的打款渠道"), details={"field": "payout_provider", "allowed": PayoutProviderName.values})
    if provider == PayoutProviderName.WECHAT and not wechatpay_configured(tenant_id):
        raise Invalid(_("请先填写微信支付商户配置, 再选择微信支付打款"), details={"field": "payout_provider"})
    return provider


@transaction.atomic
def do_set_payout_provider(principal: Principal, provider: str) -> ReferralPolicy:
    """Choose how the tenant's withdrawals are paid (``finance.write``). Withdrawals already requested
    keep the provider they were requested with."""
    _require(principal, "finance.write")
    check_payout_provider(principal.tenant_id, provider)
    policy = get_policy(principal.tenant_id)
    before = policy.payout_provider
    policy.payout_provider = provider
    policy.save(update_fields=["payout_provider"])
    do_audit(principal, "referrals.payout_provider", "ReferralPolicy", policy.pk,
             data={"before": before, "after": provider})
    return policy


def payout_settings(tenant_id: int) -> dict[str, Any]:
    """What the console and API show: the provider and the WeChat Pay configuration without secrets."""
    config = WeChatPayConfig.objects.filter(tenant_id=tenant_id).first()
    return {
        "payout_provider": get_policy(tenant_id).payout_provider,
        "wechatpay": None if config is None else {
            "mchid": config.mchid, "appid": config.appid, "cert_serial_no": config.cert_serial_no,
            "public_key_id": config.public_key_id, "secret_hints": dict(config.secret_hints),
            "updated_at": config.updated_at},
    }
