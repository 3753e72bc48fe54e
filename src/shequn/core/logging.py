"""A logging filter that masks phone numbers, e-mail addresses and secrets in every record."""

from __future__ import annotations

import logging
import re

_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*(@[A-Za-z0-9.-]+)")
_SECRET = re.compile(r"(?i)((?:secret|token|password|api[_-]?key|authorization)[\"']?\s*[:=]\s*[\"']?)([^\s\"',;]+)")


def redact(text: str) -> str:
    text = _PHONE.sub(r"\1****\3", text)
    text = _EMAIL.sub(r"\1***\2", text)
    return _SECRET.sub(r"\1***", text)


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True
