"""REST API of the members app (``/api/v1/members/``).

Thin handlers over ``members.services`` / ``selectors`` / ``importing``. Phone numbers and e-mails
are masked everywhere except the single-member GET for callers with ``members.write``."""


import datetime as dt
from typing import Annotated, Any, Literal

from django.db import transaction
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from ninja import Field, File, Form, Query, Router, Schema, Status, UploadedFile
from ninja.params import P, QueryEx

from shequn.core.errors import Invalid, NotFound
from shequn.core.http import ERRORS, BodyIn, Id, idempotent, max_len, patch_changes, require
from shequn.core.masking import mask_email, mask_phone
from shequn.core.middleware_api import register_body_rule
from shequn.core.models import Platform
from shequn.core.pagination import KeysetPagination, paginate

from . import importing, selectors
from .models import Identity, LifecycleStage, Member, MemberTag, RelationshipLevel, Tag
from .services import (
    do_add_identity,
    do_create_member,
    do_erase_member,
    do_export_member,
    do_merge_members,
    do_tag_member,
    do_untag_member,
    do_update_member,
)

router = Router(tags=["members"])

#: the largest member import file; the upload is multipart (the one non-JSON body of the app)
MAX_IMPORT_BYTES = 20 * 1024 * 1024
register_body_rule(r"^/api/v1/members/import$", content_types=("multipart/form-data",),
                   max_body=MAX_IMPORT_BYTES + 64 * 1024)
TagName = Annotated[str, Field(min_length=1, max_length=max_len(Tag, "name"))]
#: a member's free-text note
MAX_NOTE = 10_000

PlatformName = Literal["wecom", "telegram", "matrix", "portal", "manual"]
assert set(PlatformName.__args__) == set(Platform.values)  # type: ignore[attr-defined]
LifecycleName = Literal["new", "active", "lurking", "dormant", "churned"]
assert set(LifecycleName.__args__) == set(LifecycleStage.values)  # type: ignore[attr-defined]
#: communities.CommunityRole's values (members is below communities; a test keeps the two equal)
RoleName = Literal["owner", "advocate", "cs", "content", "guest"]


# --- schemas ------------------------------------------------------------------------------------

class IdentityIn(BodyIn):
    platform: PlatformName
    external_id: str = Field(min_length=1, max_length=max_len(Identity, "external_id"))
    display_name: str = Field("", max_length=max_len(Identity, "display_name"))
    verified: bool = False


class IdentityOut(Schema):
    id: int
    platform: str
    external_id: str
    display_name: str
    verified: bool


class TagOut(Schema):
    id: int
    name: str
    scope: str


class MemberListOut(Schema):
    """A member in a list: phone and e-mail masked."""

    id: int
    display_name: str
    phone: str
    email: str
    source_channel: str
    lifecycle_stage: str
    relationship_level: int
    first_seen_at: dt.datetime
    last_active_at: dt.datetime | None
    merged_into_id: int | None
    tags: list[TagOut]


class MemberOut(MemberListOut):
    """One member; ``phone``/``email`` are full only for callers with ``members.write``."""

    contact_masked: bool
    consent_marketing: bool
    consent_data: bool
    note: str
    created_at: dt.datetime
    identities: list[IdentityOut]


class MemberIn(BodyIn):
    display_name: str = Field(min_length=1, max_length=max_len(Member, "display_name"))
    phone: str = Field("", max_length=32)
    email: str = Field("", max_length=max_len(Member, "email"))
    source_channel: str = Field("", max_length=max_len(Member, "source_channel"))
    consent_marketing: bool = False
    note: str = Field("", max_length=MAX_NOTE)
    identities: list[IdentityIn] = Field(default_factory=list, max_length=20)
    tags: list[TagName] = Field(default_factory=list, max_length=50)


class MemberPatch(BodyIn):
    display_name: str | None = Field(None, min_length=1, max_length=max_len(Member, "display_name"))
    phone: str | None = Field(None, max_length=32)
    email: str | None = Field(None, max_length=max_len(Member, "email"))
    source_channel: str | None = Field(None, max_length=max_len(Member, "source_channel"))
    consent_marketing: bool | None = None
    consent_data: bool | None = None
    note: str | None = Field(None, max_length=MAX_NOTE)
    lifecycle_stage: LifecycleName | None = None
    relationship_level: int | None = Field(None, ge=RelationshipLevel.CUSTOMER, le=RelationshipLevel.SHAREHOLDER)


