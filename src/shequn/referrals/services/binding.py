"""Binding: who is whose referrer. One level only (a member has at most one referrer); the tenant's
policy decides how long a binding lasts (permanent / days / last click), whether it is protected,
and whether only new customers may be bound. Self-binding and cycles (the referrer is the member's
own descendant) are refused. Locking: :func:`try_bind` reads the referee's binding row with
``select_for_update``."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.models import Member

from ..models import (
    BindingMode,
    BuyerStat,
    InviteLink,
    ReferralBinding,
)
from ..selectors import active_binding
from ._common import get_policy

REFUSALS = {
    "self": _("不能绑定自己为推荐人"),
    "cycle": _("不能形成循环推荐关系(对方是你的下级)"),
    "unknown_referrer": _("推荐人不存在"),
    "existing_customer": _("仅新客户可以绑定推荐人"),
    "already_bound": _("已绑定其他推荐人"),
    "protected": _("当前推荐关系在保护期内"),
}


def _is_descendant(tenant_id: int, ancestor_id: int, member_id: int, now: datetime) -> bool:
    """True when ``ancestor_id`` appears in ``member_id``'s chain of referrers (bounded walk)."""
    cur = member_id
    seen = {cur}
    for _i in range(256):
        b = active_binding(tenant_id, cur, now)
        if b is None:
            return False
        if b.referrer_id == ancestor_id:
            return True
        if b.referrer_id in seen:
            return False
        seen.add(b.referrer_id)
        cur = b.referrer_id
    return False


def try_bind(tenant_id: int, member: Member, referrer_id: int, *, link: InviteLink | None = None,
             now: datetime | None = None, stat_before: BuyerStat | None = None,
             ) -> tuple[ReferralBinding | None, str]:
    """Bind ``member`` to ``referrer_id`` per the tenant's policy. Returns ``(binding, "")`` or
    ``(current_binding_or_None, refusal_code)``; codes are the keys of :data:`REFUSALS`.
    Locking: the referee's binding row is read with ``select_for_update``."""
    now = now or timezone.now()
    if referrer_id == member.pk:
        return active_binding(tenant_id, member.pk, now), "self"
    if not Member.objects.filter(tenant_id=tenant_id, pk=referrer_id).exists():
        return active_binding(tenant_id, member.pk, now), "unknown_referrer"
    policy = get_policy(tenant_id)
    if policy.new_customer_only:
        stat = stat_before or BuyerStat.objects.filter(tenant_id=tenant_id, member=member).first()
        if stat is not None and stat.paid_orders > 0:
            return active_binding(tenant_id, member.pk, now), "existing_customer"
    # referrer is (transitively) referred by member → binding would close a cycle
    if _is_descendant(tenant_id, member.pk, referrer_id, now):
        return active_binding(tenant_id, member.pk, now), "cycle"
    expires = now + timedelta(days=policy.binding_days) if policy.binding_mode == BindingMode.DAYS else None
    protected = now + timedelta(days=policy.protection_days) if policy.protection_days else None
    existing = ReferralBinding.objects.select_for_update().filter(tenant_id=tenant_id, member=member).first()
    if existing is not None:
        active = existing.expires_at is None or existing.expires_at > now
        if existing.referrer_id == referrer_id:
            if policy.binding_mode != BindingMode.PERMANENT and active:
                existing.expires_at = expires
                existing.save(update_fields=["expires_at"])
            if active:
                return existing, ""
        elif active:
            if existing.protected_until and existing.protected_until > now:
                return existing, "protected"
            if policy.binding_mode != BindingMode.LAST_CLICK:
                return existing, "already_bound"
        previous = existing.referrer_id
        existing.referrer_id = referrer_id
        existing.link = link
        existing.bound_at = now
        existing.expires_at = expires
        existing.protected_until = protected
        existing.save()
        do_audit(Principal.system(tenant_id), "referrals.binding.change", "ReferralBinding", existing.pk,
                 data={"member": member.pk, "from": previous, "to": referrer_id})
        return existing, ""
    binding = ReferralBinding.objects.create(tenant_id=tenant_id, member=member, referrer_id=referrer_id, link=link,
                                             bound_at=now, expires_at=expires, protected_until=protected)
    return binding, ""


@transaction.atomic
def do_bind(principal: Principal, *, member_id: int, referrer_id: int) -> ReferralBinding:
    """Bind by hand (console/API); refusals raise :class:`Invalid` with the reason."""
    member = Member.objects.filter(tenant_id=principal.tenant_id, pk=member_id).first()
    if member is None:
        raise NotFound(_("会员不存在"), details={"field": "member_id"})
    binding, refused = try_bind(principal.tenant_id, member, referrer_id)
    if refused or binding is None:
        raise Invalid(str(REFUSALS.get(refused, refused)), code=f"binding_{refused}",
                      details={"field": "referrer_id", "reason": refused})
    do_audit(principal, "referrals.binding.manual", "ReferralBinding", binding.pk, data={"referrer": referrer_id})
    return binding
