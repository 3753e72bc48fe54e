"""``{% onboarding_checklist %}``: the console home's setup checklist (``console.onboarding``)."""

from __future__ import annotations

from typing import Any

from django import template

from ..onboarding import onboarding_checklist as _checklist

register = template.Library()


@register.inclusion_tag("console/_onboarding.html", takes_context=True)
def onboarding_checklist(context: dict[str, Any]) -> dict[str, Any]:
    request = context.get("request")
    return {"checklist": _checklist(request) if request is not None else None}
