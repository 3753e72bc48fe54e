"""One env-driven settings module for every deployment of shequn.

Environment variables (all optional):

* ``SHEQUN_DATABASE_URL`` — e.g. ``postgres://user@127.0.0.1:5432/shequn``. Default: an SQLite file
  in ``$SHEQUN_HOME/shequn.sqlite3`` with WAL, IMMEDIATE transactions and a busy timeout.
* ``SHEQUN_DATABASE_POOLER`` — ``transaction`` when the URL points at PgBouncer in transaction mode
  (no server-side cursors, no prepared statements).
* ``SHEQUN_DATABASE_REPLICA_URL`` — a streaming replica of the primary: analytics and console list
  reads go there (``shequn.core.dbrouting``) unless it lags more than ``SHEQUN_DATABASE_REPLICA_MAX_LAG``
  seconds (default 5) or the caller wrote within ``SHEQUN_DATABASE_REPLICA_STICKY`` seconds (default 5).
* ``SHEQUN_TASK_LEASE`` — seconds after which a task still RUNNING is taken for abandoned and run
  again (default 600; ``shequn.core.taskqueue``).
* ``SHEQUN_REDIS_URL`` — e.g. ``redis://127.0.0.1:6379/0``; enables the Redis hot paths.
* ``SHEQUN_SECRET_KEY`` — default: generated once and stored in ``$SHEQUN_HOME/secret_key``.
* ``SHEQUN_ALLOWED_HOSTS`` — comma separated; default ``127.0.0.1,localhost``.
* ``SHEQUN_LANGUAGE`` (default ``zh-hans``), ``SHEQUN_TIME_ZONE`` (default ``Asia/Shanghai``).
* ``SHEQUN_DEBUG`` — ``1`` for development.
* ``SHEQUN_HOME`` — where the embedded default keeps its files; default ``./var``.
* ``SHEQUN_PUBLIC_BASE_URL`` — the address members reach (invite links, QR codes, posters, payment
  notify URLs, magic sign-in links); default ``http://127.0.0.1:8000``.
* ``SHEQUN_HTTPS`` — ``1`` in production: secure cookies, HSTS, redirect http → https.
* ``SHEQUN_TRUSTED_PROXY`` — ``1`` when a reverse proxy that terminates TLS stands in front and
  *overwrites* ``X-Forwarded-Proto`` and ``X-Forwarded-For`` (never passes a client's copy on). Implies
  ``SHEQUN_HTTPS``; only then does shequn believe those headers (scheme, client address for throttling).
* ``SHEQUN_HSTS_SECONDS`` (default one year), ``SHEQUN_HSTS_PRELOAD`` (default ``1``; ``0`` to opt out,
  which also silences the deploy check's preload warning, the choice being explicit).
* ``SHEQUN_WEBHOOK_ALLOW_PRIVATE`` — ``1`` lets outgoing webhooks reach private, loopback and
  link-local addresses (a receiver on the same host or network); default off (SSRF guard).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any

import dj_database_url
from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent
HOME = Path(os.environ.get("SHEQUN_HOME", Path.cwd() / "var")).resolve()


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _secret_key() -> str:
    key = os.environ.get("SHEQUN_SECRET_KEY")
    if key:
        return key
    path = HOME / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        HOME.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key


DEBUG = _env_bool("SHEQUN_DEBUG")
SECRET_KEY = _secret_key()
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("SHEQUN_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("SHEQUN_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "unfold",
    "unfold.contrib.filters",
    "unfold.contrib.forms",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "ninja",  # the API docs page then serves django-ninja's vendored Swagger UI, not a CDN copy
    "django_tasks_db",
    "crontask",
    "shequn.core",
    "shequn.members",
    "shequn.communities",
    "shequn.activity",
    "shequn.connectors",
    "shequn.moderation",
    "shequn.engagement",
    "shequn.commerce",
    "shequn.ledger",
    "shequn.referrals",
    "shequn.analytics",
    "shequn.console",
    "shequn.portal",
    "shequn.api",
    "shequn.apps.WiringConfig",  # last: declares the cross-app subscriptions (shequn/wiring.py)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "shequn.core.middleware_security.ConsoleCspMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "shequn.console.middleware.ConsoleLocaleMiddleware",
    "shequn.core.middleware_api.ApiGuardMiddleware",
    "shequn.core.middleware_nul.RejectNulMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "shequn.core.middleware_security.StaffSessionMiddleware",
    "shequn.core.middleware.TenantMiddleware",
    "shequn.core.dbrouting.ReplicaPinMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "shequn.urls"
WSGI_APPLICATION = "shequn.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
DATABASE_URL = os.environ.get("SHEQUN_DATABASE_URL", "").strip()
SHEQUN_REPLICA_ROUTING = False
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # the same backend with a health check at most once a second per connection (its docstring)
        DATABASES["default"]["ENGINE"] = "shequn.core.backends.postgresql"
    if os.environ.get("SHEQUN_DATABASE_POOLER", "").strip().lower() == "transaction":
        # behind PgBouncer in transaction mode a session may land on another server connection at
        # every transaction: no named server-side cursors, no prepared statements
        DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None
    REPLICA_URL = os.environ.get("SHEQUN_DATABASE_REPLICA_URL", "").strip()
    if REPLICA_URL:
        # analytics and console list reads, with bounded staleness (shequn.core.dbrouting)
        DATABASES["replica"] = dj_database_url.parse(REPLICA_URL, conn_max_age=60, conn_health_checks=True)
        DATABASES["replica"]["ENGINE"] = DATABASES["default"]["ENGINE"]
        for _opt in ("DISABLE_SERVER_SIDE_CURSORS", "OPTIONS"):
            if _opt in DATABASES["default"]:
                DATABASES["replica"][_opt] = DATABASES["default"][_opt]  # the same pooler rules
        DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
        SHEQUN_REPLICA_ROUTING = True
else:
    HOME.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(HOME / "shequn.sqlite3"),
            "OPTIONS": {
                # IMMEDIATE: a writer takes the write lock at BEGIN, so two writers never deadlock
                # on lock upgrade; busy timeout makes the second one wait instead of failing.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": (
                    "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;"
                    "PRAGMA foreign_keys=ON;PRAGMA cache_size=-65536;PRAGMA temp_store=MEMORY;"
                ),
            },
            "TEST": {"NAME": str(HOME / "test_shequn.sqlite3")} if _env_bool("SHEQUN_TEST_FILE_DB") else {},
        }
    }
IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")
DATABASE_ROUTERS = ["shequn.core.dbrouting.ReplicaRouter"]
#: the replica's bound: reads go to the primary while it lags more (seconds), and a caller's reads stay
#: on the primary this long after it wrote (seconds)
SHEQUN_REPLICA_MAX_LAG = float(os.environ.get("SHEQUN_DATABASE_REPLICA_MAX_LAG", "5"))
SHEQUN_REPLICA_STICKY = int(os.environ.get("SHEQUN_DATABASE_REPLICA_STICKY", "5"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis (optional hot paths) -----------------------------------------------------------------
REDIS_URL = os.environ.get("SHEQUN_REDIS_URL", "").strip() or None
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- background tasks ---------------------------------------------------------------------------
TASKS = {
    "default": {
        "BACKEND": os.environ.get("SHEQUN_TASK_BACKEND", "django_tasks_db.DatabaseBackend"),
        "QUEUES": ["default", "connectors", "engines"],
    }
}
CRONTASK = {"REDIS_URL": REDIS_URL} if REDIS_URL else {}

# --- auth ---------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]
LOGIN_URL = "admin:login"
#: a console login without `next` lands on the console (Django's default /accounts/profile/ is a 404)
LOGIN_REDIRECT_URL = "/console/"

# --- i18n ---------------------------------------------------------------------------------------
LANGUAGE_CODE = os.environ.get("SHEQUN_LANGUAGE", "zh-hans")
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = os.environ.get("SHEQUN_TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

# --- static -------------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = HOME / "static"
# whitenoise warns on every start when it is missing (files come from the apps until collectstatic)
with contextlib.suppress(OSError):
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = HOME / "media"
MEDIA_URL = "media/"
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024
#: the REST API's default request body limit in bytes (bulk endpoints allow more; 413 above it)
SHEQUN_API_MAX_BODY = int(os.environ.get("SHEQUN_API_MAX_BODY", str(1024 * 1024)))
#: outgoing webhooks may reach private, loopback and link-local addresses (default no: SSRF guard,
#: ``core/netguard.py``); for a receiver on the same host or network
SHEQUN_WEBHOOK_ALLOW_PRIVATE = _env_bool("SHEQUN_WEBHOOK_ALLOW_PRIVATE")
# failed API-key attempts per address and per key prefix in 10 minutes before 429 (core.throttle);
# raised only for a fuzzing run (bench/api_fuzz_live.sh), whose negative cases send garbage keys
SHEQUN_API_KEY_FAILURES = int(os.environ.get("SHEQUN_API_KEY_FAILURES", "30"))

# --- security -----------------------------------------------------------------------------------
# docs/security.md explains each line. Development (the default) works over plain http; production
# sets SHEQUN_HTTPS=1 (or SHEQUN_TRUSTED_PROXY=1 behind a TLS-terminating proxy).
TRUSTED_PROXY = _env_bool("SHEQUN_TRUSTED_PROXY")
HTTPS = _env_bool("SHEQUN_HTTPS") or TRUSTED_PROXY
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if HTTPS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SHEQUN_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = _env_bool("SHEQUN_HSTS_PRELOAD", True)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
if TRUSTED_PROXY:
    # only a proxy that overwrites the header may be believed: a client could send its own
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Content-Security-Policy: every script, style, font and image is served by shequn itself (vendored
# under static/); inline <script> blocks carry the per-request nonce. Inline style attributes are
# allowed (they cannot run code). The console (django-unfold) runs Alpine.js, whose standard build
# evaluates its x-* expressions with Function(): /console/ alone gets 'unsafe-eval', plus the hashes of
# the two inline handlers the console uses (unfold's horizontal filter oninput="this.submit()", the
# reply queue's and referral report's onchange="this.form.submit()").
_CSP_BASE: dict[str, list[str] | bool] = {
    "default-src": ["'self'"],
    "script-src": ["'self'", "<CSP_NONCE_SENTINEL>"],
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:", "blob:"],
    "font-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
SECURE_CSP = dict(_CSP_BASE)
SHEQUN_CONSOLE_CSP = {
    **_CSP_BASE,
    "script-src": ["'self'", "<CSP_NONCE_SENTINEL>", "'unsafe-eval'", "'unsafe-hashes'",
                   "'sha256-ef14l//dtiQD0cXeBAxNzbiuyrvqLIKWTYpqIl2LdMY='",
                   "'sha256-osjxnKEPL/pQJbFk1dKsF7PYFmTyMWGmVSiL9inhxJY='"],
}
if HTTPS:
    SECURE_CSP["upgrade-insecure-requests"] = True
    SHEQUN_CONSOLE_CSP["upgrade-insecure-requests"] = True

# staff console sessions: signed out after SHEQUN_STAFF_IDLE_MINUTES without a request (default 30)
# and SHEQUN_STAFF_MAX_HOURS after signing in (default 12), whatever the activity
SHEQUN_STAFF_IDLE_SECONDS = int(os.environ.get("SHEQUN_STAFF_IDLE_MINUTES", "30")) * 60
SHEQUN_STAFF_MAX_SECONDS = int(os.environ.get("SHEQUN_STAFF_MAX_HOURS", "12")) * 3600
OTP_TOTP_ISSUER = "shequn"

# --- logging: never log secrets or PII ------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "shequn.core.logging.RedactFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("SHEQUN_LOG_LEVEL", "INFO")},
    # apscheduler (the crontask scheduler) logs every 5-second lock refresh at INFO
    # django.request logs every 4xx as a WARNING: a flash sale's sold-out 409s or a busy integration's
    # 404s are answers, not incidents (the access log has every status); 5xx stay ERROR
    "loggers": {"django.db.backends": {"level": "WARNING"}, "apscheduler": {"level": "WARNING"},
                "django.request": {"level": "ERROR"}},
}

# --- console (Unfold) ---------------------------------------------------------------------------


def _nav(title: Any, icon: str, url_name: str, permission: str = "") -> dict[str, Any]:
    """One sidebar link: a Material icon, a URL name, and the staff permission (``"members.read"``)
    that shows it — checked by the callback ``console.navigation.can_<area>_<action>``."""
    item: dict[str, Any] = {"title": title, "icon": icon, "link": reverse_lazy(url_name)}
    if permission:
        item["permission"] = "shequn.console.navigation.can_" + permission.replace(".", "_")
    return item


def _section(title: Any, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"title": title, "items": items}


UNFOLD = {
    "SITE_TITLE": _("社群运营台"),
    "SITE_HEADER": "shequn 社群",
    "SITE_SUBHEADER": _("私域社群运营"),
    "SITE_SYMBOL": "groups",
    "SITE_URL": "/console/",
    "SHOW_LANGUAGES": True,
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": False,
    "DASHBOARD_CALLBACK": "shequn.console.dashboard.dashboard_callback",
    "ACCOUNT": {
        "navigation": [{"title": _("切换组织"), "link": reverse_lazy("console:tenant_switch")},
                       {"title": _("账号安全"), "link": reverse_lazy("console:security")}],
    },
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": True,
        "navigation": [
            _section(_("运营"), [
                _nav(_("概览"), "dashboard", "admin:index"),
                {**_nav(_("健康提醒"), "health_and_safety", "console:health", "analytics.read"),
                 "badge": "shequn.console.dashboard.health_badge"},
                _nav(_("会员"), "person", "admin:members_member_changelist", "members.read"),
                _nav(_("标签"), "sell", "admin:members_tag_changelist", "members.read"),
                _nav(_("导入会员"), "upload", "console:member_import", "members.write"),
                _nav(_("合并建议"), "merge", "console:member_merge_suggestions", "members.write"),
            ]),
            _section(_("社群"), [
                _nav(_("社群"), "diversity_3", "admin:communities_community_changelist", "communities.read"),
                _nav(_("群"), "forum", "admin:communities_chatgroup_changelist", "communities.read"),
                _nav(_("入群申请"), "how_to_reg", "admin:communities_joinrequest_changelist", "communities.read"),
                _nav(_("成员关系"), "history", "admin:communities_membership_changelist", "communities.read"),
                _nav(_("角色"), "badge", "admin:communities_roleassignment_changelist", "communities.read"),
                _nav(_("活动事件"), "timeline", "admin:activity_activityevent_changelist", "activity.read"),
            ]),
            _section(_("数据分析"), [
                _nav(_("转化漏斗"), "filter_alt", "console:analytics_funnel", "analytics.read"),
                _nav(_("同期群留存"), "grid_on", "console:analytics_cohorts", "analytics.read"),
                _nav(_("人群"), "group_work", "console:segments", "analytics.read"),
            ]),
            _section(_("促活与裂变"), [
                _nav(_("待回复队列"), "mark_chat_unread", "admin:engagement_reply_queue", "engagement.read"),
                _nav(_("内容日历"), "calendar_month", "admin:engagement_calendar", "engagement.read"),
                _nav(_("裂变报表"), "share", "console:referral_report", "referrals.read"),
                _nav(_("裂变传播"), "account_tree", "console:reach", "analytics.read"),
                _nav(_("商家联盟"), "handshake", "console:alliances", "referrals.read"),
            ]),
            _section(_("活动"), [
                _nav(_("抽奖"), "redeem", "admin:engagement_lottery_changelist", "engagement.read"),
                _nav(_("红包"), "payments", "admin:engagement_redpacket_changelist", "engagement.read"),
                _nav(_("SOP 内容"), "article", "admin:engagement_contentitem_changelist", "engagement.read"),
                _nav(_("SOP 排期"), "schedule_send", "admin:engagement_contentschedule_changelist", "engagement.read"),
                _nav(_("徽章"), "military_tech", "admin:engagement_badge_changelist", "engagement.read"),
                _nav(_("裂变任务"), "group_add", "admin:referrals_fissiontask_changelist", "referrals.read"),
            ]),
            _section(_("商城"), [
                _nav(_("商品与付费等级"), "storefront", "admin:commerce_product_changelist", "commerce.read"),
                _nav(_("订单"), "receipt_long", "admin:commerce_order_changelist", "commerce.read"),
                _nav(_("秒杀"), "bolt", "admin:commerce_flashsale_changelist", "commerce.read"),
                _nav(_("拼团"), "groups", "admin:commerce_groupbuy_changelist", "commerce.read"),
                _nav(_("优惠券"), "confirmation_number", "admin:commerce_coupontemplate_changelist", "commerce.read"),
                _nav(_("直播"), "live_tv", "admin:commerce_livesession_changelist", "commerce.read"),
            ]),
            _section(_("审核"), [
                _nav(_("违规审核"), "gavel", "admin:moderation_violation_changelist", "moderation.read"),
                _nav(_("审核策略"), "rule", "admin:moderation_moderationpolicy_changelist", "moderation.read"),
            ]),
            _section(_("资金"), [
                _nav(_("佣金方案"), "percent", "admin:referrals_commissionplan_changelist", "referrals.read"),
                _nav(_("佣金"), "savings", "admin:referrals_commission_changelist", "referrals.read"),
                _nav(_("提现"), "account_balance_wallet", "admin:referrals_withdrawal_changelist", "finance.read"),
                _nav(_("记账凭证"), "menu_book", "admin:ledger_transaction_changelist", "finance.read"),
                _nav(_("账户"), "account_balance", "admin:ledger_account_changelist", "finance.read"),
            ]),
            _section(_("连接"), [
                _nav(_("平台连接"), "hub", "admin:connectors_connection_changelist", "connectors.read"),
            ]),
            _section(_("设置"), [
                _nav(_("组织"), "domain", "admin:core_tenant_changelist", "settings.read"),
                _nav(_("员工"), "badge", "admin:core_staffmembership_changelist", "staff.write"),
                _nav(_("API 密钥"), "key", "admin:core_apikey_changelist", "settings.read"),
                _nav(_("微信支付商户"), "payments", "admin:referrals_wechatpayconfig_changelist", "settings.read"),
                _nav(_("Webhook 端点"), "webhook", "admin:core_webhookendpoint_changelist", "settings.read"),
                _nav(_("Webhook 投递记录"), "outbox", "admin:core_webhookdelivery_changelist", "settings.read"),
                _nav(_("审计日志"), "policy", "admin:core_auditlog_changelist", "audit.read"),
            ]),
        ],
    },
}

SHEQUN = {
    # how long an idempotency record is kept (seconds)
    "IDEMPOTENCY_TTL": 24 * 3600,
    # the encryption key for connector secrets; derived from SECRET_KEY unless set
    "FIELD_KEY": os.environ.get("SHEQUN_FIELD_KEY", ""),
    # the address members reach: invite links, QR codes, posters, notify URLs, magic sign-in links
    "PUBLIC_BASE_URL": os.environ.get("SHEQUN_PUBLIC_BASE_URL", "").strip(),
}
if os.environ.get("SHEQUN_WECHATPAY_GATEWAY", "").strip():
    # another address for the WeChat Pay API (https://api.mch.weixin.qq.com): an egress proxy, or
    # the fault suite's local WeChat Pay server that the worker it starts must pay through
    SHEQUN["WECHATPAY_GATEWAY"] = os.environ["SHEQUN_WECHATPAY_GATEWAY"].strip()
