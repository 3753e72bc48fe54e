"""Member sign-in and sessions for the members' pages, and join requests.

Sign-in binds to the existing member by a *verified* identity — a phone number proved by a one-time
code, a Telegram account proved by the Login Widget's hash, a magic link signed by us for one member
— never by a typed name. Every answer to "send me a code" is the same whether or not the number is
known (an unknown number becomes a new member only when its code is entered).

Rules (field notes): 6-digit codes, stored hashed, ≤ 5 attempts, 10-minute expiry; at most one code
per phone per 60 s and 5 per hour, 20 per IP per hour, 20 wrong codes per IP per 15 minutes. The
counting is core's one throttle (:mod:`shequn.core.throttle`: Redis when configured, the database
otherwise), so the limits hold across server processes."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from wechatpy.exceptions import WeChatClientException, WeChatOAuthException
from wechatpy.oauth import WeChatOAuth

from shequn.communities.models import ChatGroup, Community
from shequn.connectors import secrets as field_secrets
from shequn.connectors.models import ActionKind, Connection
from shequn.connectors.services import connection_secrets, do_request_action, telegram_invite_link
from shequn.core import throttle
from shequn.core.errors import Conflict, Invalid, ShequnError
from shequn.core.masking import mask_phone
from shequn.core.models import Platform, Tenant
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.ledger.models import Account
from shequn.members.models import Member
from shequn.members.selectors import member_by_identity, members
from shequn.members.services import check_phone, do_add_identity, do_create_member
from shequn.referrals.models import InviteLink
from shequn.referrals.selectors import public_base_url

from .models import MemberSession, SignInCode, TelegramInvite, UsedMagicLink, WeChatLogin
from .sms import get_sender

CODE_TTL = dt.timedelta(minutes=10)
CODE_ATTEMPTS = 5
PHONE_GAP = dt.timedelta(seconds=60)
PHONE_PER_HOUR = 5
IP_PER_HOUR = 20
SESSION_TTL = dt.timedelta(days=30)
MAGIC_TTL = dt.timedelta(minutes=15)
MAGIC_SALT = "shequn.portal.magic"
TELEGRAM_MAX_AGE = dt.timedelta(days=1)
WECHAT_PREFIX = "wechat:"


class RateLimited(Invalid):
    status = 429
    code = "rate_limited"


def member_principal(member: Member) -> Principal:
    """The principal a signed-in member acts as: no staff permissions; services act on their own id."""
    return Principal(tenant_id=member.tenant_id, kind="member", actor_id=str(member.pk),
                     label=member.display_name, permissions=frozenset())


def _key(purpose: str) -> bytes:
    return hmac.new(str(settings.SECRET_KEY).encode(), purpose.encode(), hashlib.sha256).digest()


def phone_hash(tenant_id: int, phone: str) -> str:
    """HMAC of the normalised phone, per tenant: codes and limits never store a number in clear."""
    return hmac.new(_key("portal-phone"), f"{tenant_id}:{phone}".encode(), hashlib.sha256).hexdigest()


def _code_hash(code_row_salt: str, code: str) -> str:
    return hmac.new(_key("portal-code"), f"{code_row_salt}:{code}".encode(), hashlib.sha256).hexdigest()


# --- one-time codes --------------------------------------------------------------------------------


def do_send_code(tenant: Tenant, raw_phone: str, *, ip: str | None = None, now: dt.datetime | None = None) -> None:
    """Send a sign-in code. Raises :class:`Invalid` for a malformed number and :class:`RateLimited`
    past the limits; otherwise returns nothing — the same for a known and an unknown number."""
    now = now or timezone.now()
    phone = check_phone(raw_phone)
    if not phone:
        raise Invalid(_("请输入手机号"), details={"field": "phone"})
    ph = phone_hash(tenant.pk, phone)
    if throttle.retry_after(throttle.CODE_PHONE_GAP, ph, now):
        raise RateLimited(_("发送太频繁, 请 60 秒后再试"), details={"field": "phone"})
    if throttle.retry_after(throttle.CODE_PHONE_HOUR, ph, now):
        raise RateLimited(_("该号码发送次数过多, 请一小时后再试"), details={"field": "phone"})
    if ip and throttle.retry_after(throttle.CODE_ADDRESS_HOUR, ip, now):
        raise RateLimited(_("请求过于频繁, 请稍后再试"), details={"field": "phone"})
    system = Principal.system(tenant.pk, label="portal")
    throttle.do_hit(throttle.CODE_PHONE_GAP, ph, now)
    throttle.do_hit_audited(throttle.CODE_PHONE_HOUR, ph, system, label=mask_phone(phone), now=now)
    if ip:
        throttle.do_hit_audited(throttle.CODE_ADDRESS_HOUR, ip, system, now=now)
    code = f"{secrets.randbelow(10**6):06d}"
    with transaction.atomic():
        # an earlier unused code for this phone stops working when a new one is sent
        SignInCode.objects.filter(tenant_id=tenant.pk, phone_hash=ph, used_at__isnull=True).update(used_at=now)
        row = SignInCode.objects.create(tenant_id=tenant.pk, phone_hash=ph, code_hash="", ip=ip or None,
                                        created_at=now, expires_at=now + CODE_TTL)
        row.code_hash = _code_hash(str(row.pk), code)
        row.save(update_fields=["code_hash"])
    text = _("【%(name)s】验证码 %(code)s, 10 分钟内有效。如非本人操作请忽略。") % {"name": tenant.name, "code": code}
    get_sender().send(tenant.pk, phone, text)


def do_verify_code(tenant: Tenant, raw_phone: str, code: str, *, ip: str | None = None,
                   now: dt.datetime | None = None) -> Member:
    """Check a code and return the member this phone belongs to (created on first sign-in).

    Wrong, expired, used-up and unknown all answer the same :class:`Invalid`; each wrong try counts,
    and the fifth ends the code. An address with too many wrong codes (any phone) is refused with
    :class:`RateLimited` for a while. Locking: the code row (``select_for_update``)."""
    now = now or timezone.now()
    if ip:
        wait = throttle.retry_after(throttle.MEMBER_SIGNIN_ADDRESS, ip, now)
        if wait:
            raise RateLimited(throttle.wait_message(wait), details={"field": "code"})
    try:
        return _verify_code(tenant, raw_phone, code, now)
    except Invalid:
        if ip:
            throttle.do_hit_audited(throttle.MEMBER_SIGNIN_ADDRESS, ip, Principal.system(tenant.pk, label="portal"),
                                    now=now)
        raise


def _verify_code(tenant: Tenant, raw_phone: str, code: str, now: dt.datetime) -> Member:
    phone = check_phone(raw_phone)
    wrong = Invalid(_("验证码错误或已过期"), code="bad_code", details={"field": "code"})
    if not phone:
        raise wrong
    ph = phone_hash(tenant.pk, phone)
    code = (code or "").strip()
    with transaction.atomic():
        row = (SignInCode.objects.select_for_update()
               .filter(tenant_id=tenant.pk, phone_hash=ph, used_at__isnull=True).order_by("-pk").first())
        if row is None or row.expires_at <= now or row.attempts >= CODE_ATTEMPTS:
            raise wrong
        if not (len(code) == 6 and code.isdigit()
                and hmac.compare_digest(row.code_hash, _code_hash(str(row.pk), code))):
            row.attempts += 1
            fields = ["attempts"]
            if row.attempts >= CODE_ATTEMPTS:
                row.used_at = now
                fields.append("used_at")
            row.save(update_fields=fields)  # committed when the block ends; the error is raised after
        else:
            row.used_at = now
            row.save(update_fields=["used_at"])
            return _member_for_phone(tenant, phone, ph)
    raise wrong


def _member_for_phone(tenant: Tenant, phone: str, ph: str) -> Member:
    """The member a verified phone belongs to: the portal identity made at an earlier sign-in, else
    the oldest member the operator recorded with this exact number, else a new member."""
    external_id = f"phone:{ph[:40]}"
    found = member_by_identity(tenant.pk, Platform.PORTAL, external_id)
    if found is not None:
        return found
    system = Principal.system(tenant.pk, label="portal")
    member = members(tenant.pk).filter(phone=phone).order_by("pk").first()
    if member is None:
        member = do_create_member(system, display_name=mask_phone(phone), phone=phone, source_channel="portal")
    try:
        do_add_identity(system, member, platform=Platform.PORTAL, external_id=external_id,
                        display_name=mask_phone(phone), verified=True)
    except Conflict:  # raced with a concurrent first sign-in: that one's member wins
        again = member_by_identity(tenant.pk, Platform.PORTAL, external_id)
        if again is not None:
            return again
    return member


# --- magic links -----------------------------------------------------------------------------------


def make_magic_token(member: Member) -> str:
    """A signed, one-time sign-in token for ``member`` (valid :data:`MAGIC_TTL`), for a bot or an
    operator to send in chat. Tampering breaks the signature; reuse is refused."""
    payload = {"t": member.tenant_id, "m": member.pk, "n": secrets.token_hex(8)}
    return signing.TimestampSigner(salt=MAGIC_SALT).sign_object(payload, compress=True)


def magic_link_url(member: Member, tenant: Tenant) -> str:
    return f"{public_base_url()}/portal/{tenant.slug}/magic/{make_magic_token(member)}/"


def demo_member(tenant: Tenant) -> Member | None:
    """The member a demo sign-in link is for: the one with the most available commission (so the
    earnings page has something to withdraw), else the first member."""
    top = (Account.objects.filter(tenant_id=tenant.pk, owner_type="member", kind="available")
           .order_by("-balance_fen", "owner_id").values_list("owner_id", flat=True).first())
    found = members(tenant.pk).filter(pk=top, merged_into__isnull=True).first() if top else None
    return found or members(tenant.pk).filter(merged_into__isnull=True).order_by("pk").first()


def do_use_magic_token(tenant: Tenant, token: str, *, now: dt.datetime | None = None) -> Member:
    """The member a magic token was made for; :class:`Invalid` when tampered with, expired, used, or
    made for another tenant."""
    bad = Invalid(_("登录链接无效或已过期"), code="bad_link", details={"field": "token"})
    try:
        data = signing.TimestampSigner(salt=MAGIC_SALT).unsign_object(token, max_age=MAGIC_TTL)
    except (signing.BadSignature, signing.SignatureExpired) as exc:
        raise bad from exc
    if not isinstance(data, dict) or data.get("t") != tenant.pk or not isinstance(data.get("m"), int):
        raise bad
    member = Member.objects.filter(tenant_id=tenant.pk, pk=int(data["m"])).first()
    if member is None:
        raise bad
    try:
        with transaction.atomic():
            UsedMagicLink.objects.create(nonce=str(data.get("n"))[:32], used_at=now or timezone.now())
    except IntegrityError as exc:
        raise bad from exc
    while member.merged_into_id is not None:
        member = Member.objects.get(pk=member.merged_into_id)
    return member


# --- Telegram Login Widget -----------------------------------------------------------------------------


def telegram_bot_token(tenant: Tenant) -> str:
    """The bot token of the tenant's (first active) Telegram connection, for the Login Widget's hash."""
    conn = (Connection.objects.filter(tenant_id=tenant.pk, platform="telegram", is_active=True)
            .order_by("pk").first())
    return connection_secrets(conn).get("bot_token", "") if conn is not None else ""


def telegram_login_url(tenant: Tenant, return_to: str) -> str:
    """Telegram's own sign-in page for the tenant's bot (the Login Widget's redirect flow: a plain
    navigation to oauth.telegram.org, no script of Telegram's loaded on our pages). Telegram comes
    back to ``return_to`` with ``#tgAuthResult=<base64 JSON of the signed fields>``, which
    ``portal/tglogin.js`` forwards to ``telegram/callback/`` to be verified; ``""`` without a bot."""
    bot_id = telegram_bot_token(tenant).split(":", 1)[0]
    if not bot_id.isdigit():
        return ""
    parts = urlsplit(return_to)
    origin = f"{parts.scheme}://{parts.netloc}"
    return "https://oauth.telegram.org/auth?" + urlencode(
        {"bot_id": bot_id, "origin": origin, "request_access": "write", "return_to": return_to})


def check_telegram_login(data: dict[str, Any], bot_token: str, *, now: dt.datetime | None = None) -> str:
    """Verify Telegram Login Widget data; returns the Telegram user id.

    data-check-string = the received fields except ``hash``, sorted, ``key=value`` joined by ``\\n``;
    secret = SHA-256(bot token); valid when HMAC-SHA-256(secret, string) equals ``hash`` and
    ``auth_date`` is recent."""
    bad = Invalid(_("Telegram 登录校验失败"), code="bad_telegram", details={"field": "hash"})
    received = {str(k): str(v) for k, v in data.items() if v is not None}
    given = received.pop("hash", "")
    if not given or not bot_token:
        raise bad
    check = "\n".join(f"{k}={received[k]}" for k in sorted(received))
    secret = hashlib.sha256(bot_token.encode()).digest()
    expected = hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise bad
    try:
        auth_date = dt.datetime.fromtimestamp(int(received.get("auth_date", "0")), tz=dt.UTC)
    except ValueError as exc:
        raise bad from exc
    if (now or timezone.now()) - auth_date > TELEGRAM_MAX_AGE:
        raise bad
    user_id = received.get("id", "")
    if not user_id.isdigit():
        raise bad
    return user_id


def do_telegram_sign_in(tenant: Tenant, data: dict[str, Any], bot_token: str) -> Member:
    """Verified Telegram user → the member holding that Telegram identity, or a new member."""
    user_id = check_telegram_login(data, bot_token)
    found = member_by_identity(tenant.pk, Platform.TELEGRAM, user_id)
    if found is not None:
        return found
    system = Principal.system(tenant.pk, label="portal")
    name = " ".join(str(data.get(k) or "") for k in ("first_name", "last_name")).strip() or f"tg{user_id}"
    member = do_create_member(system, display_name=name, source_channel="portal",
                              identities=[{"platform": Platform.TELEGRAM, "external_id": user_id,
                                           "display_name": str(data.get("username") or name), "verified": True}])
    return member


# --- WeChat web OAuth (inside WeChat's browser) ---------------------------------------------------------


def do_configure_wechat_login(principal: Principal, *, app_id: str, secret: str = "", scope: str = "snsapi_base",
                              api_base: str = "") -> WeChatLogin:
    """Set the tenant's 公众号 for WeChat sign-in. The secret is encrypted at rest (blank keeps the
    stored one); only its last four characters are kept for the console. Audited without the secret."""
    app_id = str(app_id).strip()
    if not app_id:
        raise Invalid(_("请填写公众号 AppID"), details={"field": "app_id"})
    if len(app_id) > WeChatLogin._meta.get_field("app_id").max_length:  # type: ignore[operator]
        raise Invalid(_("公众号 AppID 过长"), details={"field": "app_id"})
    if scope not in WeChatLogin.Scope.values:
        raise Invalid(_("授权方式无效"), details={"field": "scope"})
    api_base = str(api_base).strip()
    if api_base and not api_base.startswith(("http://", "https://")):
        raise Invalid(_("API 地址须以 http:// 或 https:// 开头"), details={"field": "api_base"})
    with transaction.atomic():
        row = WeChatLogin.objects.select_for_update().filter(tenant_id=principal.tenant_id).first()
        if row is None:
            if not secret:
                raise Invalid(_("请填写 AppSecret"), details={"field": "secret"})
            row = WeChatLogin(tenant_id=principal.tenant_id)
        row.app_id, row.scope, row.api_base = app_id, scope, api_base
        if secret:
            row.secret_encrypted = field_secrets.encrypt({"secret": str(secret).strip()})
            row.secret_hint = field_secrets.hint(str(secret).strip())
        row.save()
        do_audit(principal, "portal.wechat_login", "WeChatLogin", row.pk,
                 data={"app_id": app_id, "scope": scope, "secret_changed": bool(secret)})
    return row


def _wechat_config(tenant: Tenant) -> dict[str, str] | None:
    row = WeChatLogin.objects.filter(tenant_id=tenant.pk).first()
    if row is None or not row.app_id or not row.secret_encrypted:
        return None
    return {"app_id": row.app_id, "secret": field_secrets.decrypt(row.secret_encrypted).get("secret", ""),
            "scope": row.scope, "api_base": row.api_base}


def _wechat_oauth(tenant: Tenant, redirect_uri: str, state: str = "") -> Any:
    """wechatpy's WeChatOAuth for the tenant's 公众号 (:class:`WeChatLogin`: ``app_id``, the
    encrypted secret, ``scope`` — ``snsapi_base`` silent by default — and ``api_base``, which tests
    point at a local server replaying a recorded exchange)."""
    cfg = _wechat_config(tenant)
    if not cfg or not cfg["secret"]:
        raise Invalid(_("未配置微信登录"), code="wechat_not_configured")
    oauth = WeChatOAuth(cfg["app_id"], cfg["secret"], redirect_uri, scope=cfg["scope"] or "snsapi_base", state=state)
    if cfg["api_base"]:
        oauth.API_BASE_URL = cfg["api_base"]
    return oauth


def wechat_configured(tenant: Tenant) -> bool:
    return WeChatLogin.objects.filter(tenant_id=tenant.pk).exclude(secret_encrypted="").exists()


def wechat_authorize_url(tenant: Tenant, redirect_uri: str, state: str) -> str:
    return str(_wechat_oauth(tenant, redirect_uri, state).authorize_url)


def do_wechat_sign_in(tenant: Tenant, code: str, redirect_uri: str, *, current: Member | None = None) -> Member:
    """Exchange the OAuth ``code`` for the openid (verified by WeChat) → the member holding that
    WeChat identity; else, when a member is already signed in (by SMS, say, and now paying inside
    WeChat), that member gains the identity; else a new member. The openid is what WeChat Pay JSAPI
    needs (:func:`wechat_openid`)."""
    oauth = _wechat_oauth(tenant, redirect_uri)
    try:
        data = oauth.fetch_access_token(code)
    except (WeChatOAuthException, WeChatClientException, ValueError) as exc:
        raise Invalid(_("微信登录失败, 请重试"), code="bad_wechat") from exc
    openid = str((data or {}).get("openid") or "")
    if not openid:
        raise Invalid(_("微信登录失败, 请重试"), code="bad_wechat")
    external_id = f"{WECHAT_PREFIX}{openid}"[:191]
    found = member_by_identity(tenant.pk, Platform.PORTAL, external_id)
    if found is not None:
        return found
    system = Principal.system(tenant.pk, label="portal")
    if current is not None and current.tenant_id == tenant.pk:
        do_add_identity(system, current, platform=Platform.PORTAL, external_id=external_id, display_name="wechat",
                        verified=True)
        return current
    return do_create_member(system, display_name=_("微信用户"), source_channel="portal",
                            identities=[{"platform": Platform.PORTAL, "external_id": external_id,
                                         "display_name": "wechat", "verified": True}])


def wechat_openid(member: Member) -> str:
    """The member's WeChat openid (for the tenant's 公众号) from a WeChat sign-in, or ``""``."""
    ext = (member.identities.filter(platform=Platform.PORTAL, external_id__startswith=WECHAT_PREFIX, verified=True)
           .order_by("pk").values_list("external_id", flat=True).first())
    return ext[len(WECHAT_PREFIX):] if ext else ""


# --- Telegram invite links per invite code ------------------------------------------------------------


def do_get_telegram_invite(link: InviteLink, group: ChatGroup) -> str:
    """The Telegram invite link for this invite code in this group: made once through the bot
    (createChatInviteLink, name = the code) and kept; ``""`` when no bot can make one (the page then
    shows the operator's join way, if any). Two first visits at once may both ask Telegram; one row
    is kept (the other link simply goes unused). In an approval or paid community the link creates
    join requests: whoever uses it is let in only after the entry threshold (communities) says yes."""
    asks = group.community.entry_threshold != Community.EntryThreshold.FREE
    known = TelegramInvite.objects.filter(link=link, group=group).values_list("url", "asks_to_join").first()
    if known and (known[1] or not asks):
        return str(known[0])
    try:
        url = telegram_invite_link(group.tenant_id, group.external_id, link.code, join_request=asks)
    except ShequnError:
        return ""
    if known:  # a direct link in a community gated since: it is revoked, this asking link replaces it
        with transaction.atomic():
            old = TelegramInvite.objects.select_for_update().filter(link=link, group=group).first()
            if old is not None and not old.asks_to_join:
                _revoke_telegram_invite(old)
                old.url, old.asks_to_join = url[:200], True
                old.save(update_fields=["url", "asks_to_join"])
                return url
            return str(old.url) if old is not None else url
    try:
        with transaction.atomic():
            TelegramInvite.objects.create(tenant_id=group.tenant_id, link=link, group=group, url=url[:200],
                                          asks_to_join=asks)
    except IntegrityError:
        return str(TelegramInvite.objects.filter(link=link, group=group).values_list("url", flat=True).first() or url)
    return url


def _revoke_telegram_invite(row: TelegramInvite) -> None:
    do_request_action(row.tenant_id, kind=ActionKind.REVOKE_INVITE, group_id=row.group_id,
                      idempotency_key=f"revoke-invite:{row.pk}:{hashlib.sha256(row.url.encode()).hexdigest()[:16]}",
                      payload={"invite_link": row.url}, source="communities.gate",
                      reason=_("社群改为需申请入群"))


def on_community_gated(community: Community, groups: Sequence[ChatGroup]) -> None:
    """Communities' gate listener (declared in the wiring): the community now asks before letting
    anyone in, so each Telegram link the portal made that lets people straight in is revoked through
    the outbox (revokeChatInviteLink) and forgotten; the next visit to that invite code makes an
    asking link (``creates_join_request``). Links an operator made by hand in Telegram are not ours
    to see: the console's threshold help says to revoke them there."""
    rows = TelegramInvite.objects.select_for_update().filter(
        tenant_id=community.tenant_id, group__in=[g for g in groups if g.platform == Platform.TELEGRAM],
        asks_to_join=False)
    for row in rows:
        _revoke_telegram_invite(row)
        row.delete()


# --- sessions --------------------------------------------------------------------------------------


def _session_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def do_start_session(member: Member, method: str, *, now: dt.datetime | None = None) -> str:
    """Open a member session; returns the raw key for the (signed) cookie."""
    now = now or timezone.now()
    key = secrets.token_urlsafe(32)
    MemberSession.objects.create(tenant_id=member.tenant_id, member=member, key_hash=_session_hash(key),
                                 method=method, created_at=now, expires_at=now + SESSION_TTL)
    do_audit(member_principal(member), "portal.sign_in", "Member", member.pk, data={"method": method})
    return key


@dataclass(frozen=True)
class SessionInfo:
    tenant_id: int
    member: Member


def session_member(key: str, *, now: dt.datetime | None = None) -> SessionInfo | None:
    """The member of a live session key, or None (unknown, expired, revoked, merged away)."""
    if not key:
        return None
    now = now or timezone.now()
    row = (MemberSession.objects.filter(key_hash=_session_hash(key), revoked_at__isnull=True, expires_at__gt=now)
           .select_related("member").first())
    if row is None:
        return None
    member = row.member
    while member.merged_into_id is not None:
        member = Member.objects.get(pk=member.merged_into_id)
    return SessionInfo(row.tenant_id, member)


def do_end_session(key: str) -> None:
    MemberSession.objects.filter(key_hash=_session_hash(key), revoked_at__isnull=True).update(
        revoked_at=timezone.now())


def do_end_member_sessions(principal: Principal, member_id: int) -> int:
    """Sign a member out of the members' pages everywhere (their data was erased: no device stays
    signed in as them). Returns the number of sessions ended."""
    return int(MemberSession.objects.filter(tenant_id=principal.tenant_id, member_id=member_id).delete()[0])
