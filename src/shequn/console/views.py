"""Console pages that are not a model's list or form: the community dashboard, member import (dry-run
preview, per-row error report, all-or-nothing apply), export, merge and merge suggestions.

Every view is wrapped in ``admin.site.admin_view`` (login, staff, no-cache, CSRF) by ``urls.py``,
reads only the operator's active tenant and checks the staff role's permission."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from shequn.analytics import selectors as analytics_selectors
from shequn.communities import selectors as community_selectors
from shequn.core.admin_base import request_principal, request_tenant_id
from shequn.core.dbrouting import replica_reads
from shequn.core.errors import NotFound, ShequnError
from shequn.core.masking import mask_email, mask_phone
from shequn.core.middleware import SESSION_KEY
from shequn.core.permissions import Principal
from shequn.core.selectors import staff_memberships_for_user
from shequn.core.services import do_audit
from shequn.engagement import selectors as engagement_selectors
from shequn.engagement import services as engagement_services
from shequn.members import importing
from shequn.members import selectors as member_selectors
from shequn.members import services as member_services
from shequn.members.models import Member
from shequn.members.services import do_merge_members

MAX_UPLOAD = 20 * 1024 * 1024


def _require(request: HttpRequest, permission: str) -> tuple[int, Principal]:
    tenant_id = request_tenant_id(request)
    principal = request_principal(request)
    if tenant_id is None or principal is None or not principal.can(permission):
        raise PermissionDenied
    return tenant_id, principal


def _context(request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
    return {**admin.site.each_context(request), "title": title, **extra}


# -- community dashboard -------------------------------------------------------------------------

DASHBOARD_TTL = 300  # seconds; the series are daily figures, five minutes stale is fine


def dashboard_series(tenant_id: int, community_id: int, *, days: int, tz: str) -> dict[str, Any]:
    """analytics.selectors.community_dashboard (reads the rollups), cached for DASHBOARD_TTL."""
    key = f"shequn:console:dash:{tenant_id}:{community_id}:{days}:{tz}"
    series: dict[str, Any] | None = cache.get(key)
    if series is None:
        with replica_reads():
            series = analytics_selectors.community_dashboard(tenant_id, community_id, days=days, tz=tz)
        cache.set(key, series, DASHBOARD_TTL)
    return series


def community_dashboard(request: HttpRequest, community_id: int) -> HttpResponse:
    tenant_id, principal = _require(request, "communities.read")
    try:
        community = community_selectors.get_community(tenant_id, community_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    tz = getattr(request.tenant, "time_zone", None) or "Asia/Shanghai"  # type: ignore[attr-defined]
    try:
        days = max(7, min(int(request.GET.get("days", 90)), 365))
    except ValueError:
        days = 90
    series = dashboard_series(tenant_id, community.pk, days=days, tz=tz)
    groups = list(community_selectors.groups(tenant_id, community.pk))
    roles = list(community_selectors.roles(tenant_id, community_id=community.pk).select_related("member")
                 .order_by("role", "since"))
    last7 = slice(-7, None)
    kpis = [
        {"label": _("当前成员"), "value": series["members"][-1] if series["members"] else 0},
        {"label": _("近 7 天日均活跃"),
         "value": round(sum(series["daily_active"][last7]) / 7, 1) if series["daily_active"] else 0},
        {"label": _("近 7 天加入 / 退出"),
         "value": f"{sum(series['joins'][last7])} / {sum(series['leaves'][last7])}"},
        {"label": _("近 7 天消息"), "value": sum(series["messages"][last7])},
    ]
    labels = {
        "members": _("成员数"), "daily_active": _("日活跃成员"), "joins": _("加入"), "leaves": _("退出"),
        "messages": _("消息数"),
    }
    recommendations = (list(engagement_selectors.pending_role_recommendations(tenant_id, community.pk)[:30])
                       if principal.can("engagement.read") else [])
    formula = None
    if principal.can("analytics.read"):
        formula = analytics_selectors.formula_panel(
            tenant_id, days=min(days, 30), scope=analytics_selectors.Scope(community_id=community.pk))
    return render(request, "console/community_dashboard.html", _context(
        request, _("%(name)s · 社群看板") % {"name": community.name},
        community=community, series=series, labels=labels, kpis=kpis, groups=groups, roles=roles, days=days,
        formula=formula, recommendations=recommendations, can_assign=principal.can("engagement.write"),
    ))


def role_recommendation_decide(request: HttpRequest, community_id: int, recommendation_id: int) -> HttpResponse:
    """One click on the community page: assign the recommended role (or dismiss the recommendation)."""
    if request.method != "POST":
        return HttpResponse(status=405)
    _tenant_id, principal = _require(request, "engagement.write")
    accept = request.POST.get("decision") == "accept"
    try:
        rec = engagement_services.do_decide_role(principal, recommendation_id, accept=accept)
    except ShequnError as exc:
        outcome, ok = exc.message, False
    else:
        if rec.community_id != community_id:  # pragma: no cover - the page only links its own
            raise Http404
        outcome = (_("已指派: %(name)s · %(role)s") % {"name": rec.member.display_name, "role": rec.get_role_display()}
                   if accept else _("已忽略该推荐"))
        ok = True
    if request.headers.get("HX-Request"):  # htmx: swap the row in place, no reload
        return render(request, "console/_recommendation_row.html",
                      {"recommendation_id": recommendation_id, "outcome": outcome, "ok": ok})
    (messages.success if ok else messages.error)(request, outcome)
    return HttpResponseRedirect(reverse("console:community_dashboard", args=[community_id]) + "#role-recommendations")


# -- import ----------------------------------------------------------------------------------------

class ImportForm(forms.Form):
    file = forms.FileField(label=gettext_lazy("会员文件 (CSV 或 XLSX)"),
                           help_text=gettext_lazy("第一行为表头; 必填列: 昵称。可选列: 手机号、邮箱、来源、标签、"
                                                  "平台、平台账号、社群、备注、同意营销。UTF-8 或 GBK 编码均可。"))

    def clean_file(self) -> Any:
        f = self.cleaned_data["file"]
        name = (f.name or "").lower()
        if not name.endswith((".csv", ".xlsx", ".xlsm", ".txt")):
            raise forms.ValidationError(_("只支持 .csv 或 .xlsx 文件"))
        if f.size > MAX_UPLOAD:
            raise forms.ValidationError(_("文件太大 (最大 20 MB)"))
        return f


def _staged_path(tenant_id: int, token: str, filename: str) -> str:
    ext = ".xlsx" if filename.lower().endswith((".xlsx", ".xlsm")) else ".csv"
    return f"imports/{tenant_id}/{token}{ext}"


def _forget_stale_uploads(tenant_id: int, max_age: dt.timedelta = dt.timedelta(hours=24)) -> None:
    """Previews that were never applied leave their staged file behind; drop those older than a day."""
    folder = f"imports/{tenant_id}"
    try:
        _dirs, files = default_storage.listdir(folder)
    except FileNotFoundError:
        return
    cutoff = timezone.now() - max_age
    for name in files:
        path = f"{folder}/{name}"
        try:
            if default_storage.get_modified_time(path) < cutoff:
                default_storage.delete(path)
        except (FileNotFoundError, OSError):
            continue


def member_import(request: HttpRequest) -> HttpResponse:
    """GET: the upload form. POST with a file: validate it (dry run, nothing written) and show the
    report; when clean, the file is staged and an "apply" button posts its token. POST with a token:
    apply the staged file in one transaction (re-validated; all or nothing)."""
    tenant_id, principal = _require(request, "members.write")
    report = None
    token = ""
    filename = ""
    form = ImportForm()
    if request.method == "POST" and request.POST.get("token"):
        token = request.POST["token"]
        filename = request.POST.get("filename", "members.csv")
        try:
            uuid.UUID(hex=token)
        except ValueError as exc:
            raise Http404 from exc
        path = _staged_path(tenant_id, token, filename)
        if not default_storage.exists(path):
            messages.error(request, _("待导入的文件已过期, 请重新上传"))
            return HttpResponseRedirect(reverse("console:member_import"))
        with default_storage.open(path, "rb") as fh:
            data = fh.read()
        try:
            report = importing.do_import_members(principal, filename, data, dry_run=False)
        except ShequnError as exc:
            report = importing.ImportReport(errors=[importing.RowError(0, "", exc.message)])
        if report.ok:
            default_storage.delete(path)
            messages.success(request, _("已导入 %(n)d 位会员") % {"n": report.created})
            return HttpResponseRedirect(reverse("admin:members_member_changelist"))
        default_storage.delete(path)
        token = ""
    elif request.method == "POST":
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            filename = upload.name
            data = upload.read()
            try:
                report = importing.do_import_members(principal, filename, data, dry_run=True)
            except ShequnError as exc:
                details = exc.details if isinstance(exc.details, list) else []
                row = details[0].get("row", 0) if details and isinstance(details[0], dict) else 0
                report = importing.ImportReport(errors=[importing.RowError(row, "", exc.message)])
            if report.ok and report.rows:
                _forget_stale_uploads(tenant_id)
                token = uuid.uuid4().hex
                default_storage.save(_staged_path(tenant_id, token, filename), ContentFile(data))
    return render(request, "console/member_import.html", _context(
        request, _("导入会员"), form=form, report=report, token=token, filename=filename,
        columns=sorted({k for k in importing.COLUMNS if not k.isascii()}),
    ))


def member_import_template(request: HttpRequest) -> HttpResponse:
    _require(request, "members.read")
    body = ("昵称,手机号,邮箱,来源,标签,平台,平台账号,社群,备注,同意营销\n"
            "张三,13800000000,,线下活动,车主;北京,wecom,wm_zhangsan,,,是\n")
    response = HttpResponse(body.encode("utf-8-sig"), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="shequn-members-template.csv"'
    return response


def member_export(request: HttpRequest, fmt: str) -> HttpResponse:
    """Export every member of the tenant; phone numbers and e-mails are masked."""
    tenant_id, principal = _require(request, "members.read")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    if fmt == "csv":
        body = importing.export_csv(tenant_id)
        content_type = "text/csv; charset=utf-8"
    elif fmt == "xlsx":
        body = importing.export_xlsx(tenant_id)
        content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    else:
        raise Http404
    do_audit(principal, "member.export", "Member", "*", data={"format": fmt})
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="shequn-members-{stamp}.{fmt}"'
    return response


# -- merge ---------------------------------------------------------------------------------------

def _member_card(tenant_id: int, member: Member) -> dict[str, Any]:
    return {
        "member": member,
        "phone": mask_phone(member.phone),
        "email": mask_email(member.email),
        "identities": list(member_selectors.identities(tenant_id, member.pk)),
        "tags": member_selectors.tag_names(tenant_id, member.pk),
        "communities": list(community_selectors.memberships(tenant_id, member_id=member.pk, current=True)
                            .select_related("community").values_list("community__name", flat=True)),
    }


def member_merge(request: HttpRequest) -> HttpResponse:
    """Confirmation page for merging two members; POST merges (members.services.do_merge_members)."""
    tenant_id, principal = _require(request, "members.write")
    source = request.POST if request.method == "POST" else request.GET
    try:
        a_id, b_id = int(source.get("a", "")), int(source.get("b", ""))
        a = member_selectors.get_member(tenant_id, a_id)
        b = member_selectors.get_member(tenant_id, b_id)
    except (ValueError, NotFound) as exc:
        raise Http404(_("会员不存在")) from exc
    error = ""
    if request.method == "POST":
        keep_id = request.POST.get("keep")
        if keep_id not in {str(a.pk), str(b.pk)}:
            error = _("请选择要保留的会员")
        else:
            keep, merge = (a, b) if keep_id == str(a.pk) else (b, a)

            try:
                do_merge_members(principal, keep=keep, merge=merge, reason=request.POST.get("reason", "")[:500])
            except ShequnError as exc:
                error = exc.message
            else:
                messages.success(request, _("已将 %(merge)s 合并到 %(keep)s") % {
                    "merge": merge.display_name, "keep": keep.display_name})
                return HttpResponseRedirect(reverse("admin:members_member_change", args=[keep.pk]))
    return render(request, "console/member_merge.html", _context(
        request, _("合并会员"), a=_member_card(tenant_id, a), b=_member_card(tenant_id, b), error=error,
    ))


def member_merge_suggestions(request: HttpRequest) -> HttpResponse:
    tenant_id, _p = _require(request, "members.write")
    pairs = []
    for row in member_selectors.merge_suggestions(tenant_id, limit=100):
        ids = row["member_ids"]
        found = {m.pk: m for m in member_selectors.members(tenant_id).filter(pk__in=ids)}
        people = [found[i] for i in ids if i in found]
        if len(people) < 2:
            continue
        reason = _("相同手机号") if row["reason"] == "phone" else _("相同邮箱")
        for other in people[1:]:
            pairs.append({"a": people[0], "b": other, "reason": reason,
                          "a_phone": mask_phone(people[0].phone), "b_phone": mask_phone(other.phone)})
    return render(request, "console/member_merge_suggestions.html",
                  _context(request, _("合并建议"), pairs=pairs))


# -- organisation switch (staff of several tenants) ------------------------------------------------

def tenant_switch(request: HttpRequest) -> HttpResponse:
    """List the login's organisations; POST makes one the active tenant of the session."""
    memberships = list(staff_memberships_for_user(int(request.user.pk or 0)))
    if request.method == "POST":
        try:
            wanted = int(request.POST.get("tenant", ""))
        except ValueError as exc:
            raise Http404 from exc
        chosen = next((m for m in memberships if m.tenant_id == wanted), None)
        if chosen is None:
            raise Http404
        request.session[SESSION_KEY] = chosen.tenant_id
        messages.success(request, _("已切换到 %(name)s") % {"name": chosen.tenant.name})
        return HttpResponseRedirect(reverse("admin:index"))
    return render(request, "console/tenant_switch.html", _context(
        request, _("切换组织"), memberships=memberships, current=request_tenant_id(request)))