class TagsIn(BodyIn):
    tags: list[TagName] = Field(min_length=1, max_length=50)


class MergeIn(BodyIn):
    keep_id: Id
    merge_id: Id
    reason: str = Field("", max_length=500)


class MergeSuggestionOut(Schema):
    reason: str = Field(description="phone | email: the exact field the members share")
    member_ids: list[int]


class ImportErrorOut(Schema):
    row: int
    column: str
    message: str


class ImportReportOut(Schema):
    ok: bool
    dry_run: bool
    applied: bool
    rows: int
    created: int
    errors: list[ImportErrorOut]


class MemberFilter(Schema):
    """The member list's filters (paging: `KeysetPagination`); an export is every matching member."""

    q: str | None = Field(None, description="nickname contains, exact phone or exact platform account")
    tag: str | None = None
    lifecycle: LifecycleName | None = None
    community_id: Id | None = None
    role: RoleName | None = Field(None, description="members currently holding this community role")
    relationship_level: int | None = Field(None, ge=RelationshipLevel.CUSTOMER, le=RelationshipLevel.SHAREHOLDER)


# --- helpers ------------------------------------------------------------------------------------

def _tags_of(m: Member) -> list[dict[str, Any]]:
    return [{"id": mt.tag.pk, "name": mt.tag.name, "scope": mt.tag.scope} for mt in m.member_tags.all()]


def _list_out(m: Member) -> dict[str, Any]:
    return {
        "id": m.pk, "display_name": m.display_name, "phone": mask_phone(m.phone), "email": mask_email(m.email),
        "source_channel": m.source_channel, "lifecycle_stage": m.lifecycle_stage,
        "relationship_level": m.relationship_level, "first_seen_at": m.first_seen_at,
        "last_active_at": m.last_active_at, "merged_into_id": m.merged_into_id, "tags": _tags_of(m),
    }


def _with_related(qs: Any) -> Any:
    return qs.prefetch_related(Prefetch("member_tags", queryset=MemberTag.objects.select_related("tag")))


def member_out(tenant_id: int, member_id: Id, *, full_contact: bool) -> MemberOut:
    m = _with_related(Member.objects.filter(tenant_id=tenant_id, pk=member_id)).first()
    if m is None:
        raise NotFound(_("会员不存在"), details={"member_id": member_id})
    out = _list_out(m)
    if full_contact:
        out["phone"], out["email"] = m.phone, m.email
    out.update(
        contact_masked=not full_contact, consent_marketing=m.consent_marketing, consent_data=m.consent_data,
        note=m.note, created_at=m.created_at,
        identities=[{"id": i.pk, "platform": i.platform, "external_id": i.external_id,
                     "display_name": i.display_name, "verified": i.verified}
                    for i in selectors.identities(tenant_id, m.pk)],
    )
    return MemberOut(**out)


# --- endpoints ----------------------------------------------------------------------------------

@router.get("", response={200: list[MemberListOut], **ERRORS}, summary="会员列表")
@paginate(KeysetPagination, item=_list_out)
def list_members(request: HttpRequest, filters: Query[MemberFilter]) -> Any:
    p = require(request, "members.read")
    qs = selectors.search_members(
        p.tenant_id, q=filters.q or "", tag=filters.tag or "", lifecycle=filters.lifecycle or "",
        community_id=filters.community_id, role=filters.role or "", relationship_level=filters.relationship_level,
    )
    return _with_related(qs)


@router.post("", response={201: MemberOut, **ERRORS}, summary="创建会员")
@idempotent
def create_member(request: HttpRequest, payload: MemberIn) -> Any:
    p = require(request, "members.write")
    member = do_create_member(
        p, display_name=payload.display_name, phone=payload.phone, email=payload.email,
        source_channel=payload.source_channel, consent_marketing=payload.consent_marketing, note=payload.note,
        identities=[i.model_dump() for i in payload.identities], tags=[t for t in payload.tags if t.strip()],
    )
    return Status(201, member_out(p.tenant_id, member.pk, full_contact=True))


