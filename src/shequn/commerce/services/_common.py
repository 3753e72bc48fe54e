"""Private helpers shared by several commerce topics: member lookup, integer checks, tokens and
out-trade numbers, request hashes, attribution cleaning, and :class:`SoldOut`."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

from django.utils.translation import gettext as _

from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.models import Tenant
from shequn.members.models import Member

from ..events import ATTRIBUTION_KEYS, ATTRIBUTION_MAX_LENGTH
from ..gateways import with_default_notify_url
from ..models import LiveSession


class SoldOut(Conflict):
    code = "sold_out"


def _tenant_settings(tenant_id: int) -> dict[str, Any]:
    """The tenant's settings as the gateways read them (WeChat Pay's notify URL defaulted from the
    public base address)."""
    row = Tenant.objects.filter(pk=tenant_id).values_list("settings", "slug").first()
    if row is None:
        return {}
    return with_default_notify_url(row[0], row[1])


def _member(tenant_id: int, member_id: Any, field_name: str = "member_id") -> Member:
    if not isinstance(member_id, int) or isinstance(member_id, bool):
        raise Invalid(_("会员 ID 必须是整数"), details={"field": field_name})
    m = Member.objects.filter(tenant_id=tenant_id, pk=member_id).first()
    if m is None:
        raise NotFound(_("会员不存在: %(id)s") % {"id": member_id}, details={"field": field_name})
    return m


def _positive_int(value: Any, field_name: str, *, maximum: int | None = None, allow_zero: bool = False) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(_("%(f)s 必须是整数") % {"f": field_name}, details={"field": field_name})
    if value < 0 or (value == 0 and not allow_zero):
        raise Invalid(_("%(f)s 必须大于 0") % {"f": field_name}, details={"field": field_name})
    if maximum is not None and value > maximum:
        raise Invalid(_("%(f)s 不能超过 %(m)d") % {"f": field_name, "m": maximum}, details={"field": field_name})
    return value


def _token() -> str:
    return secrets.token_urlsafe(12)


def _out_no(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:28]


def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def clean_attribution(tenant_id: int, raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keep the attribution as given (raw), restricted to the known keys, sane types and the text
    lengths of the order event contract (``events.ATTRIBUTION_MAX_LENGTH``)."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(ATTRIBUTION_KEYS))
    if unknown:
        raise Invalid(_("未知的归因字段: %(f)s") % {"f": ", ".join(unknown)},
                      details={"field": f"attribution.{unknown[0]}"})
    out: dict[str, Any] = {}
    for key in ("community_id", "group_id", "referrer_member_id", "live_session_id"):
        v = raw.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
            raise Invalid(_("归因字段 %(f)s 必须是正整数") % {"f": key}, details={"field": f"attribution.{key}"})
        out[key] = v
    for key in ("invite_code", "campaign"):
        v = raw.get(key)
        if v is not None and not isinstance(v, str):
            raise Invalid(_("归因字段 %(f)s 必须是字符串") % {"f": key}, details={"field": f"attribution.{key}"})
        # checked where it enters: an order whose text the listeners cannot store (referrals' 64 and
        # 16-character columns) is refused now, never accepted and then failing its commission
        limit = ATTRIBUTION_MAX_LENGTH[key]
        if isinstance(v, str) and len(v) > limit:
            raise Invalid(_("归因字段 %(f)s 最多 %(n)d 个字符") % {"f": key, "n": limit},
                          details={"field": f"attribution.{key}", "max_length": limit})
        out[key] = v or None
    if out["live_session_id"] is not None and not LiveSession.objects.filter(
        tenant_id=tenant_id, pk=out["live_session_id"]
    ).exists():
        raise NotFound(_("直播场次不存在"), details={"field": "attribution.live_session_id"})
    return out
