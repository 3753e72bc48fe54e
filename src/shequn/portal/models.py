"""Members' own pages: sign-in codes, member sessions (separate from staff sessions), the sandbox
SMS log, join ways per group (join requests live in ``communities.JoinRequest``).

Phone numbers never appear here in clear: codes and rate limits key on ``phone_hash`` (an HMAC of the
normalised number); the sandbox SMS log keeps the masked number and the message, because showing the
code to the operator is its whole point."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from shequn.core.models import TenantOwned


class SignInCode(TenantOwned):
    """A one-time 6-digit code sent to a phone: hashed, ≤ 5 attempts, expires after 10 minutes."""

    phone_hash = models.CharField(max_length=64, db_index=True)
    code_hash = models.CharField(max_length=64)
    ip = models.GenericIPAddressField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(db_index=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("登录验证码")
        verbose_name_plural = _("登录验证码")
        indexes = [models.Index(fields=["ip", "created_at"], name="signin_code_ip_idx")]


class MemberSession(TenantOwned):
    """A signed-in member on one browser. The cookie carries a signed random key; only its SHA-256
    is stored, so a database leak does not leak sessions. Independent of the staff (Django auth)
    session: signing out of one never touches the other."""

    class Method(models.TextChoices):
        SMS = "sms", _("短信验证码")
        MAGIC = "magic", _("登录链接")
        TELEGRAM = "telegram", "Telegram"
        WECHAT = "wechat", _("微信")

    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+",
                               verbose_name=_("会员"))
    key_hash = models.CharField(max_length=64, unique=True)
    method = models.CharField(_("登录方式"), max_length=16, choices=Method.choices)
    created_at = models.DateTimeField(_("登录时间"))
    expires_at = models.DateTimeField(_("过期时间"))
    revoked_at = models.DateTimeField(_("退出时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("会员登录")
        verbose_name_plural = _("会员登录")


class UsedMagicLink(models.Model):
    """A magic sign-in link works once: its nonce is recorded on first use."""

    nonce = models.CharField(max_length=32, unique=True)
    used_at = models.DateTimeField()


class SandboxSms(TenantOwned):
    """What the sandbox SMS sender "sent": the operator reads the code here (console) or in the dev
    server's output. Real senders do not write here."""

    to_masked = models.CharField(_("手机号"), max_length=20)
    body = models.CharField(_("内容"), max_length=300)
    created_at = models.DateTimeField(_("时间"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("短信(沙箱)")
        verbose_name_plural = _("短信(沙箱)")

    def __str__(self) -> str:
        return f"{self.to_masked}: {self.body}"


class JoinWay(TenantOwned):
    """How a member enters one group, when the platform cannot derive it: a Telegram invite link, a
    WeCom group QR image URL, a Matrix alias. Matrix rooms and WeCom join-way QR configs are derived
    without one."""

    group = models.ForeignKey("communities.ChatGroup", on_delete=models.CASCADE, related_name="+",
                              verbose_name=_("群"))
    url = models.URLField(_("加入链接"), max_length=500, blank=True)
    qr_image_url = models.URLField(_("二维码图片"), max_length=500, blank=True)
    note = models.CharField(_("说明"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("入群方式")
        verbose_name_plural = _("入群方式")

    def __str__(self) -> str:
        return self.url or self.qr_image_url


class WeChatLogin(TenantOwned):
    """The tenant's WeChat official account (公众号) for members' sign-in inside WeChat (web OAuth)
    and the openid WeChat Pay JSAPI needs. The app secret is stored Fernet-encrypted like connector
    secrets (:mod:`shequn.connectors.secrets`) and never shown again in full (``secret_hint``)."""

    class Scope(models.TextChoices):
        BASE = "snsapi_base", _("静默授权 (只取 openid)")
        USERINFO = "snsapi_userinfo", _("授权昵称头像")

    app_id = models.CharField(_("公众号 AppID"), max_length=64)
    secret_encrypted = models.TextField(blank=True, editable=False)
    secret_hint = models.CharField(_("AppSecret (仅显示末四位)"), max_length=16, blank=True, editable=False)
    scope = models.CharField(_("授权方式"), max_length=20, choices=Scope.choices, default=Scope.BASE)
    api_base = models.CharField(_("API 地址 (可选)"), max_length=200, blank=True,
                                help_text=_("留空即微信官方地址; 测试时指向本地服务"))
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    class Meta:
        verbose_name = _("微信登录 (公众号)")
        verbose_name_plural = _("微信登录 (公众号)")
        constraints = [models.UniqueConstraint(fields=["tenant"], name="wechatlogin_one_per_tenant")]

    def __str__(self) -> str:
        return self.app_id


class TelegramInvite(TenantOwned):
    """A Telegram invite link the bot created for one invite code in one group (createChatInviteLink,
    named after the code): whoever joins through it arrives in a ``chat_member`` update carrying the
    name, so the join is attributed to the code's link (and binds its referrer)."""

    link = models.ForeignKey("referrals.InviteLink", on_delete=models.CASCADE, related_name="+",
                             verbose_name=_("邀请链接"))
    group = models.ForeignKey("communities.ChatGroup", on_delete=models.CASCADE, related_name="+",
                              verbose_name=_("群"))
    url = models.URLField(_("Telegram 邀请链接"), max_length=200)
    #: made with ``creates_join_request``: whoever uses it asks, and the entry threshold answers.
    #: False for a link that lets people straight in (made while the community was free, or before
    #: this was recorded): such a link is revoked when the community becomes gated
    asks_to_join = models.BooleanField(_("需申请入群"), default=False)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("Telegram 邀请链接")
        verbose_name_plural = _("Telegram 邀请链接")
        constraints = [models.UniqueConstraint(fields=["link", "group"], name="telegraminvite_one_per_link_group")]

    def __str__(self) -> str:
        return self.url
