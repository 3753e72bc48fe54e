"""``shequn createoperator``: a console login with a staff role in a tenant (creates the tenant)."""

from __future__ import annotations

import getpass
import secrets
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shequn.core.errors import ShequnError
from shequn.core.models import StaffRole, Tenant
from shequn.core.services import do_create_operator, do_create_tenant


class Command(BaseCommand):
    help = "Create (or reset) an operator login for a tenant."
    stealth_options = ("stdin",)  # call_command(..., stdin=stream), as Django's createsuperuser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--tenant", default="default", help="tenant slug (created if missing)")
        parser.add_argument("--tenant-name", default="", help="name for a new tenant")
        parser.add_argument("--role", default=StaffRole.OWNER, choices=StaffRole.values)
        parser.add_argument("--password", default=None,
                            help="default: prompt at a terminal; otherwise read from stdin, or generated and "
                                 "printed when stdin is empty")
        parser.add_argument("--generate", action="store_true", help="generate and print a password")

    def handle(self, *args: Any, **opts: Any) -> None:
        tenant = Tenant.objects.filter(slug=opts["tenant"]).first()
        try:
            if tenant is None:
                tenant = do_create_tenant(slug=opts["tenant"], name=opts["tenant_name"] or opts["tenant"])
            password, generated = self._password(opts)
            if len(password) < 8:
                raise CommandError("密码至少 8 位 / password needs at least 8 characters")
            do_create_operator(tenant=tenant, username=opts["username"], password=password, role=opts["role"])
        except ShequnError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(f"operator {opts['username']} ({opts['role']}) @ {tenant.slug}"))
        if generated:
            self.stdout.write(f"password: {password}")

    def _password(self, opts: dict[str, Any]) -> tuple[str, bool]:
        """(password, generated): ``--password``; ``--generate``; at a terminal, a prompt; otherwise
        the first line of stdin (``echo "$PW" | shequn createoperator …``), or — stdin empty or
        closed, as under cron or a container entrypoint — a generated one, printed once."""
        if opts["password"] is not None:
            return str(opts["password"]), False
        if opts["generate"]:
            return secrets.token_urlsafe(12), True
        stdin = opts.get("stdin") or sys.stdin
        if stdin is not None and stdin.isatty():
            first = getpass.getpass("密码 / password: ")
            if first != getpass.getpass("再输一次 / again: "):
                raise CommandError("两次输入的密码不一致 / the passwords differ")
            return first, False
        line = stdin.readline().rstrip("\r\n") if stdin is not None and not stdin.closed else ""
        if line:
            return line, False
        return secrets.token_urlsafe(12), True
