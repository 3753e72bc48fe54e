"""Encryption at rest for secrets the platform must be able to read back (Fernet, AES-128-CBC +
HMAC-SHA256): connector credentials, webhook signing secrets, payment-provider merchant keys.

The key is ``settings.SHEQUN["FIELD_KEY"]`` when set (a Fernet key, or any string, which is then
stretched with SHA-256), otherwise derived from ``SECRET_KEY``. Plain secrets exist only in memory
while a request or a delivery uses them; they are never logged and never shown again in full —
:func:`hint` keeps the last four characters for the console. (Moved here from
``connectors/secrets.py`` so every app can use it; the key derivation is unchanged, so secrets
stored before still decrypt.)"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet() -> Fernet:
    raw = (getattr(settings, "SHEQUN", {}) or {}).get("FIELD_KEY") or ""
    if raw:
        try:
            return Fernet(raw.encode() if isinstance(raw, str) else raw)
        except (ValueError, TypeError):
            pass
        material = f"shequn-field-key:{raw}".encode()
    else:
        material = f"shequn-connectors:{settings.SECRET_KEY}".encode()
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(material).digest()))


def encrypt(values: dict[str, str]) -> str:
    return _fernet().encrypt(json.dumps(values, sort_keys=True).encode()).decode() if values else ""


def decrypt(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        data: Any = json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken as exc:
        raise ValueError("stored secrets cannot be decrypted: FIELD_KEY / SECRET_KEY changed?") from exc
    return {str(k): str(v) for k, v in data.items()}


def hint(value: str) -> str:
    """What the console may show of a secret: ``••••abcd`` (nothing for short secrets)."""
    return "••••" + value[-4:] if len(value) >= 12 else "••••"
