"""Writers for members: create, update, identities, tags, merge."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from openpyxl import Workbook

from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.models import Platform
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from .models import Identity, LifecycleStage, Member, MemberTag, RelationshipLevel, Tag
from .registry import erasure_steps, export_sections, merge_hooks

_PHONE_STRIP = re.compile(r"[\s\-()（）]")
_CN_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_INTL = re.compile(r"^\+[1-9]\d{6,14}$")


def check_phone(raw: str | None) -> str:
    """Normalise a phone number: mainland mobiles to 11 digits (``+86``/``0086`` dropped), others
    to ``+<digits>``. Empty stays empty; anything else raises :class:`Invalid` naming ``phone``."""
    if raw is None:
        return ""
    value = _PHONE_STRIP.sub("", str(raw).strip())
    if not value:
        return ""
    if value.endswith(".0"):  # spreadsheets turn 13812345678 into 13812345678.0
        value = value[:-2]
    for prefix in ("+86", "0086", "86"):
        if value.startswith(prefix) and len(value) == len(prefix) + 11:
            value = value[len(prefix):]
            break
    if _CN_MOBILE.match(value) or _INTL.match(value):
        return value
    raise Invalid(_("手机号格式不正确: %(v)s") % {"v": raw}, details={"field": "phone"})


def check_email(raw: str | None) -> str:
    value = (raw or "").strip()
    if not value:
        return ""
    try:
        validate_email(value)
    except ValidationError as exc:
        raise Invalid(_("邮箱格式不正确: %(v)s") % {"v": value}, details={"field": "email"}) from exc
    return value.lower()


def check_platform(value: str) -> str:
    if value not in Platform.values:
        raise Invalid(_("未知的平台: %(v)s") % {"v": value}, details={"field": "platform"})
    return value


@transaction.atomic
def do_create_member(
    principal: Principal,
    *,
    display_name: str,
    phone: str = "",
    email: str = "",
    source_channel: str = "",
    consent_marketing: bool = False,
    identities: Iterable[dict[str, Any]] = (),
    tags: Iterable[str] = (),
    first_seen_at: Any = None,
    note: str = "",
) -> Member:
    name = (display_name or "").strip()
    if not name:
        raise Invalid(_("昵称不能为空"), details={"field": "display_name"})
    member = Member.objects.create(
        tenant_id=principal.tenant_id, display_name=name[:120], phone=check_phone(phone), email=check_email(email),
        source_channel=source_channel[:64], consent_marketing=consent_marketing,
        first_seen_at=first_seen_at or timezone.now(), note=note,
    )
    for ident in identities:
        do_add_identity(principal, member, platform=ident["platform"], external_id=ident["external_id"],
                        display_name=ident.get("display_name", ""), verified=bool(ident.get("verified", False)),
                        audit=False)
    if tags:
        do_tag_member(principal, member, tags, audit=False)
    do_audit(principal, "member.create", "Member", member.pk, data={"source_channel": source_channel})
    return member


UPDATABLE = {"display_name", "phone", "email", "source_channel", "consent_marketing", "consent_data", "note",
             "lifecycle_stage", "relationship_level"}


@transaction.atomic
def do_update_member(principal: Principal, member: Member, **changes: Any) -> Member:
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise Invalid(_("不能修改的字段: %(f)s") % {"f": ", ".join(sorted(unknown))},
                      details={"field": sorted(unknown)[0]})
    if "phone" in changes:
        changes["phone"] = check_phone(changes["phone"])
    if "email" in changes:
        changes["email"] = check_email(changes["email"])
    if "display_name" in changes and not str(changes["display_name"]).strip():
        raise Invalid(_("昵称不能为空"), details={"field": "display_name"})
    if "lifecycle_stage" in changes and changes["lifecycle_stage"] not in LifecycleStage.values:
        raise Invalid(_("未知的生命周期阶段"), details={"field": "lifecycle_stage"})
    if "relationship_level" in changes and changes["relationship_level"] not in RelationshipLevel.values:
        raise Invalid(_("未知的关系等级"), details={"field": "relationship_level"})
    before = {k: getattr(member, k) for k in changes}
    for key, value in changes.items():
        setattr(member, key, value)
    member.save(update_fields=list(changes))
    # never put phone/email values in the audit trail: record which fields changed only
    do_audit(principal, "member.update", "Member", member.pk,
             data={"fields": sorted(k for k in changes if before[k] != changes[k])})
    return member


def do_add_identity(
    principal: Principal, member: Member, *, platform: str, external_id: str, display_name: str = "",
    verified: bool = False, audit: bool = True,
) -> Identity:
    check_platform(platform)
    external_id = str(external_id).strip()
    if not external_id:
        raise Invalid(_("平台账号不能为空"), details={"field": "external_id"})
    with transaction.atomic():
        existing = Identity.objects.filter(
            tenant_id=principal.tenant_id, platform=platform, external_id=external_id
        ).first()
        if existing is not None:
            if existing.member_id == member.pk:
                return existing
            raise Conflict(_("该平台账号已属于另一位会员 (#%(id)s)") % {"id": existing.member_id},
                           details={"field": "external_id", "member_id": existing.member_id})
        identity = Identity.objects.create(
            tenant_id=principal.tenant_id, member=member, platform=platform, external_id=external_id,
            display_name=display_name[:120], verified=verified,
        )
        if audit:
            do_audit(principal, "member.identity_add", "Member", member.pk, data={"platform": platform})
    return identity


def _tag_by_name(tenant_id: int, name: str) -> Tag:
    """The organisation-wide tag ``name`` (created on first use). A name that is empty or longer than
    the column is refused, never truncated into another tag."""
    if not name or len(name) > Tag._meta.get_field("name").max_length:  # type: ignore[operator]
        raise Invalid(_("标签名不能为空且不超过 64 个字符"), details={"field": "tags", "value_length": len(name)})
    tag, _created = Tag.objects.get_or_create(
        tenant_id=tenant_id, scope=Tag.Scope.ORGANISATION, community=None, owner=None, name=name
    )
    return tag


def do_tag_member(principal: Principal, member: Member, tags: Iterable[str | Tag], *, audit: bool = True) -> None:
    """Attach tags (organisation-wide tags are created by name on first use)."""
    with transaction.atomic():
        names = []
        for t in tags:
            tag = t if isinstance(t, Tag) else _tag_by_name(principal.tenant_id, str(t).strip())
            if tag.tenant_id != principal.tenant_id:
                raise Invalid(_("标签不存在"), details={"field": "tags"})
            MemberTag.objects.get_or_create(tenant_id=principal.tenant_id, member=member, tag=tag)
            names.append(tag.name)
        if audit:
            do_audit(principal, "member.tag", "Member", member.pk, data={"tags": names})


def do_untag_member(principal: Principal, member: Member, tag: Tag) -> None:
    with transaction.atomic():
        MemberTag.objects.filter(tenant_id=principal.tenant_id, member=member, tag=tag).delete()
        do_audit(principal, "member.untag", "Member", member.pk, data={"tag": tag.name})


@transaction.atomic
def do_merge_members(principal: Principal, *, keep: Member, merge: Member, reason: str = "") -> Member:
    """Merge ``merge`` into ``keep`` (an explicit, audited operator action).

    Identities and tags move to ``keep``, and every merge hook of :mod:`.registry` moves what its app
    holds (memberships, role assignments, activity events — declared in :mod:`shequn.wiring`); blank
    contact fields of ``keep`` are filled from ``merge``; the earlier first-seen and later last-active
    win; ``merge`` stays as a tombstone with ``merged_into`` set so old references still resolve.
    Locks both member rows with ``select_for_update`` in id order (no deadlock with a concurrent
    merge of the same pair)."""
    if keep.pk == merge.pk:
        raise Invalid(_("不能把会员合并到自己"), details={"field": "merge_id"})
    if keep.tenant_id != principal.tenant_id or merge.tenant_id != principal.tenant_id:
        raise Invalid(_("会员不存在"), details={"field": "merge_id"})
    locked = {m.pk: m for m in Member.objects.select_for_update().filter(pk__in=[keep.pk, merge.pk]).order_by("pk")}
    keep, merge = locked[keep.pk], locked[merge.pk]
    if merge.merged_into_id is not None:
        raise Conflict(_("会员 #%(id)s 已被合并") % {"id": merge.pk}, details={"field": "merge_id"})
    if keep.merged_into_id is not None:
        raise Conflict(_("会员 #%(id)s 已被合并") % {"id": keep.pk}, details={"field": "keep_id"})
    tenant_id = principal.tenant_id
    moved = {"identities": Identity.objects.filter(tenant_id=tenant_id, member=merge).update(member=keep)}
    keep_tags = set(MemberTag.objects.filter(member=keep).values_list("tag_id", flat=True))
    MemberTag.objects.filter(member=merge, tag_id__in=keep_tags).delete()
    moved["tags"] = MemberTag.objects.filter(member=merge).update(member=keep)
    for _name, hook in merge_hooks():
        moved.update(hook(tenant_id, merge.pk, keep.pk))
    for field in ("phone", "email", "source_channel"):
        if not getattr(keep, field) and getattr(merge, field):
            setattr(keep, field, getattr(merge, field))
    keep.first_seen_at = min(keep.first_seen_at, merge.first_seen_at)
    if merge.last_active_at and (keep.last_active_at is None or merge.last_active_at > keep.last_active_at):
        keep.last_active_at = merge.last_active_at
    keep.relationship_level = max(keep.relationship_level, merge.relationship_level)
    keep.consent_marketing = keep.consent_marketing and merge.consent_marketing
    keep.save()
    merge.merged_into = keep
    merge.save(update_fields=["merged_into"])
    do_audit(principal, "member.merge", "Member", keep.pk, reason=reason, data={"merged": merge.pk, "moved": moved})
    return keep


# --- member data rights (PIPL: access and erasure) ----------------------------------------------------
#
# Other apps hold rows about a member too. They take part through two registries of :mod:`.registry`,
# filled by :mod:`shequn.wiring`: an *export section* (a read: a list of plain dicts for the member) and an
# *erasure step* (a writer of that app's own tables). The members app never writes another app's tables.

def pseudonym(member: Member) -> str:
    """The stable pseudonymous name an erased member keeps (orders and ledger entries stay under the
    same row id; the name says nothing about the person)."""
    digest = hmac.new(str(settings.SECRET_KEY).encode(), f"member-erase:{member.tenant_id}:{member.pk}".encode(),
                      hashlib.sha256).hexdigest()
    return f"已注销会员-{digest[:10]}"


def export_rows(qs: Any, fields: list[str]) -> list[dict[str, Any]]:
    """Rows of ``qs`` as plain dicts with ISO dates (for export sections of any app)."""
    return [{f: (v.isoformat() if hasattr(v, "isoformat") else v) for f, v in zip(fields, row, strict=True)}
            for row in qs.values_list(*fields)]


def member_data(tenant_id: int, member_id: int) -> dict[str, list[dict[str, Any]]]:
    """Everything shequn holds about one member, by section (unmasked: this is the member's own copy)."""
    member = Member.objects.filter(tenant_id=tenant_id, pk=member_id).first()
    if member is None:
        raise NotFound(_("会员不存在"), details={"member_id": member_id})
    data: dict[str, list[dict[str, Any]]] = {
        "member": export_rows(Member.objects.filter(pk=member.pk), [
            "id", "display_name", "phone", "email", "source_channel", "first_seen_at", "last_active_at",
            "lifecycle_stage", "relationship_level", "consent_marketing", "consent_data", "note", "created_at",
            "erased_at"]),
        "identities": export_rows(Identity.objects.filter(member=member).order_by("pk"),
                            ["platform", "external_id", "display_name", "verified", "created_at"]),
        "tags": export_rows(MemberTag.objects.filter(member=member).order_by("pk"), ["tag__name", "added_at"]),
    }
    for name, section in export_sections():
        data[name] = section(tenant_id, member.pk)
    return data


def do_export_member(principal: Principal, member_id: int, fmt: str) -> bytes:
    """The member's data as JSON or XLSX (one sheet per section); the export is audited."""
    data = member_data(principal.tenant_id, member_id)
    do_audit(principal, "member.data_export", "Member", member_id, data={"format": fmt,
                                                                        "sections": sorted(data)})
    if fmt == "json":
        return json.dumps({"member_id": member_id, "sections": data}, ensure_ascii=False, indent=2,
                          default=str).encode()
    book = Workbook()
    book.remove(book.active)
    for name, rows in data.items():
        sheet = book.create_sheet(name[:31])
        columns = list(rows[0]) if rows else ["-"]
        sheet.append(columns)
        for row in rows:
            sheet.append([json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v
                          for v in (row.get(c) for c in columns)])
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


@transaction.atomic
def do_erase_member(principal: Principal, member_id: int, *, reason: str) -> Member:
    """Erase a member's personal data (PIPL): platform identities and tags are deleted; phone,
    e-mail, note, channel and consents are cleared; the name becomes a pseudonym; the personal fields
    of their messages are scrubbed (activity) and every other app's registered step runs (declared in
    :mod:`shequn.wiring`). The row itself stays,
    so orders, payments and ledger entries keep their amounts under the same (now pseudonymous) id.
    Audited with the reason. Locking: the member row."""
    if not reason.strip():
        raise Invalid(_("请填写删除原因 (如会员的申请编号)"), details={"field": "reason"})
    member = Member.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=member_id).first()
    if member is None:
        raise NotFound(_("会员不存在"), details={"member_id": member_id})
    if member.erased_at is not None:
        raise Conflict(_("该会员的个人信息已删除"), details={"member_id": member_id})
    counts = {"identities": Identity.objects.filter(member=member).delete()[0],
              "tags": MemberTag.objects.filter(member=member).delete()[0]}
    for name, step in erasure_steps():
        counts[name] = step(principal, member.pk)
    member.display_name = pseudonym(member)
    member.phone = member.email = member.note = member.source_channel = ""
    member.consent_marketing = member.consent_data = False
    member.erased_at = timezone.now()
    member.save(update_fields=["display_name", "phone", "email", "note", "source_channel", "consent_marketing",
                               "consent_data", "erased_at"])
    do_audit(principal, "member.erase", "Member", member.pk, reason=reason.strip(), data={"removed": counts})
    return member
