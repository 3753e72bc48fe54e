"""Audiences: saved member segments that lower apps can target without importing analytics.

The analytics app owns segments (rules evaluated live) and sits above engagement in the layers, so
engagement cannot import it. Analytics registers a resolver here (declared in :mod:`shequn.wiring`):
``resolve(tenant_id, audience_id) -> member ids`` and ``choices(tenant_id) -> [(id, name)]``.
Without one every audience is empty and there is nothing to choose."""

from __future__ import annotations

from collections.abc import Callable

Resolve = Callable[[int, int], set[int]]
Choices = Callable[[int], list[tuple[int, str]]]

_resolver: dict[str, tuple[Resolve, Choices]] = {}


def register_audiences(resolve: Resolve, choices: Choices) -> None:
    _resolver["segments"] = (resolve, choices)


def audience_members(tenant_id: int, audience_id: int) -> set[int]:
    """The members of an audience now (empty when none is registered or the id is unknown)."""
    entry = _resolver.get("segments")
    return entry[0](tenant_id, audience_id) if entry else set()


def audience_choices(tenant_id: int) -> list[tuple[int, str]]:
    entry = _resolver.get("segments")
    return entry[1](tenant_id) if entry else []
