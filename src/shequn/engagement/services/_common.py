"""Private helpers shared by several engagement topics."""

from __future__ import annotations

from shequn.connectors.models import OutboxAction
from shequn.connectors.services import do_request_action


def _announce(tenant_id: int, group_id: int | None, key: str, text: str, source: str) -> OutboxAction | None:
    if group_id is None:
        return None
    return do_request_action(tenant_id, kind="send", group_id=group_id, idempotency_key=key,
                             payload={"text": text}, source=source)
