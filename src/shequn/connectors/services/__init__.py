"""Writers of the connectors app, one module per topic. ``do_request_action`` is the one way an
engine acts on a platform.

* :mod:`.connections` — connect a platform, secrets, health errors
* :mod:`.rooms` — rooms a bot has seen, mapping them to communities
* :mod:`.ingest` — parsed platform events → the activity stream (+ connection health)
* :mod:`.inbound` — raw callbacks stored once and processed by a task; Telegram polling
* :mod:`.telegram`, :mod:`.wecom`, :mod:`.matrix` — the database side of each platform's inbound
  (parsing is pure, in :mod:`shequn.connectors.platforms`)
* :mod:`.outbox` — ``do_request_action`` and the operators' retry / cancel
* :mod:`.delivery` — the outbox worker (claim, deliver through the adapters, record)
* :mod:`.human_tasks` — actions no bot can perform, for a person
* :mod:`.qr` — WeCom QR configs

Layering inside the package (no import circle): ``inbound`` → the platform modules → ``ingest`` /
``rooms`` / ``connections``; ``outbox`` → ``delivery`` → ``human_tasks``."""

from __future__ import annotations

from .connections import (
    REQUIRED,
    check_connection_input,
    conn_info,
    connection_secrets,
    do_create_connection,
    do_delete_connection,
    do_note_connection_error,
    do_set_connection_active,
    do_update_connection_secrets,
    verify_connection,
)
from .delivery import DeliveryStats
from .human_tasks import HUMAN_TASK_DEADLINE, do_complete_human_task, open_human_task
from .inbound import do_poll_telegram, do_process_inbound, do_store_inbound
from .ingest import do_ingest_platform_events
from .matrix import do_matrix_sync, do_parse_matrix_events, do_process_matrix_transaction
from .outbox import (
    do_cancel_action,
    do_cancel_scheduled_unmutes,
    do_deliver_due,
    do_release_abandoned,
    do_request_action,
    do_retry_action,
    on_community_gated,
    on_join_decided,
)
from .qr import check_qr_input, do_create_qr_config
from .rooms import do_discover_room, do_map_room, do_set_room_secret, encrypted_refusal
from .telegram import (
    do_check_rights_quietly,
    do_check_telegram_rights,
    do_process_telegram_update,
    do_set_telegram_webhook,
    do_store_bot_rights,
    telegram_invite_link,
)
from .wecom import do_process_wecom_callback

__all__ = [
    "HUMAN_TASK_DEADLINE",
    "REQUIRED",
    "DeliveryStats",
    "check_connection_input",
    "check_qr_input",
    "conn_info",
    "connection_secrets",
    "do_cancel_action",
    "do_cancel_scheduled_unmutes",
    "do_check_rights_quietly",
    "do_check_telegram_rights",
    "do_complete_human_task",
    "do_create_connection",
    "do_create_qr_config",
    "do_delete_connection",
    "do_deliver_due",
    "do_discover_room",
    "do_ingest_platform_events",
    "do_map_room",
    "do_matrix_sync",
    "do_note_connection_error",
    "do_parse_matrix_events",
    "do_poll_telegram",
    "do_process_inbound",
    "do_process_matrix_transaction",
    "do_process_telegram_update",
    "do_process_wecom_callback",
    "do_release_abandoned",
    "do_request_action",
    "do_retry_action",
    "do_set_connection_active",
    "do_set_room_secret",
    "do_set_telegram_webhook",
    "do_store_bot_rights",
    "do_store_inbound",
    "do_update_connection_secrets",
    "encrypted_refusal",
    "on_community_gated",
    "on_join_decided",
    "open_human_task",
    "telegram_invite_link",
    "verify_connection",
]
