"""Encryption at rest for connector secrets: the shared helpers of :mod:`shequn.core.fieldcrypt`
(Fernet; key from ``SHEQUN["FIELD_KEY"]`` or ``SECRET_KEY``), re-exported under their old name."""

from __future__ import annotations

from shequn.core.fieldcrypt import decrypt, encrypt, hint

__all__ = ["decrypt", "encrypt", "hint"]
