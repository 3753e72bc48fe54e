"""PII masking for lists and exports."""

from __future__ import annotations


def mask_phone(phone: str | None) -> str:
    """``13812348888`` → ``138****8888``; short or empty values are masked whole."""
    if not phone:
        return ""
    digits = phone.strip()
    if len(digits) >= 7:
        return f"{digits[:3]}****{digits[-4:]}"
    return "*" * len(digits)


def mask_email(email: str | None) -> str:
    if not email or "@" not in email:
        return ""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"
