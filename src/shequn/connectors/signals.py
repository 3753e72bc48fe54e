"""Signals of the connectors for the engines that queue actions.

``action_settled`` is sent when an outbox action reaches an outcome its requester must know, inside
the transaction that records it: ``failed`` / ``dead`` (the platform did not do it), ``delegated``
(a human task now holds it: the bot lacks the right, or the platform the capability) and ``done``
for an action a person completed through its human task. Keyword arguments: ``tenant_id``,
``action_id``, ``kind``, ``status``, ``source``, ``idempotency_key``, ``error``. Receivers must do
their writes in a ``transaction.atomic()`` block of their own (a savepoint): one that raises is
logged (:func:`send_action_settled`) and does not undo the delivery's record.
The moderation ladder uses it to count only actions that were applied."""

from __future__ import annotations

import logging

from django.dispatch import Signal

log = logging.getLogger(__name__)

action_settled = Signal()


def send_action_settled(*, tenant_id: int, action_id: int, kind: str, status: str, source: str,
                        idempotency_key: str, error: str = "") -> None:
    for receiver, result in action_settled.send_robust(
            sender=None, tenant_id=tenant_id, action_id=action_id, kind=kind, status=status, source=source,
            idempotency_key=idempotency_key, error=error):
        if isinstance(result, Exception):
            log.error("action_settled receiver %r failed for action %s: %r", receiver, action_id, result)
