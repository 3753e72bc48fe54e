"""``shequn lottery verify FILE`` — re-derive a lottery's winners from its published record.
``shequn lottery export ID --tenant SLUG`` — print the published record of a drawn lottery."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shequn.core.models import Tenant
from shequn.engagement.fairness import verify
from shequn.engagement.selectors import get_lottery, lottery_public_record


class Command(BaseCommand):
    help = "抽奖公证: verify FILE 校验公开记录并重新推导中奖者; export ID 导出公开记录"

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        v = sub.add_parser("verify", help="校验公开记录 (JSON 文件, - 表示标准输入)")
        v.add_argument("file")
        e = sub.add_parser("export", help="导出公开记录")
        e.add_argument("lottery_id", type=int)
        e.add_argument("--tenant", required=True, help="组织标识 (slug)")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["action"] == "verify":
            self._verify(opts["file"])
        else:
            self._export(opts["lottery_id"], opts["tenant"])

    def _verify(self, path: str) -> None:
        try:
            text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
            record = json.loads(text)
        except (OSError, ValueError) as exc:
            raise CommandError(f"无法读取 {path}: {exc}") from exc
        if not isinstance(record, dict):
            raise CommandError("记录必须是 JSON 对象")
        result = verify(record)
        for w in result.winners:
            self.stdout.write(f"#{w['position']} {w['prize']} → {w['entrant']}")
        for r in result.rerolls:
            self.stdout.write(f"reroll #{r['position']} {r['prize']}: {r['forfeited']} → {r['entrant']}")
        if not result.ok:
            for p in result.problems:
                self.stderr.write(f"FAIL: {p}")
            raise CommandError("校验失败 (verification failed)")
        self.stdout.write(self.style.SUCCESS("OK: 种子、快照承诺与中奖者全部一致 (verified)"))

    def _export(self, lottery_id: int, slug: str) -> None:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"组织不存在: {slug}")
        rec = lottery_public_record(get_lottery(tenant.pk, lottery_id))
        self.stdout.write(json.dumps(rec, ensure_ascii=False, indent=2, sort_keys=True))
