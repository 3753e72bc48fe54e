"""``shequn apikey create|list|revoke``: mint and manage a tenant's API keys from the command line
(the same service as the console and ``POST /api/v1/api-keys``; every change is audited).

    shequn apikey create --tenant my-club --name erp --scopes members.read commerce.write
    shequn apikey list --tenant my-club
    shequn apikey revoke --tenant my-club 12

``create`` prints the secret once (it is stored hashed); the other lines go to stderr so that
``SECRET=$(shequn apikey create …)`` captures the secret alone."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shequn.core.errors import ShequnError
from shequn.core.models import ApiKey, Tenant
from shequn.core.permissions import Principal
from shequn.core.selectors import api_keys
from shequn.core.services import do_create_api_key, do_revoke_api_key


class Command(BaseCommand):
    help = "Create, list or revoke a tenant's API keys."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a key and print its secret once")
        create.add_argument("--tenant", required=True, help="tenant slug")
        create.add_argument("--name", required=True)
        create.add_argument("--scopes", nargs="+", required=True,
                            help="`*`, `<area>.read` or `<area>.write` (space or comma separated)")
        listing = sub.add_parser("list", help="list keys (never the secret)")
        listing.add_argument("--tenant", required=True)
        revoke = sub.add_parser("revoke", help="revoke a key by id")
        revoke.add_argument("--tenant", required=True)
        revoke.add_argument("key_id", type=int)

    def _tenant(self, slug: str) -> Tenant:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"租户不存在 / unknown tenant: {slug}")
        return tenant

    def handle(self, *args: Any, **opts: Any) -> None:
        tenant = self._tenant(opts["tenant"])
        principal = Principal.system(tenant.pk, label="cli")
        try:
            if opts["action"] == "create":
                scopes = [s for raw in opts["scopes"] for s in raw.split(",") if s]
                name = opts["name"].strip()
                if not name or len(name) > ApiKey._meta.get_field("name").max_length:  # type: ignore[operator]
                    raise CommandError("名称不能为空且不能过长 / name is empty or too long")
                key, secret = do_create_api_key(principal, name=name, scopes=scopes)
                self.stderr.write(f"API key #{key.pk} {key.name} ({', '.join(key.scopes)}) @ {tenant.slug}; "
                                  "the secret is shown once:")
                self.stdout.write(secret)
            elif opts["action"] == "list":
                for key in api_keys(tenant.pk):
                    state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
                    self.stdout.write(f"{key.pk}\t{key.prefix}\t{key.name}\t{','.join(key.scopes)}\t{state}")
            else:
                found = api_keys(tenant.pk).filter(pk=opts["key_id"]).first()
                if found is None:
                    raise CommandError(f"API 密钥不存在 / no such key: {opts['key_id']}")
                do_revoke_api_key(principal, found)
                self.stdout.write(f"revoked {found.pk} {found.name}")
        except ShequnError as exc:
            raise CommandError(exc.message) from exc