@router.get("/merge-suggestions", response={200: list[MergeSuggestionOut], **ERRORS}, summary="合并建议")
def merge_suggestions(request: HttpRequest, limit: QueryEx[int, P(ge=1, le=500)] = 100) -> Any:
    p = require(request, "members.read")
    return selectors.merge_suggestions(p.tenant_id, limit=limit)


@router.post("/merge", response={200: MemberOut, **ERRORS}, summary="合并会员 (把 merge_id 并入 keep_id)")
@idempotent
def merge_members(request: HttpRequest, payload: MergeIn) -> Any:
    p = require(request, "members.write")
    keep = selectors.get_member(p.tenant_id, payload.keep_id)
    merge = selectors.get_member(p.tenant_id, payload.merge_id)
    kept = do_merge_members(p, keep=keep, merge=merge, reason=payload.reason)
    return member_out(p.tenant_id, kept.pk, full_contact=True)


@router.post("/import", response={200: ImportReportOut, **ERRORS}, summary="导入会员 (CSV/XLSX, 全部成功或全部不导入)")
@idempotent
def import_members(request: HttpRequest, file: File[UploadedFile], dry_run: Form[bool] = False) -> Any:
    """Validates the whole file first. Any error → 422 whose ``details`` is the report (every error
    names the row as seen in the spreadsheet, header = row 1, and the column); nothing is written.
    ``dry_run`` validates only."""
    p = require(request, "members.write")
    name = file.name or "upload.csv"
    if not name.lower().endswith((".csv", ".xlsx", ".xlsm", ".txt")):
        raise Invalid(_("只支持 CSV 或 XLSX 文件"), details=[{"row": 0, "column": "", "message": "file type"}])
    if file.size and file.size > MAX_IMPORT_BYTES:
        raise Invalid(_("文件过大 (上限 20 MB)"), details=[{"row": 0, "column": "", "message": "file size"}])
    report = importing.do_import_members(p, name, file.read(), dry_run=dry_run)
    out = {"ok": report.ok, "dry_run": dry_run, "applied": report.ok and not dry_run, **report.as_dict()}
    if not report.ok:
        raise Invalid(_("导入文件有 %(n)d 处错误, 没有导入任何数据") % {"n": len(report.errors)}, code="import_invalid",
                      details=out)
    return ImportReportOut(**out)


@router.get("/export", response={200: None, **ERRORS}, summary="导出会员 (手机号、邮箱已脱敏)",
            openapi_extra={"responses": {200: {"description": "CSV (UTF-8 with BOM) or XLSX file", "content": {
                "text/csv": {"schema": {"type": "string", "format": "binary"}},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                    "schema": {"type": "string", "format": "binary"}}}}}})
