"""Who hears the outcome of an outbox action (declared in :mod:`shequn.wiring`).

:func:`send_action_settled` is called when an outbox action reaches an outcome its requester must
know, inside the transaction that records it: ``failed`` / ``dead`` (the platform did not do it),
``delegated`` (a human task now holds it: the bot lacks the right, or the platform the capability)
and ``done`` for an action a person completed through its human task. Keyword arguments:
``tenant_id``, ``action_id``, ``kind``, ``status``, ``source``, ``idempotency_key``, ``error``.
Listeners must do their writes in a ``transaction.atomic()`` block of their own (a savepoint): one
that raises is logged and does not undo the delivery's record. The moderation ladder uses it to
count only actions that were applied. A plain registry, not a Django signal: the subscription is
declared in the wiring module like every other."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SettledListener = Callable[..., Any]

_LISTENERS: dict[str, SettledListener] = {}


def register_settled_listener(name: str, listener: SettledListener) -> None:
    _LISTENERS[name] = listener


def send_action_settled(*, tenant_id: int, action_id: int, kind: str, status: str, source: str,
                        idempotency_key: str, error: str = "") -> None:
    for name, listener in list(_LISTENERS.items()):
        try:
            listener(tenant_id=tenant_id, action_id=action_id, kind=kind, status=status, source=source,
                     idempotency_key=idempotency_key, error=error)
        except Exception as exc:
            log.error("action_settled listener %s failed for action %s: %r", name, action_id, exc)
