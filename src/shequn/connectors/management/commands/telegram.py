"""``shequn telegram poll`` — long-polling mode (getUpdates) for a Telegram connection, for hosts
that cannot receive webhooks; ``shequn telegram set-webhook URL`` — switch a bot to webhook mode
with its secret token. getUpdates and webhooks are mutually exclusive: poll removes the webhook."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shequn.connectors import selectors, services


class Command(BaseCommand):
    help = "Telegram: poll (long polling) or set-webhook"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["poll", "set-webhook"])
        parser.add_argument("url", nargs="?", help="set-webhook: the public base URL of this server")
        parser.add_argument("--connection", type=int, help="connection id (default: every active Telegram one)")
        parser.add_argument("--once", action="store_true", help="poll: one round, then exit")
        parser.add_argument("--timeout", type=int, default=25, help="poll: long-poll seconds")

    def handle(self, *args: Any, **opts: Any) -> None:
        ids = selectors.active_connection_ids("telegram", only=opts["connection"])
        if not ids:
            raise CommandError("没有启用的 Telegram 连接")
        if opts["action"] == "set-webhook":
            if not opts["url"]:
                raise CommandError("需要 URL, 例如 https://shequn.example.com")
            for cid in ids:
                services.do_set_telegram_webhook(cid, opts["url"].rstrip("/"))
                self.stdout.write(f"connection {cid}: webhook set")
            return
        first = True
        while True:
            for cid in ids:
                try:
                    timeout = 0 if opts["once"] else opts["timeout"] // max(1, len(ids))
                    n = services.do_poll_telegram(cid, timeout=timeout, drop_webhook=first)
                    if n:
                        self.stdout.write(f"connection {cid}: {n} updates")
                except Exception as exc:
                    services.do_note_connection_error(cid, f"poll: {type(exc).__name__}")
                    self.stderr.write(f"connection {cid}: {type(exc).__name__}")
                    time.sleep(2)
            first = False
            if opts["once"]:
                return