# -- member data rights (PIPL) ----------------------------------------------------------------------

class EraseForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("删除原因"), max_length=500,
                             help_text=gettext_lazy("如会员的申请编号或渠道; 写入审计日志"))
    confirm = forms.BooleanField(label=gettext_lazy("我确认删除该会员的个人信息 (不可恢复)"))


def member_data_rights(request: HttpRequest, member_id: int) -> HttpResponse:
    """One member's data rights: download everything held about them (JSON / Excel) or erase their
    personal data (orders and ledger amounts stay, under a pseudonym). Both audited by the service."""
    tenant_id, principal = _require(request, "members.write")
    member = Member.objects.filter(tenant_id=tenant_id, pk=member_id).first()
    if member is None:
        raise Http404
    fmt = request.GET.get("download")
    if fmt in ("json", "xlsx"):
        body = member_services.do_export_member(principal, member.pk, fmt)
        response = HttpResponse(body, content_type="application/json; charset=utf-8" if fmt == "json" else
                                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        response["Content-Disposition"] = f'attachment; filename="member-{member.pk}.{fmt}"'
        return response
    form = EraseForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            member_services.do_erase_member(principal, member.pk, reason=form.cleaned_data["reason"])
        except ShequnError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("已删除该会员的个人信息; 订单与账目以匿名编号保留"))
            return HttpResponseRedirect(reverse("admin:members_member_change", args=[member.pk]))
    return render(request, "console/member_data_rights.html",
                  _context(request, _("会员个人信息"), member=member, form=form))
