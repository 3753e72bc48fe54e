"""The API's URLconf is django-ninja's flat list regrouped by first segment (``grouped_urls``): every
operation resolves to the same view and reverses to the same path as before, and a request tries one
prefix per app instead of every route before its own."""

from __future__ import annotations

import re

from django.urls import resolve, reverse

from shequn.api.main import api


def _sample_path(route: str) -> str:
    return "/api/v1/" + re.sub(r"<(?:\w+:)?\w+>", "7", route)


def test_every_operation_resolves_and_reverses_as_in_the_flat_list() -> None:
    flat, _app, namespace = api.urls
    assert len(flat) > 150
    first: dict[str, str] = {}  # a route with several methods: ninja serves all from its first name
    for p in flat:
        first.setdefault(str(p.pattern), p.name)
    for p in flat:
        route = str(p.pattern)
        path = _sample_path(route)
        match = resolve(path)
        # api.urls builds new view objects on each call: compare what names the view
        assert (match.url_name, match.route) == (first[route], "api/v1/" + route), route
        kwargs = dict.fromkeys(re.findall(r"<(?:\w+:)?(\w+)>", route), "7")
        assert reverse(f"{namespace}:{p.name}", kwargs=kwargs) == path, route


def test_a_deep_route_tries_few_patterns() -> None:
    match = resolve("/api/v1/commerce/flash-sales/7/buy")
    assert match.url_name == "flash_buy"
    # the flat list made this ~150 (every route before commerce's); grouped, the app prefixes before
    # it and commerce's own routes before this one
    assert len(match.tried) < 60, len(match.tried)
