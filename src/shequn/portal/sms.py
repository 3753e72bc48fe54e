"""Pluggable SMS senders for sign-in codes.

``settings.SHEQUN["SMS_SENDER"]`` names a class (dotted path) with ``send(tenant_id, phone, text)``;
the default is :class:`SandboxSender`, which sends nothing: it prints the message to the server's
output and keeps it in :class:`~shequn.portal.models.SandboxSms`, shown in the console (会员页面 →
短信(沙箱)). A real provider (Aliyun, Tencent Cloud SMS) is one small class."""

from __future__ import annotations

import logging
import sys
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from shequn.core.masking import mask_phone

from .models import SandboxSms

log = logging.getLogger(__name__)


class Sender(Protocol):
    def send(self, tenant_id: int, phone: str, text: str) -> None: ...


class SandboxSender:
    """Development sender: the code goes to the dev server's output and the console's SMS log."""

    def send(self, tenant_id: int, phone: str, text: str) -> None:
        SandboxSms.objects.create(tenant_id=tenant_id, to_masked=mask_phone(phone), body=text[:300])
        # the dev server's output: the masked number only (logs never carry a full phone number)
        print(f"[shequn sandbox sms] to {mask_phone(phone)}: {text}", file=sys.stderr, flush=True)


def get_sender() -> Sender:
    path = (getattr(settings, "SHEQUN", {}) or {}).get("SMS_SENDER") or "shequn.portal.sms.SandboxSender"
    cls = import_string(str(path))
    sender: Sender = cls()
    return sender
