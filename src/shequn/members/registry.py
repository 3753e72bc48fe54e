"""What other apps do when two members are merged (declared in :mod:`shequn.wiring`).

Members is the lowest layer above core: it does not know the tables that point at a member from
higher apps (memberships, roles, activity events). Each such app registers a merge hook
``fn(tenant_id, from_member_id, to_member_id) -> {what: rows moved}``; ``do_merge_members`` calls them
in registration order inside its own transaction (both member rows locked), so a merge moves every
reference or none."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from shequn.core.permissions import Principal

MergeHook = Callable[[int, int, int], Mapping[str, int]]

_HOOKS: dict[str, MergeHook] = {}


def register_merge_hook(name: str, hook: MergeHook) -> None:
    _HOOKS[name] = hook


def merge_hooks() -> list[tuple[str, MergeHook]]:
    return list(_HOOKS.items())


class Placement(Protocol):
    """Where imported members are placed (communities implements it; declared in :mod:`shequn.wiring`).
    An import row may name a community; members does not know the communities app."""

    def community_ids(self, tenant_id: int) -> Mapping[str, int]:
        """The tenant's communities by name."""
        ...

    def record_imported_joins(self, tenant_id: int, joins: Sequence[tuple[int, int]], at: dt.datetime) -> None:
        """Open a membership (source: import) for each ``(member_id, community_id)``."""
        ...


class _Nowhere:
    def community_ids(self, tenant_id: int) -> Mapping[str, int]:
        return {}

    def record_imported_joins(self, tenant_id: int, joins: Sequence[tuple[int, int]], at: dt.datetime) -> None:
        if joins:
            raise RuntimeError("no placement registered: cannot place imported members in communities")


_PLACEMENT: list[Placement] = [_Nowhere()]


def register_placement(placement: Placement) -> None:
    _PLACEMENT[0] = placement


def placement() -> Placement:
    return _PLACEMENT[0]


# --- member data rights (PIPL): what each app holds about a member, and how it erases it -------------

ExportSection = Callable[[int, int], list[dict[str, Any]]]
ErasureStep = Callable[[Principal, int], int]
_EXPORT_SECTIONS: dict[str, ExportSection] = {}
_ERASURE_STEPS: dict[str, ErasureStep] = {}


def register_export_section(name: str, section: ExportSection) -> None:
    """``section(tenant_id, member_id)`` → the rows this app holds about the member."""
    _EXPORT_SECTIONS[name] = section


def register_erasure_step(name: str, step: ErasureStep) -> None:
    """``step(principal, member_id)`` erases the member's personal data in this app's tables and
    returns how many rows it changed (called inside the erasure's transaction)."""
    _ERASURE_STEPS[name] = step


def export_sections() -> list[tuple[str, ExportSection]]:
    return sorted(_EXPORT_SECTIONS.items())


def erasure_steps() -> list[tuple[str, ErasureStep]]:
    return sorted(_ERASURE_STEPS.items())
