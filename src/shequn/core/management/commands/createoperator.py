"""``shequn createoperator``: a console login with a staff role in a tenant (creates the tenant)."""

from __future__ import annotations

import getpass
import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shequn.core.errors import ShequnError
from shequn.core.models import StaffRole, Tenant
from shequn.core.services import do_create_operator, do_create_tenant


class Command(BaseCommand):
    help = "Create (or reset) an operator login for a tenant."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--tenant", default="default", help="tenant slug (created if missing)")
        parser.add_argument("--tenant-name", default="", help="name for a new tenant")
        parser.add_argument("--role", default=StaffRole.OWNER, choices=StaffRole.values)
        parser.add_argument("--password", default=None, help="default: prompt, or generate with --generate")
        parser.add_argument("--generate", action="store_true", help="generate and print a password")

    def handle(self, *args: Any, **opts: Any) -> None:
        tenant = Tenant.objects.filter(slug=opts["tenant"]).first()
        try:
            if tenant is None:
                tenant = do_create_tenant(slug=opts["tenant"], name=opts["tenant_name"] or opts["tenant"])
            password = opts["password"]
            if password is None:
                password = secrets.token_urlsafe(9) if opts["generate"] else getpass.getpass("密码 / password: ")
            if len(password) < 8:
                raise CommandError("密码至少 8 位 / password needs at least 8 characters")
            do_create_operator(tenant=tenant, username=opts["username"], password=password, role=opts["role"])
        except ShequnError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(f"operator {opts['username']} ({opts['role']}) @ {tenant.slug}"))
        if opts["generate"]:
            self.stdout.write(f"password: {password}")
