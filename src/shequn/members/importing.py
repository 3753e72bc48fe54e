"""Import of seed users from CSV/XLSX (all-or-nothing, with a per-row error report) and export.

Operators' spreadsheets come from Excel in GBK as often as in UTF-8; both are read. Every error
names the row (as the operator sees it in the spreadsheet: header = row 1) and the column."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import models, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from openpyxl import Workbook, load_workbook

from shequn.core.errors import Invalid
from shequn.core.masking import mask_email, mask_phone
from shequn.core.models import Platform
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from .models import Identity, Member, Tag
from .registry import placement
from .selectors import members as all_members
from .selectors import search_members
from .services import check_email, check_phone, do_create_member

#: accepted headers (Chinese or English) → field
COLUMNS = {
    "昵称": "display_name", "姓名": "display_name", "display_name": "display_name", "name": "display_name",
    "手机号": "phone", "手机": "phone", "phone": "phone",
    "邮箱": "email", "email": "email",
    "来源": "source_channel", "来源渠道": "source_channel", "source_channel": "source_channel",
    "source": "source_channel",
    "标签": "tags", "tags": "tags",
    "平台": "platform", "platform": "platform",
    "平台账号": "external_id", "external_id": "external_id",
    "社群": "community", "community": "community",
    "备注": "note", "note": "note",
    "同意营销": "consent_marketing", "consent_marketing": "consent_marketing",
}
REQUIRED = ("display_name",)
MAX_ROWS = 50_000
_TRUE = {"1", "true", "yes", "y", "是", "同意", "√"}
_PLATFORM_ALIASES = {"企业微信": "wecom", "企微": "wecom", "电报": "telegram", **{p: p for p in Platform.values}}


@dataclass
class RowError:
    row: int
    column: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "created": self.created, "errors": [e.as_dict() for e in self.errors]}


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM) first, then GB18030 (a superset of GBK/GB2312)."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    # neither: name the line of the first undecodable byte
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise Invalid(_("第 %(line)d 行无法识别文件编码 (请保存为 UTF-8 或 GBK)") % {"line": line},
                      details=[{"row": line, "column": "", "message": "encoding"}]) from exc
    raise AssertionError("unreachable")


def read_table(filename: str, data: bytes) -> tuple[list[str], Iterator[list[Any]]]:
    """Return (header, rows) of a CSV or XLSX file."""
    if filename.lower().endswith((".xlsx", ".xlsm")):
        try:
            wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as exc:
            raise Invalid(_("无法读取 Excel 文件: %(e)s") % {"e": type(exc).__name__},
                          details=[{"row": 0, "column": "", "message": "xlsx"}]) from exc
        ws = wb.worksheets[0]
        it = ws.iter_rows(values_only=True)
        header = [str(c or "").strip() for c in next(it, ())]
        return header, (list(r) for r in it)
    text = decode_text(data)
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    return header, reader


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _check_length(err: Callable[[str, str], None], column: str, value: str, model: type[models.Model],
                  name: str) -> None:
    """A value longer than its column is a row error (never truncated into something else)."""
    limit = model._meta.get_field(name).max_length  # type: ignore[union-attr]
    if limit and len(value) > limit:
        err(column, _("不能超过 %(n)d 个字符 (现有 %(m)d 个)") % {"n": limit, "m": len(value)})


def check_member_rows(tenant_id: int, filename: str, data: bytes) -> tuple[list[dict[str, Any]], ImportReport]:
    """Validate a whole file without writing anything. Returns the clean rows and the report."""
    report = ImportReport()
    header, rows = read_table(filename, data)
    if not any(header):
        report.errors.append(RowError(1, "", _("文件为空或缺少表头")))
        return [], report
    fields: list[str | None] = []
    for name in header:
        key = COLUMNS.get(name) or COLUMNS.get(name.lower())
        if key is None and name:
            report.errors.append(RowError(1, name, _("未知的列: %(c)s") % {"c": name}))
        fields.append(key)
    for req in REQUIRED:
        if req not in fields:
            report.errors.append(RowError(1, req, _("缺少必填列: %(c)s") % {"c": "昵称 (display_name)"}))
    if report.errors:
        return [], report

    communities = placement().community_ids(tenant_id)
    seen_phone: dict[str, int] = {}
    seen_ident: dict[tuple[str, str], int] = {}
    clean: list[dict[str, Any]] = []
    for offset, raw in enumerate(rows):
        rownum = offset + 2
        if offset >= MAX_ROWS:
            report.errors.append(RowError(rownum, "", _("一次最多导入 %(n)d 行") % {"n": MAX_ROWS}))
            break
        values = {f: _cell(v) for f, v in zip(fields, raw, strict=False) if f}
        if not any(values.values()):
            continue  # blank line
        report.rows += 1
        row: dict[str, Any] = {"_row": rownum}
        errs_before = len(report.errors)

        def err(column: str, message: str, rownum: int = rownum) -> None:
            report.errors.append(RowError(rownum, column, message))

        name = values.get("display_name", "")
        if not name:
            err("昵称", _("昵称不能为空"))
        _check_length(err, "昵称", name, Member, "display_name")
        row["display_name"] = name
        try:
            row["phone"] = check_phone(values.get("phone"))
        except Invalid:
            err("手机号", _("手机号格式不正确: %(v)s") % {"v": values.get("phone")})
        try:
            row["email"] = check_email(values.get("email"))
        except Invalid:
            err("邮箱", _("邮箱格式不正确: %(v)s") % {"v": values.get("email")})
        platform = values.get("platform", "")
        external_id = values.get("external_id", "")
        if platform or external_id:
            platform = _PLATFORM_ALIASES.get(platform, _PLATFORM_ALIASES.get(platform.lower(), ""))
            if not platform:
                err("平台", _("未知的平台: %(v)s") % {"v": values.get("platform")})
            if not external_id:
                err("平台账号", _("填写了平台时平台账号不能为空"))
        row["platform"], row["external_id"] = platform, external_id
        community = values.get("community", "")
        if community and community not in communities:
            err("社群", _("社群不存在: %(v)s") % {"v": community})
        row["community_id"] = communities.get(community)
        _check_length(err, "平台账号", external_id, Identity, "external_id")
        row["tags"] = [t.strip() for t in values.get("tags", "").replace("，", ";").replace(",", ";").split(";")
                       if t.strip()]
        for tag in row["tags"]:
            _check_length(err, "标签", tag, Tag, "name")
        _check_length(err, "来源渠道", values.get("source_channel", ""), Member, "source_channel")
        row["source_channel"] = values.get("source_channel", "") or "import"
        row["note"] = values.get("note", "")
        row["consent_marketing"] = values.get("consent_marketing", "").lower() in _TRUE
        if len(report.errors) == errs_before:
            if row["phone"]:
                if row["phone"] in seen_phone:
                    err("手机号", _("与第 %(r)d 行重复") % {"r": seen_phone[row["phone"]]})
                seen_phone.setdefault(row["phone"], rownum)
            if platform and external_id:
                ident = (platform, external_id)
                if ident in seen_ident:
                    err("平台账号", _("与第 %(r)d 行重复") % {"r": seen_ident[ident]})
                seen_ident.setdefault(ident, rownum)
            clean.append(row)
    if report.rows == 0 and not report.errors:
        report.errors.append(RowError(2, "", _("文件没有数据行 (只有表头)")))
    # conflicts with members already in the tenant
    phones = [r["phone"] for r in clean if r["phone"]]
    taken_phones = set(Member.objects.filter(tenant_id=tenant_id, phone__in=phones, merged_into__isnull=True)
                       .values_list("phone", flat=True)) if phones else set()
    taken_idents = set()
    for platform in {r["platform"] for r in clean if r["platform"]}:
        ids = [r["external_id"] for r in clean if r["platform"] == platform]
        taken_idents |= {(platform, e) for e in Identity.objects.filter(
            tenant_id=tenant_id, platform=platform, external_id__in=ids).values_list("external_id", flat=True)}
    for r in clean:
        if r["phone"] in taken_phones:
            report.errors.append(RowError(r["_row"], "手机号", _("该手机号的会员已存在")))
        if (r["platform"], r["external_id"]) in taken_idents:
            report.errors.append(RowError(r["_row"], "平台账号", _("该平台账号的会员已存在")))
    report.errors.sort(key=lambda e: (e.row, e.column))
    return clean, report


def do_import_members(principal: Principal, filename: str, data: bytes, *, dry_run: bool = False) -> ImportReport:
    """Validate the whole file, then apply it in one transaction — or apply nothing at all."""
    clean, report = check_member_rows(principal.tenant_id, filename, data)
    if report.errors or dry_run:
        return report
    now = timezone.now()
    with transaction.atomic():
        joins: list[tuple[int, int]] = []
        for row in clean:
            identities = ([{"platform": row["platform"], "external_id": row["external_id"], "verified": False}]
                          if row["platform"] else [])
            member = do_create_member(
                principal, display_name=row["display_name"], phone=row["phone"], email=row["email"],
                source_channel=row["source_channel"], consent_marketing=row["consent_marketing"],
                identities=identities, tags=row["tags"], note=row["note"],
            )
            if row["community_id"]:
                joins.append((member.pk, row["community_id"]))
            report.created += 1
        placement().record_imported_joins(principal.tenant_id, joins, now)
        do_audit(principal, "member.import", "Import", filename[:64], data={"created": report.created})
    return report


EXPORT_HEADER = ["ID", "昵称", "手机号", "邮箱", "来源", "生命周期", "关系等级", "标签", "首次出现", "最近活跃"]


def export_rows(tenant_id: int, members: QuerySet[Member] | None = None) -> Iterator[list[str]]:
    """Member rows for export (every member of the tenant, or ``members``: a queryset already scoped
    to the tenant, e.g. from ``selectors.search_members``); phone numbers and e-mails always masked."""
    qs = (members if members is not None else all_members(tenant_id)).filter(tenant_id=tenant_id)
    for m in qs.prefetch_related("member_tags__tag").order_by("pk").iterator(chunk_size=2000):
        yield [
            str(m.pk), m.display_name, mask_phone(m.phone), mask_email(m.email), m.source_channel,
            m.get_lifecycle_stage_display(), m.get_relationship_level_display(),
            ";".join(t.tag.name for t in m.member_tags.all()),
            timezone.localtime(m.first_seen_at).strftime("%Y-%m-%d %H:%M"),
            timezone.localtime(m.last_active_at).strftime("%Y-%m-%d %H:%M") if m.last_active_at else "",
        ]


def _csv(rows: Iterable[list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(EXPORT_HEADER)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8-sig")  # BOM: Excel opens it as UTF-8


def _xlsx(rows: Iterable[list[str]]) -> bytes:
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("会员")
    ws.append(EXPORT_HEADER)
    for row in rows:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def export_csv(tenant_id: int, members: QuerySet[Member] | None = None) -> bytes:
    return _csv(export_rows(tenant_id, members))


def export_xlsx(tenant_id: int, members: QuerySet[Member] | None = None) -> bytes:
    return _xlsx(export_rows(tenant_id, members))


#: the member list's filters that an export honours (``GET /api/v1/members`` takes the same)
EXPORT_FILTERS = ("q", "tag", "lifecycle", "community_id", "role", "relationship_level")


def do_export_members(principal: Principal, fmt: str, *, selection: QuerySet[Member] | None = None,
                      **filters: Any) -> bytes:
    """Export the tenant's members matching the member list's ``filters`` (or exactly ``selection``,
    the console rows an operator selected — re-scoped to the tenant) as ``csv`` or ``xlsx``, phone
    numbers and e-mails masked. Audited (``member.export``): who exported (the staff user or API key
    of ``principal``), the format, the filters and how many rows left the system."""
    if fmt not in ("csv", "xlsx"):
        raise Invalid(_("只支持导出 CSV 或 XLSX"), details={"field": "format"})
    unknown = set(filters) - set(EXPORT_FILTERS)
    if unknown:
        raise Invalid(_("未知的筛选条件: %(f)s") % {"f": ", ".join(sorted(unknown))},
                      details={"field": sorted(unknown)[0]})
    used: dict[str, Any] = {k: v for k, v in filters.items() if v not in (None, "")}
    if selection is not None:
        qs = selection.filter(tenant_id=principal.tenant_id)
        used = {"selection": True}
    else:
        qs = search_members(principal.tenant_id, **used)
    count = 0

    def counted() -> Iterator[list[str]]:
        nonlocal count
        for row in export_rows(principal.tenant_id, qs):
            count += 1
            yield row

    body = _xlsx(counted()) if fmt == "xlsx" else _csv(counted())
    do_audit(principal, "member.export", "Member", "*", data={"format": fmt, "filters": used, "rows": count})
    return body