def export_members(request: HttpRequest, filters: Query[MemberFilter], format: Literal["csv", "xlsx"] = "csv",
                   ) -> HttpResponse:
    """The members the list shows for the same filters (``q``, ``tag``, ``lifecycle``,
    ``community_id``, ``role``, ``relationship_level``), as a file; phones and e-mails masked.
    Every export is audited (``member.export``: who, format, filters, row count)."""
    p = require(request, "members.read")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    body = importing.do_export_members(p, format, **filters.model_dump())
    if format == "xlsx":
        resp = HttpResponse(body, content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    else:
        resp = HttpResponse(body, content_type="text/csv; charset=utf-8")
    resp["Content-Disposition"] = f'attachment; filename="members-{stamp}.{format}"'
    return resp


@router.get("/tags", response={200: list[TagOut], **ERRORS}, summary="标签列表")
def list_tags(request: HttpRequest) -> Any:
    p = require(request, "members.read")
    return list(selectors.tags(p.tenant_id)[:2000])


@router.get("/{member_id}", response={200: MemberOut, **ERRORS}, summary="会员详情")
def get_member(request: HttpRequest, member_id: Id) -> Any:
    p = require(request, "members.read")
    return member_out(p.tenant_id, member_id, full_contact=p.can("members.write"))


@router.patch("/{member_id}", response={200: MemberOut, **ERRORS}, summary="修改会员")
def update_member(request: HttpRequest, member_id: Id, payload: MemberPatch) -> Any:
    p = require(request, "members.write")
    member = selectors.get_member(p.tenant_id, member_id)
    changes = patch_changes(payload, param="payload")
    if changes:
        do_update_member(p, member, **changes)
    return member_out(p.tenant_id, member_id, full_contact=True)


@router.post("/{member_id}/identities", response={201: MemberOut, **ERRORS}, summary="添加平台身份")
@idempotent
def add_identity(request: HttpRequest, member_id: Id, payload: IdentityIn) -> Any:
    p = require(request, "members.write")
    member = selectors.get_member(p.tenant_id, member_id)
    do_add_identity(p, member, platform=payload.platform, external_id=payload.external_id,
                    display_name=payload.display_name, verified=payload.verified)
    return Status(201, member_out(p.tenant_id, member_id, full_contact=True))


@router.post("/{member_id}/tags", response={200: MemberOut, **ERRORS}, summary="打标签")
@idempotent
def tag_member(request: HttpRequest, member_id: Id, payload: TagsIn) -> Any:
    p = require(request, "members.write")
    member = selectors.get_member(p.tenant_id, member_id)
    names = [t.strip() for t in payload.tags]
    bad = [i for i, t in enumerate(names) if not t or len(t) > 64]
    if bad:
        raise Invalid(_("标签名不能为空且不超过 64 个字符"),
                      details=[{"field": f"body.payload.tags.{i}", "message": "1..64 chars"} for i in bad])
    with transaction.atomic():
        do_tag_member(p, member, names)
    return member_out(p.tenant_id, member_id, full_contact=True)


@router.delete("/{member_id}/tags/{tag_id}", response={200: MemberOut, **ERRORS}, summary="移除标签")
def untag_member(request: HttpRequest, member_id: Id, tag_id: Id) -> Any:
    p = require(request, "members.write")
    member = selectors.get_member(p.tenant_id, member_id)
    tag = selectors.tags(p.tenant_id).filter(pk=tag_id).first()
    if tag is None:
        raise NotFound(_("标签不存在"), details={"tag_id": tag_id})
    do_untag_member(p, member, tag)
    return member_out(p.tenant_id, member_id, full_contact=True)



# --- data rights (PIPL): a member's copy of their data, and erasure ---------------------------------


@router.get("/{member_id}/export", response={200: None, **ERRORS}, summary="导出某会员的全部数据 (JSON 或 XLSX)",
            openapi_extra={"responses": {200: {"description": "JSON or XLSX file", "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                    "schema": {"type": "string", "format": "binary"}}}}}})
def export_member_data(request: HttpRequest, member_id: Id, format: Literal["json", "xlsx"] = "json") -> HttpResponse:
    """Everything held about one member — profile, identities, tags, memberships, roles, messages and
    other activity, orders — unmasked (it is the member's own copy). Needs ``members.write``; audited
    (``member.data_export``)."""
    p = require(request, "members.write")
    body = do_export_member(p, member_id, format)
    if format == "xlsx":
        resp = HttpResponse(body, content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    else:
        resp = HttpResponse(body, content_type="application/json; charset=utf-8")
    resp["Content-Disposition"] = f'attachment; filename="member-{member_id}.{format}"'
    return resp


class EraseIn(BodyIn):
    reason: str = Field(min_length=1, max_length=500, description="why (e.g. the member's request number)")


class ErasedOut(Schema):
    id: int
    display_name: str
    erased_at: dt.datetime


@router.post("/{member_id}/erase", response={200: ErasedOut, **ERRORS},
             summary="删除某会员的个人信息 (保留匿名订单与账目)")
@idempotent
def erase_member(request: HttpRequest, member_id: Id, payload: EraseIn) -> Any:
    """Deletes identities and tags, clears phone / e-mail / note, scrubs message text and names,
    ends portal sessions; the member row stays under a pseudonym so orders and the ledger keep their
    amounts. Needs ``members.write``; audited (``member.erase``, with the reason). 409 when already
    erased."""
    p = require(request, "members.write")
    member = do_erase_member(p, member_id, reason=payload.reason)
    assert member.erased_at is not None
    return ErasedOut(id=member.pk, display_name=member.display_name, erased_at=member.erased_at)
