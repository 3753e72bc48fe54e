"""What communities asks of higher apps, declared in :mod:`shequn.wiring`.

Communities sits below commerce (tiers) and connectors (platform actions), so it cannot import
them. The entry-threshold gate needs two answers from above and tells one thing upward:

* ``entitlement(tenant_id, member_id, community_id) -> bool`` — does the member hold a paid tier
  of the community (commerce's active ``TierGrant``)? The paid threshold admits only those;
* ``privilege(tenant_id, member_id, community_id, name) -> bool`` — does an active tier of the
  community carry this privilege (``may_create_groups``: the partner's own group)?
* join-decision listeners ``fn(request)`` — called inside the decision's transaction for every
  decided platform request (auto or by staff); connectors answers the platform through the outbox
  (``approve_join`` / ``decline_join``);
* gate listeners ``fn(community, groups)`` — called inside the transaction that made a community
  gated (its threshold left "free") or added groups to a gated one, so every platform way in asks
  from then on: connectors sets public Matrix rooms to knock, the portal revokes the Telegram links
  it made that let people in without asking;
* membership listeners ``fn(tenant_id, pairs)`` — called inside the transaction of every write of
  the membership table (join, leave, bulk changes, member merge) with the ``(member_id,
  community_id)`` pairs whose stays changed; analytics keeps the community boards' stored
  members-present count from them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .models import ChatGroup, Community, JoinRequest

Entitlement = Callable[[int, int, int], bool]
Privilege = Callable[[int, int, int, str], bool]
DecisionListener = Callable[["JoinRequest"], None]
GateListener = Callable[["Community", "Sequence[ChatGroup]"], None]
MembershipListener = Callable[[int, "Sequence[tuple[int, int]]"], None]


def _nobody(tenant_id: int, member_id: int, community_id: int) -> bool:
    return False


def _no_privilege(tenant_id: int, member_id: int, community_id: int, name: str) -> bool:
    return False


_ENTITLEMENT: list[Entitlement] = [_nobody]
_PRIVILEGE: list[Privilege] = [_no_privilege]
_LISTENERS: dict[str, DecisionListener] = {}
_GATES: dict[str, GateListener] = {}
_MEMBERSHIP: dict[str, MembershipListener] = {}


def register_entitlement(fn: Entitlement) -> None:
    _ENTITLEMENT[0] = fn


def register_privilege(fn: Privilege) -> None:
    _PRIVILEGE[0] = fn


def register_join_decision_listener(name: str, fn: DecisionListener) -> None:
    _LISTENERS[name] = fn


def holds_paid_tier(tenant_id: int, member_id: int, community_id: int) -> bool:
    return bool(_ENTITLEMENT[0](tenant_id, member_id, community_id))


def has_privilege(tenant_id: int, member_id: int, community_id: int, name: str) -> bool:
    return bool(_PRIVILEGE[0](tenant_id, member_id, community_id, name))


def join_decision_listeners() -> list[DecisionListener]:
    return list(_LISTENERS.values())


def register_gate_listener(name: str, fn: GateListener) -> None:
    _GATES[name] = fn


def gate_listeners() -> list[GateListener]:
    return list(_GATES.values())


def register_membership_listener(name: str, fn: MembershipListener) -> None:
    _MEMBERSHIP[name] = fn


def membership_listeners() -> list[MembershipListener]:
    return list(_MEMBERSHIP.values())
