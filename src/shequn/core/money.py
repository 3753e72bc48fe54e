"""Money in the console: stored as integer fen (分), shown and entered in 元.

``YuanField`` is a form field that takes ``19.9`` (元, at most two decimals) and cleans to ``1990``
(fen); ``yuan(1990)`` renders ``¥19.90``. ``TenantScopedMixin`` (``core.admin_base``) uses both for
every model column whose name ends in ``_fen``, so no console page shows or asks for 分."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

#: the largest amount one field takes: 100 million yuan (the API's ``MAX_FEN``)
MAX_FEN = 10_000_000_000


def yuan(fen: int | None) -> str:
    """``1990`` → ``¥19.90``; ``None`` → ``""``."""
    return "" if fen is None else f"¥{fen / 100:,.2f}"


def fen_from_yuan(value: Any) -> int:
    """``"19.9"`` → ``1990``; more than two decimals or not a number is a ``ValueError``."""
    try:
        d = Decimal(str(value).strip().replace(",", "").lstrip("¥"))
    except InvalidOperation as exc:
        raise ValueError(str(value)) from exc
    if not d.is_finite() or d != d.quantize(Decimal("0.01")):
        raise ValueError(str(value))
    return int(d * 100)


def yuan_label(label: Any) -> str:
    """A column's verbose name in 分 as a label in 元: ``价格(分)`` → ``价格(元)``."""
    text = str(label)
    for fen_mark, yuan_mark in (("(分)", "(元)"), ("（分）", "（元）"), ("(fen)", "(yuan)")):
        text = text.replace(fen_mark, yuan_mark)
    return text


class YuanInput(forms.TextInput):
    """Shows a stored fen amount as 元 (``1990`` → ``19.90``)."""

    input_type = "text"

    def format_value(self, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value / 100:.2f}"
        return super().format_value(value)


class YuanField(forms.Field):
    """Entered in 元 (two decimals at most), cleaned to integer fen."""

    widget = YuanInput
    default_error_messages = {
        "invalid": _("请输入金额(元), 最多两位小数"),
        "min_value": _("金额不能小于 %(limit)s 元"),
        "max_value": _("金额不能大于 %(limit)s 元"),
    }

    def __init__(self, *, min_fen: int = 0, max_fen: int = MAX_FEN, **kwargs: Any) -> None:
        self.min_fen, self.max_fen = min_fen, max_fen
        kwargs.setdefault("help_text", _("单位: 元"))
        super().__init__(**kwargs)
        self.widget.attrs.setdefault("inputmode", "decimal")

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return fen_from_yuan(value)
        except ValueError as exc:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from exc

    def validate(self, value: Any) -> None:
        super().validate(value)
        if value is None:
            return
        if value < self.min_fen:
            raise ValidationError(self.error_messages["min_value"], code="min_value",
                                  params={"limit": f"{self.min_fen / 100:.2f}"})
        if value > self.max_fen:
            raise ValidationError(self.error_messages["max_value"], code="max_value",
                                  params={"limit": f"{self.max_fen / 100:.2f}"})

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return bool(self.to_python(data) != initial)
        except ValidationError:
            return True


class PercentBpsField(YuanField):
    """A rate entered in percent (``80`` or ``12.5``), cleaned to basis points (``8000``, ``1250``):
    the same two-decimal arithmetic as 元 → fen."""

    widget = YuanInput
    default_error_messages = {
        "invalid": _("请输入百分比, 最多两位小数"),
        "min_value": _("比例不能小于 %(limit)s%%"),
        "max_value": _("比例不能大于 %(limit)s%%"),
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", _("单位: %, 100 = 全额"))
        kwargs.setdefault("max_fen", 10_000)
        super().__init__(**kwargs)


def percent_label(label: Any) -> str:
    """``比例(万分之)`` → ``比例(%)``."""
    return str(label).replace("(万分之)", "(%)").replace("（万分之）", "（%）")
