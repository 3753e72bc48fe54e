"""The standing registry: moderation registers ``fn(tenant_id, member_id) -> str | None`` with
:func:`register_standing_check` (``None`` = clean, else the reason). Role recommendations skip members
with a bad standing; lotteries and red packets refuse them (:func:`check_good_standing`)."""

from __future__ import annotations

from collections.abc import Callable

from django.utils.translation import gettext as _

from shequn.core.errors import Forbidden

StandingCheck = Callable[[int, int], "str | None"]
_STANDING_CHECKS: list[StandingCheck] = []


def register_standing_check(fn: StandingCheck) -> None:
    """Moderation fills this: ``fn(tenant_id, member_id)`` returns ``None`` when the member's record is
    clean, else a short reason. With no checks registered everyone is clean."""
    if fn not in _STANDING_CHECKS:
        _STANDING_CHECKS.append(fn)


def unregister_standing_check(fn: StandingCheck) -> None:
    if fn in _STANDING_CHECKS:
        _STANDING_CHECKS.remove(fn)


def check_standing(tenant_id: int, member_id: int) -> str | None:
    for fn in _STANDING_CHECKS:
        problem = fn(tenant_id, member_id)
        if problem:
            return problem
    return None


def check_good_standing(tenant_id: int, member_id: int, what: str) -> None:
    """Refuse (403 ``bad_standing``) a member whose record is not clean, naming the reason the
    registered standing check gave (moderation: banned, muted, a recent strike)."""
    problem = check_standing(tenant_id, member_id)
    if problem:
        raise Forbidden(_("%(reason)s, 暂时不能%(what)s") % {"reason": problem, "what": what},
                        code="bad_standing", details={"field": "member_id", "reason": problem})
