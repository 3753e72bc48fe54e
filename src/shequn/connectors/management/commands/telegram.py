"""``shequn telegram poll`` — long-polling mode (getUpdates) for a Telegram connection, for hosts
that cannot receive webhooks; ``shequn telegram set-webhook URL`` — switch a bot to webhook mode
with its secret token. getUpdates and webhooks are mutually exclusive: poll removes the webhook."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from shequn.connectors.adapters import ConnInfo
from shequn.connectors.adapters.telegram import make_bot
from shequn.connectors.models import Connection
from shequn.connectors.services import connection_secrets, do_note_connection_error, do_store_inbound
from shequn.connectors.telegram import ALLOWED_UPDATES


def _info(conn: Connection) -> ConnInfo:
    return ConnInfo(id=conn.pk, tenant_id=conn.tenant_id, platform=conn.platform, config=dict(conn.config),
                    secrets=connection_secrets(conn))


async def _get_updates(info: ConnInfo, offset: int | None, timeout: int, drop_webhook: bool) -> list[dict[str, Any]]:
    bot = make_bot(info, timeout=timeout + 15)
    try:
        if drop_webhook:
            await bot.delete_webhook(drop_pending_updates=False)
        updates = await bot.get_updates(offset=offset, timeout=timeout, allowed_updates=ALLOWED_UPDATES)
        return [u.model_dump(mode="json", exclude_none=True, by_alias=True) for u in updates]
    finally:
        await bot.session.close()


def poll_once(conn_id: int, *, timeout: int = 0, drop_webhook: bool = False) -> int:
    """One getUpdates round: store each update once and advance the offset in the same transaction."""
    conn = Connection.objects.get(pk=conn_id, platform="telegram")
    offset = (conn.state or {}).get("offset")
    updates = asyncio.run(_get_updates(_info(conn), offset, timeout, drop_webhook))
    with transaction.atomic():
        conn = Connection.objects.select_for_update().get(pk=conn_id)
        for u in updates:
            kinds = [k for k in u if k != "update_id"]
            do_store_inbound(conn, f"update:{u['update_id']}", kinds[0] if kinds else "", u)
        if updates:
            conn.state = {**(conn.state or {}), "offset": max(u["update_id"] for u in updates) + 1}
            conn.save(update_fields=["state"])
    return len(updates)


class Command(BaseCommand):
    help = "Telegram: poll (long polling) or set-webhook"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["poll", "set-webhook"])
        parser.add_argument("url", nargs="?", help="set-webhook: the public base URL of this server")
        parser.add_argument("--connection", type=int, help="connection id (default: every active Telegram one)")
        parser.add_argument("--once", action="store_true", help="poll: one round, then exit")
        parser.add_argument("--timeout", type=int, default=25, help="poll: long-poll seconds")

    def handle(self, *args: Any, **opts: Any) -> None:
        qs = Connection.objects.filter(platform="telegram", is_active=True)
        if opts["connection"]:
            qs = qs.filter(pk=opts["connection"])
        ids = list(qs.values_list("pk", flat=True))
        if not ids:
            raise CommandError("没有启用的 Telegram 连接")
        if opts["action"] == "set-webhook":
            if not opts["url"]:
                raise CommandError("需要 URL, 例如 https://shequn.example.com")
            for conn in qs:
                asyncio.run(self._set_webhook(conn, opts["url"].rstrip("/")))
                self.stdout.write(f"connection {conn.pk}: webhook set")
            return
        first = True
        while True:
            for cid in ids:
                try:
                    n = poll_once(cid, timeout=0 if opts["once"] else opts["timeout"] // max(1, len(ids)),
                                  drop_webhook=first)
                    if n:
                        self.stdout.write(f"connection {cid}: {n} updates")
                except Exception as exc:
                    do_note_connection_error(cid, f"poll: {type(exc).__name__}")
                    self.stderr.write(f"connection {cid}: {type(exc).__name__}")
                    time.sleep(2)
            first = False
            if opts["once"]:
                return

    async def _set_webhook(self, conn: Connection, base: str) -> None:
        info = _info(conn)
        bot = make_bot(info)
        try:
            await bot.set_webhook(f"{base}/hooks/telegram/{conn.hook_key}/",
                                  secret_token=info.secrets["webhook_secret"], allowed_updates=ALLOWED_UPDATES)
        finally:
            await bot.session.close()
