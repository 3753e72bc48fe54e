"""``shequn moderation …`` — operators' tools for the moderation engine.

    shequn moderation classify [--community ID] [FILE|-]   JSON lines in, one verdict per line out
    shequn moderation check-pack FILE                      validate a community rule pack (line numbers)
    shequn moderation train-default                        rebuild data/model.json from data/labelled.jsonl
    shequn moderation retrain --tenant ID                  rebuild a tenant's model from moderator decisions

``classify`` input lines: ``{"text": ...}`` with optional ``member_joined_days``, ``message_index``
and ``group``, and an optional ``context`` object with what the product knows about the sender
(``member_joined_days``, ``message_index``, ``joined_without_invite``, ``same_text_other_groups``,
``messages_last_minute``, ``mentions``, ``sender_is_staff``; the flat fields are read too). A line
that is not JSON is classified as plain text, so no input line is lost; a context field of the wrong
type is ignored.
Output lines: ``{"verdict": "ad"|"ok"|"review", "score": float, "category": str|null, "reasons": [...]}``,
plus ``"exempt": true`` when the context says the sender is staff or a role holder (the engine
records such a message as exempt and acts on nothing; the verdict is what the text alone scores).
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from shequn.core.errors import NotFound
from shequn.moderation.classifier import write_default_model
from shequn.moderation.normalize import normalise
from shequn.moderation.pipeline import MessageContext, Moderator, text_hash
from shequn.moderation.rules import RulePackError, compile_pack
from shequn.moderation.selectors import moderator_for_community_id
from shequn.moderation.services import do_retrain_tenant_model


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _count(value: Any) -> int:
    number = _number(value)
    return max(0, int(number)) if number is not None else 0


def context_from(item: dict[str, Any]) -> tuple[MessageContext, bool]:
    """The sender's context of one input line: its ``context`` object, else the line's own fields.
    Returns the context and whether the sender is staff or a role holder (exempt)."""
    raw = item.get("context")
    src = raw if isinstance(raw, dict) else item
    idx = _number(src.get("message_index"))
    ctx = MessageContext(
        member_joined_days=_number(src.get("member_joined_days")),
        message_index=max(0, int(idx)) if idx is not None else None,
        messages_last_minute=_count(src.get("messages_last_minute")),
        same_text_other_groups=_count(src.get("same_text_other_groups")),
        mentions=_count(src.get("mentions")),
        joined_without_invite=src.get("joined_without_invite") is True,
    )
    exempt = any(src.get(k) is True for k in ("sender_is_staff", "exempt", "is_staff"))
    ctx.exempt = exempt
    return ctx, exempt


def classify_stream(moderator: Moderator, src: TextIO, out: Any) -> int:
    """Classify every line of ``src``; returns the number of lines written. Duplicate texts posted
    in several ``group``s within the stream count as ``duplicate_across_groups``."""
    groups_by_hash: dict[str, set[str]] = {}
    n = 0
    for raw in src:
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            item = {"text": line}
        if not isinstance(item, dict):
            item = {"text": item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)}
        text = item.get("text", "")
        if not isinstance(text, str):
            text = "" if text is None else json.dumps(text, ensure_ascii=False)
        group = item.get("group")
        group = str(group) if group is not None else None
        ctx, exempt = context_from(item)
        ctx.group = group
        if group is not None:
            h = text_hash(normalise(text).text)
            seen = groups_by_hash.setdefault(h, set())
            ctx.same_text_other_groups = max(ctx.same_text_other_groups, len(seen - {group}))
            seen.add(group)
        verdict = moderator.classify(text, ctx)
        row = verdict.as_json()
        if exempt:
            row["exempt"] = True
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        n += 1
    out.flush()
    return n


class Command(BaseCommand):
    help = "内容审核工具: classify / check-pack / train-default / retrain"

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="sub", required=True)
        c = sub.add_parser("classify", help=_("逐行判定 JSON lines 中的消息"))
        c.add_argument("--community", type=int, default=None, help=_("社群 ID (使用该社群的规则包和模型)"))
        c.add_argument("file", nargs="?", default="-", help=_("输入文件, - 为标准输入"))
        k = sub.add_parser("check-pack", help=_("校验社群规则包文件"))
        k.add_argument("file")
        sub.add_parser("train-default", help=_("用内置标注集重新训练默认模型"))
        r = sub.add_parser("retrain", help=_("用审核结果重新训练某组织的模型"))
        r.add_argument("--tenant", type=int, required=True)

    def handle(self, *args: Any, **opts: Any) -> None:
        sub = opts["sub"]
        if sub == "classify":
            moderator = self._moderator(opts.get("community"))
            path = opts["file"]
            if path == "-":
                classify_stream(moderator, sys.stdin, self.stdout)
            else:
                try:
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        classify_stream(moderator, fh, self.stdout)
                except OSError as exc:
                    raise CommandError(_("无法读取文件 %(f)s: %(e)s") % {"f": path, "e": exc.strerror}) from exc
        elif sub == "check-pack":
            try:
                with open(opts["file"], encoding="utf-8") as fh:
                    text = fh.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(_("无法读取文件 %(f)s: %(e)s") % {"f": opts["file"], "e": exc}) from exc
            try:
                pack = compile_pack(text)
            except RulePackError as exc:
                for err in exc.errors:
                    self.stderr.write(f"{opts['file']}:{err.line}: {err.message}")
                raise CommandError(_("规则包有 %(n)d 处错误") % {"n": len(exc.errors)}) from exc
            self.stdout.write(_("规则包有效: %(n)d 条规则") % {"n": len(pack.pack.rules)})
        elif sub == "train-default":
            self.stdout.write(str(write_default_model()))
        elif sub == "retrain":
            model = do_retrain_tenant_model(opts["tenant"])
            self.stdout.write(_("已重新训练: %(n)d 条审核样本") % {"n": model.examples})

    def _moderator(self, community_id: int | None) -> Moderator:
        if community_id is None:
            return Moderator()

        try:
            return moderator_for_community_id(community_id)
        except NotFound as exc:
            raise CommandError(exc.message) from exc
        except RulePackError as exc:
            raise CommandError(str(exc)) from exc
