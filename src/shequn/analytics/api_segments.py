"""REST API of saved segments (``/api/v1/analytics/segments``): list with live counts, create, change,
delete, count a draft rule, the members (CSV/XLSX with masked phones), grant a coupon to a segment and
invite a segment to a paid tier. Reads need ``analytics.read``; writes ``analytics.write`` (and
``commerce.write`` for coupons and tiers). Every POST replays its first answer for a repeated
``Idempotency-Key``; the grant and the invitation are idempotent by themselves too."""

import csv
import io
from typing import Annotated, Any, Literal

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy
from ninja import Field, Router, Schema
from openpyxl import Workbook
from pydantic import ConfigDict

from shequn.core.http import ERRORS, BodyIn, Id, idempotent, require
from shequn.core.pagination import RankPagination, paginate

from . import segments

router = Router(tags=["analytics"])

Score = Annotated[int, Field(ge=1, le=5)]
Hour = Annotated[int, Field(ge=0, le=23)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]


class SegmentRuleIn(BodyIn):
    model_config = ConfigDict(strict=True, extra="forbid")  # a misspelt condition is refused, not ignored

    lifecycle_stage: Literal["", "new", "active", "lurking", "dormant", "churned"] = ""
    tag_id: Id | None = None
    role: Literal["", "owner", "advocate", "cs", "content", "guest"] = ""
    min_recency: Score | None = None
    min_frequency: Score | None = None
    min_monetary: Score | None = None
    min_orders: Count | None = None
    max_orders: Count | None = None
    min_active_days: Count | None = None
    active_hour_from: Hour | None = None
    active_hour_to: Hour | None = None
    preferred_group_id: Id | None = None
    purchased_product_id: Id | None = None
    exclude_tier_code: Annotated[str, Field(max_length=32)] = ""


class SegmentIn(SegmentRuleIn):
    name: Annotated[str, Field(min_length=1, max_length=80)]


class SegmentOut(Schema):
    id: int
    name: str
    count: int
    lifecycle_stage: str
    tag_id: int | None
    role: str
    min_recency: int | None
    min_frequency: int | None
    min_monetary: int | None
    min_orders: int | None
    max_orders: int | None
    min_active_days: int | None
    active_hour_from: int | None
    active_hour_to: int | None
    preferred_group_id: int | None
    purchased_product_id: int | None
    exclude_tier_code: str


class CountOut(Schema):
    count: int


class SegmentMemberOut(Schema):
    member_id: int
    display_name: str
    phone: str
    lifecycle_stage: str
    orders: int
    gmv_yuan: str
    rfm: str


class GrantIn(BodyIn):
    template_id: Id


class GrantOut(Schema):
    granted: int
    already: int
    refused: dict[str, int]


class TierInviteIn(BodyIn):
    product_id: Id


class InviteOut(Schema):
    invited: int


def _out(tenant_id: int, seg: Any) -> dict[str, Any]:
    rule = segments.Rule.of(seg)
    return {"id": seg.pk, "name": seg.name, "count": segments.segment_count(tenant_id, rule),
            **rule.__dict__}


def _rule(body: SegmentRuleIn) -> dict[str, Any]:
    return body.model_dump(include=set(segments.RULE_FIELDS))


@router.get("", response={200: list[SegmentOut], **ERRORS}, summary="已保存人群 (含实时人数)")
def list_segments(request: HttpRequest) -> Any:
    p = require(request, "analytics.read")
    return [_out(p.tenant_id, s) for s in segments.segments(p.tenant_id)]


@router.post("", response={200: SegmentOut, **ERRORS}, summary="保存人群")
@idempotent
def create_segment(request: HttpRequest, body: SegmentIn) -> Any:
    p = require(request, "analytics.write")
    return _out(p.tenant_id, segments.do_save_segment(p, body.name, _rule(body)))


@router.post("/count", response={200: CountOut, **ERRORS}, summary="按条件实时计数 (不保存)")
@idempotent
def count_rule(request: HttpRequest, body: SegmentRuleIn) -> Any:
    p = require(request, "analytics.read")
    rule = segments.check_rule(p.tenant_id, _rule(body))
    return {"count": segments.segment_count(p.tenant_id, rule)}


