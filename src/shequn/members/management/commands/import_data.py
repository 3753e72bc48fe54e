"""``shequn import members FILE``: import seed users from CSV/XLSX (all-or-nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shequn.core.errors import ShequnError
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.members.importing import do_import_members


class Command(BaseCommand):
    help = "Import data. Usage: shequn import members FILE [--tenant SLUG] [--dry-run]"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("what", choices=["members"])
        parser.add_argument("file")
        parser.add_argument("--tenant", default=None, help="tenant slug (default: the only tenant)")
        parser.add_argument("--dry-run", action="store_true", help="check the file, write nothing")

    def handle(self, *args: Any, **opts: Any) -> None:
        tenant = _tenant(opts["tenant"])
        path = Path(opts["file"])
        if not path.is_file():
            raise CommandError(f"文件不存在 / no such file: {path}")
        try:
            report = do_import_members(Principal.system(tenant.pk, "cli import"), path.name, path.read_bytes(),
                                       dry_run=opts["dry_run"])
        except ShequnError as exc:
            raise CommandError(exc.message) from exc
        for err in report.errors:
            self.stderr.write(f"第 {err.row} 行 [{err.column}] {err.message}")
        if report.errors:
            raise CommandError(f"{len(report.errors)} 个错误, 未导入任何数据 / nothing imported")
        verb = "检查通过" if opts["dry_run"] else "已导入"
        self.stdout.write(self.style.SUCCESS(f"{verb} {report.rows} 行, 新建 {report.created} 位会员"))


def _tenant(slug: str | None) -> Tenant:
    if slug:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"组织不存在 / no tenant: {slug}")
        return tenant
    tenants = list(Tenant.objects.all()[:2])
    if len(tenants) != 1:
        raise CommandError("请用 --tenant 指定组织 / pass --tenant")
    return tenants[0]
