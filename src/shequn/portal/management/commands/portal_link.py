"""``shequn portal_link --tenant SLUG --member ID``: print a one-time magic sign-in link for a member
(valid 15 minutes), for an operator or a bot to send in chat; ``--demo`` picks the demo tenant's
member with the most available commission, so the loop can be walked at once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shequn.core.models import DEMO_SLUG, Tenant
from shequn.members.models import Member
from shequn.portal.services import demo_member, magic_link_url


class Command(BaseCommand):
    help = "Print a one-time magic sign-in link to the members' pages (valid 15 minutes)"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="tenant slug")
        parser.add_argument("--member", type=int, help="member id")
        parser.add_argument("--demo", action="store_true", help="the demo tenant's top earner")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["demo"]:
            opts["tenant"] = opts["tenant"] or DEMO_SLUG
        tenant = Tenant.objects.filter(slug=opts["tenant"] or "").first()
        if tenant is None:
            raise CommandError("unknown tenant (--tenant SLUG)")
        member = None
        if opts["member"]:
            member = Member.objects.filter(tenant=tenant, pk=opts["member"], merged_into__isnull=True).first()
        elif opts["demo"]:
            member = demo_member(tenant)
        if member is None:
            raise CommandError("unknown member (--member ID)")
        self.stdout.write(f"{member.display_name}: {magic_link_url(member, tenant)}")