@router.get("/{segment_id}", response={200: SegmentOut, **ERRORS}, summary="人群详情")
def get_segment(request: HttpRequest, segment_id: Id) -> Any:
    p = require(request, "analytics.read")
    return _out(p.tenant_id, segments.get_segment(p.tenant_id, segment_id))


@router.put("/{segment_id}", response={200: SegmentOut, **ERRORS}, summary="修改人群")
def update_segment(request: HttpRequest, segment_id: Id, body: SegmentIn) -> Any:
    p = require(request, "analytics.write")
    return _out(p.tenant_id, segments.do_save_segment(p, body.name, _rule(body), segment_id=segment_id))


class SegmentDeletedOut(Schema):
    id: int
    deleted: bool


@router.delete("/{segment_id}", response={200: SegmentDeletedOut, **ERRORS}, summary="删除人群")
def delete_segment(request: HttpRequest, segment_id: Id) -> Any:
    segments.do_delete_segment(require(request, "analytics.write"), segment_id)
    return {"id": segment_id, "deleted": True}


@router.get("/{segment_id}/members", response={200: list[SegmentMemberOut], **ERRORS}, summary="人群成员 (手机号打码)")
@paginate(RankPagination)
def segment_members(request: HttpRequest, segment_id: Id) -> Any:
    p = require(request, "analytics.read")
    segments.get_segment(p.tenant_id, segment_id)  # 404 before the page is read
    return lambda offset, count: segments.segment_members(p.tenant_id, segment_id, offset=offset, limit=count)


EXPORT_COLUMNS = (("member_id", gettext_lazy("会员编号")), ("display_name", gettext_lazy("昵称")),
                  ("phone", gettext_lazy("手机号")), ("lifecycle_stage", gettext_lazy("生命周期")),
                  ("orders", gettext_lazy("订单数")), ("gmv_yuan", gettext_lazy("成交额(元)")), ("rfm", "RFM"))


def export_members(tenant_id: int, segment_id: int, fmt: str) -> HttpResponse:
    """The members of a segment as CSV or XLSX (phones masked): shared by the API and the console."""
    seg = segments.get_segment(tenant_id, segment_id)
    rows = segments.segment_members(tenant_id, segment_id)
    header = [str(label) for _k, label in EXPORT_COLUMNS]
    name = f"segment-{seg.pk}.{fmt}"
    if fmt == "xlsx":
        wb = Workbook()
        ws = wb.active
        assert ws is not None
        ws.append(header)
        for r in rows:
            ws.append([r[k] for k, _l in EXPORT_COLUMNS])
        buf = io.BytesIO()
        wb.save(buf)
        resp = HttpResponse(buf.getvalue(),
                            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    else:
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows([r[k] for k, _l in EXPORT_COLUMNS] for r in rows)
        resp = HttpResponse("\ufeff" + text.getvalue(), content_type="text/csv; charset=utf-8")
    resp["Content-Disposition"] = f'attachment; filename="{name}"'
    return resp


@router.get("/{segment_id}/export", response={200: None, **ERRORS}, summary="导出人群成员 (CSV/XLSX)")
def export_segment(request: HttpRequest, segment_id: Id, format: Literal["csv", "xlsx"] = "csv") -> Any:
    p = require(request, "analytics.read")
    return export_members(p.tenant_id, segment_id, format)


@router.post("/{segment_id}/grant-coupon", response={200: GrantOut, **ERRORS}, summary="向人群发券 (幂等)")
@idempotent
def grant_coupon(request: HttpRequest, segment_id: Id, body: GrantIn) -> Any:
    p = require(request, "analytics.write")
    require(request, "commerce.write")
    r = segments.do_grant_coupon_to_segment(p, segment_id, body.template_id)
    return {"granted": r.granted, "already": r.already, "refused": dict(r.refused or {})}


@router.post("/{segment_id}/invite-tier", response={200: InviteOut, **ERRORS}, summary="邀请人群加入付费等级 (幂等)")
@idempotent
def invite_tier(request: HttpRequest, segment_id: Id, body: TierInviteIn) -> Any:
    p = require(request, "analytics.write")
    require(request, "commerce.write")
    return {"invited": segments.do_invite_segment_to_tier(p, segment_id, body.product_id)}
