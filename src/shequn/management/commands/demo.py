"""``shequn demo``: migrate, seed the demo tenant, create the operator login, start the worker and
serve the console at http://127.0.0.1:8000, with the members' pages (portal) beside it and a
one-click sign-in link for a demo member. Running it twice reuses what the first run made.

The worker and the web server are supervised children (:mod:`shequn.core.processes`): stopping the
demo stops them (no orphans), and a second demo on the same installation starts no second cron
scheduler (the worker's scheduler lock)."""

from __future__ import annotations

import ipaddress
import os
import secrets
import sys
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from shequn.core.management.commands.serve import gunicorn_argv
from shequn.core.models import DEMO_SLUG, StaffRole, Tenant
from shequn.core.processes import spawn, stop, supervise
from shequn.core.services import do_create_operator
from shequn.demo import demo_exists, seed_demo
from shequn.portal.services import MAGIC_TTL, demo_member, magic_link_url

USERNAME = "operator"


def _unspecified(host: str) -> bool:
    """A listen-on-every-interface address, which is no address to put in a link."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


class Command(BaseCommand):
    help = "Start the demo: SQLite, seeded data, console at http://127.0.0.1:8000"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument("--members", type=int, default=2000)
        parser.add_argument("--no-serve", action="store_true", help="prepare everything, then exit")
        parser.add_argument("--no-worker", action="store_true", help="don't start the background worker")

    def handle(self, *args: Any, **opts: Any) -> None:
        self.stdout.write("· 数据库迁移 / migrating …")
        call_command("migrate", interactive=False, verbosity=0)
        if not demo_exists():
            self.stdout.write("· 生成演示数据 / seeding demo data (about a minute) …")
        # idempotent: a second run only adds engine data an older demo tenant lacks
        seed_demo(members=opts["members"], progress=lambda m: self.stdout.write(f"  {m}"))
        tenant = Tenant.objects.get(slug=DEMO_SLUG)
        password = self._password()
        do_create_operator(tenant=tenant, username=USERNAME, password=password, role=StaffRole.OWNER,
                           display_name="演示运营")
        base = self._public_base(opts["host"], opts["port"])
        member = demo_member(tenant)
        minutes = int(MAGIC_TTL.total_seconds() // 60)
        portal = (f"\n  会员页面 / members' pages: {base}/portal/{tenant.slug}/"
                  + (f"\n  演示会员一键登录 / demo member sign-in ({member.display_name}, {minutes} min, one use):"
                     f"\n    {magic_link_url(member, tenant)}"
                     f"\n    (a fresh one: python -m shequn.cli portal_link --demo)" if member is not None else ""))
        self.stdout.write(self.style.SUCCESS(
            f"\n  shequn 社群运营台: {base}/console/\n  账号 / username: {USERNAME}\n  密码 / password: {password}"
            f"{portal}\n"
        ))
        if opts["no_serve"]:
            return
        os.environ["SHEQUN_PUBLIC_BASE_URL"] = base  # the server's and the worker's processes
        # the web server and the worker are children of this process (not an exec): stopping the demo
        # (Ctrl-C, SIGTERM, closing the terminal) stops both, and they die with it if it is killed
        children = [] if opts["no_worker"] else [spawn([sys.executable, "-m", "shequn.cli", "worker"])]
        try:
            web = spawn(gunicorn_argv(opts["host"], opts["port"], workers=opts["workers"]))
        except BaseException:
            stop(children)
            raise
        code = supervise(web, children)
        if code:
            raise SystemExit(code)

    @staticmethod
    def _public_base(host: str, port: int) -> str:
        """The address members reach: ``SHEQUN_PUBLIC_BASE_URL`` when set, else this server's own
        address, set for this process (and, when serving, the ones it starts) (links, QR codes, posters, payment
        notify URLs are built on it)."""
        configured = str(settings.SHEQUN.get("PUBLIC_BASE_URL") or "").rstrip("/")
        if configured:
            return configured
        shown = "127.0.0.1" if _unspecified(host) else host
        base = f"http://{shown}:{port}"
        settings.SHEQUN = {**settings.SHEQUN, "PUBLIC_BASE_URL": base}
        return base

    def _password(self) -> str:
        """One password per installation, kept beside the database (0600) so a second run prints the same."""
        path = settings.HOME / "demo_password"
        if path.exists():
            return path.read_text().strip()
        password = secrets.token_urlsafe(9)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password)
        return password
