"""One throttle for every guessable door: console sign-in, the portal's code requests and sign-in,
API keys. A :class:`Rule` counts attempts of one kind per key (an account or an address); at ``limit``
attempts within ``window`` seconds the door stays shut until the oldest of them is that old.

Windows slide: an attempt counts for ``window`` seconds after it was made. Attempts live in Redis
(a sorted set per key, on the client behind Django's cache, which is Redis when ``SHEQUN_REDIS_URL``
is set) and otherwise in the database (:class:`ThrottleHit` rows), so
the limits hold across server processes either way. Keys are HMACs of the account or address: no
phone number, login name or IP address is stored in clear.

Writers are ``do_*``; ``retry_after`` reads."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from .localcache import TTLCache
from .models import ThrottleHit
from .permissions import Principal
from .services import do_audit

KEEP_ROWS = dt.timedelta(days=1)


@dataclass(frozen=True)
class Rule:
    scope: str
    limit: int
    window: int  # seconds

    def minutes(self) -> int:
        return max(1, math.ceil(self.window / 60))


# --- the rules (docs/security.md lists them) ------------------------------------------------------
#: console password or second-factor failures for one login name / from one address
STAFF_ACCOUNT = Rule("staff.account", 5, 15 * 60)
STAFF_ADDRESS = Rule("staff.address", 20, 15 * 60)
#: API requests with an unknown, revoked, expired or wrong key from one address; per key prefix
#: (``SHEQUN_API_KEY_FAILURES``, default 30)
API_KEY_ADDRESS = Rule("apikey.address", getattr(settings, "SHEQUN_API_KEY_FAILURES", 30), 10 * 60)
API_KEY_PREFIX = Rule("apikey.prefix", getattr(settings, "SHEQUN_API_KEY_FAILURES", 30), 10 * 60)
#: portal sign-in codes: one per phone per minute, five per phone per hour, twenty per address per hour
CODE_PHONE_GAP = Rule("code.phone.gap", 1, 60)
CODE_PHONE_HOUR = Rule("code.phone", 5, 3600)
CODE_ADDRESS_HOUR = Rule("code.address", 20, 3600)
#: wrong portal codes from one address (each code also dies after five wrong tries)
MEMBER_SIGNIN_ADDRESS = Rule("member.address", 20, 15 * 60)


def key_for(value: str) -> str:
    """The stored form of an account or address."""
    secret = hmac.new(str(settings.SECRET_KEY).encode(), b"shequn.throttle", hashlib.sha256).digest()
    return hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()[:40]


def _redis() -> Any | None:
    """The Redis client behind Django's cache when ``SHEQUN_REDIS_URL`` is set, else None."""
    if not getattr(settings, "REDIS_URL", None):
        return None
    backend = caches["default"]
    client = getattr(backend, "_cache", None)
    return client.get_client(write=True) if client is not None else None


def _rkey(rule: Rule, key: str) -> str:
    return f"sq:thr:{rule.scope}:{key}"


def _in_window(rule: Rule, value: str, now: dt.datetime) -> list[float]:
    """The times (epoch seconds, oldest first) of the attempts in ``(now - window, now]``."""
    key = key_for(value)
    ts = now.timestamp()
    r = _redis()
    if r is not None:
        raw = r.zrangebyscore(_rkey(rule, key), f"({ts - rule.window}", ts, withscores=True)
        return [float(score) for _member, score in raw]
    rows = ThrottleHit.objects.filter(scope=rule.scope, key=key, at__gt=now - dt.timedelta(seconds=rule.window),
                                      at__lte=now).order_by("at").values_list("at", flat=True)
    return [at.timestamp() for at in rows]


def count(rule: Rule, value: str, now: dt.datetime | None = None) -> int:
    return len(_in_window(rule, value, now or timezone.now()))


def retry_after(rule: Rule, value: str, now: dt.datetime | None = None) -> int:
    """Seconds until ``value`` may try again under ``rule`` (a sliding window); 0 when it may now."""
    now = now or timezone.now()
    times = _in_window(rule, value, now)
    if len(times) < rule.limit:
        return 0
    # the attempt whose leaving the window brings the count below the limit
    frees_at = times[len(times) - rule.limit] + rule.window
    return max(1, math.ceil(frees_at - now.timestamp()))


#: "the door is open" verdicts of :func:`retry_after_cached`, per (rule, value): a door shut by
#: failures counted in another process shuts here at most this long after (this process's own
#: failures drop the verdict at once, :func:`do_hit`)
OPEN: TTLCache[bool] = TTLCache("throttle-open", 1.0)


def retry_after_cached(rule: Rule, value: str) -> int:
    """:func:`retry_after` for a hot path (every API request checks its address and key prefix): an
    open door is remembered for one second, so a busy integration does not read the window on every
    request. A shut door is never cached (its wait is computed each time)."""
    if OPEN.get((rule.scope, value)):
        return 0
    wait = retry_after(rule, value)
    if not wait:
        OPEN.put((rule.scope, value), True)
    return wait


def do_hit(rule: Rule, value: str, now: dt.datetime | None = None) -> int:
    """Count one attempt; returns the count in the window including it (== ``limit``: this one
    locked the door)."""
    OPEN.drop((rule.scope, value))
    now = now or timezone.now()
    key = key_for(value)
    ts = now.timestamp()
    r = _redis()
    if r is not None:
        rk = _rkey(rule, key)
        pipe = r.pipeline()
        pipe.zremrangebyscore(rk, "-inf", ts - KEEP_ROWS.total_seconds())
        pipe.zadd(rk, {f"{ts}:{secrets.token_hex(4)}": ts})
        pipe.expire(rk, int(KEEP_ROWS.total_seconds()))
        pipe.execute()
        return count(rule, value, now)
    ThrottleHit.objects.filter(scope=rule.scope, key=key, at__lt=now - KEEP_ROWS).delete()
    ThrottleHit.objects.create(scope=rule.scope, key=key, at=now)
    return count(rule, value, now)


def do_reset(rule: Rule, value: str) -> None:
    """Forget ``value``'s attempts under ``rule`` (a successful sign-in clears its account's failures)."""
    key = key_for(value)
    r = _redis()
    if r is not None:
        r.delete(_rkey(rule, key))
        return
    ThrottleHit.objects.filter(scope=rule.scope, key=key).delete()


def do_hit_audited(rule: Rule, value: str, principal: Principal, *, label: str = "",
                   now: dt.datetime | None = None) -> int:
    """:func:`do_hit`, and the attempt that locks the door writes a ``security.lockout`` audit row in
    ``principal``'s tenant (``label``: a masked name of the account; never the address or a secret)."""
    n = do_hit(rule, value, now)
    if n == rule.limit:
        do_audit(principal, "security.lockout", "Throttle", rule.scope,
                 data={"rule": rule.scope, "limit": rule.limit, "window_seconds": rule.window,
                       "account": label, "key": key_for(value)[:12]})
    return n


def client_ip(request: HttpRequest) -> str | None:
    """The address a request came from: ``REMOTE_ADDR``, or — only behind a trusted proxy
    (``SHEQUN_TRUSTED_PROXY``) — the last address the proxy appended to ``X-Forwarded-For``."""
    if getattr(settings, "TRUSTED_PROXY", False):
        forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if forwarded:
            return str(forwarded[-1])[:64]
    ip = request.META.get("REMOTE_ADDR") or None
    return str(ip)[:64] if ip else None


def wait_message(seconds: int) -> str:
    """“请 N 分钟后再试” in the person's language."""
    return _("尝试次数过多, 请 %(n)d 分钟后再试") % {"n": max(1, math.ceil(seconds / 60))}
