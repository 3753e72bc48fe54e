"""Every button drawn on a console row or detail page is a link (a GET). A GET must never change
data, so each button that acts is wrapped in ``confirm_first`` (GET shows a confirmation, POST acts);
only buttons that merely open another page are exempt, by name."""

from __future__ import annotations

from django.contrib import admin

#: buttons that only navigate or open a form page of their own (which POSTs)
NAVIGATION = {
    "open_dashboard": "opens the community board",
    "show_deliveries": "opens the filtered delivery log",
    "manual_paid_row": "opens a form page that POSTs",
    "manual_failed_row": "opens a form page that POSTs",
}


def _buttons(model_admin: admin.ModelAdmin) -> set[str]:
    names: set[str] = set()
    for attr in ("actions_row", "actions_detail", "actions_submit_line"):
        for entry in getattr(model_admin, attr, None) or ():
            names.add(entry if isinstance(entry, str) else entry.get("name", ""))
    return names - {""}


def test_every_acting_row_button_asks_before_it_acts() -> None:
    unguarded, seen = [], 0
    for model, model_admin in admin.site._registry.items():
        for name in _buttons(model_admin):
            seen += 1
            if name in NAVIGATION:
                continue
            if not getattr(getattr(model_admin, name), "confirms_first", False):
                unguarded.append(f"{model._meta.label}.{name}")
    assert seen >= 10, seen  # the walk really found the buttons
    assert not unguarded, f"row/detail buttons that act on GET (wrap them in confirm_first): {unguarded}"
