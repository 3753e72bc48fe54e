"""Template filters of the members' pages."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def yuan(fen: int | None) -> str:
    """Integer fen as ``¥1,599.20`` (negative amounts keep their sign)."""
    value = int(fen or 0)
    sign = "-" if value < 0 else ""
    value = abs(value)
    return f"{sign}¥{value // 100:,}.{value % 100:02d}"
