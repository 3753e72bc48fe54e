"""Sidebar permission callbacks for the sections added to ``UNFOLD["SIDEBAR"]`` (commerce, campaigns,
moderation, money, connections); the older ones live in ``console.dashboard``."""

from __future__ import annotations

from django.http import HttpRequest

from shequn.core.admin_base import can


def can_commerce_read(request: HttpRequest) -> bool:
    return can(request, "commerce.read")


def can_moderation_read(request: HttpRequest) -> bool:
    return can(request, "moderation.read")


def can_finance_read(request: HttpRequest) -> bool:
    return can(request, "finance.read")


def can_connectors_read(request: HttpRequest) -> bool:
    return can(request, "connectors.read")


def can_analytics_read(request: HttpRequest) -> bool:
    return can(request, "analytics.read")
