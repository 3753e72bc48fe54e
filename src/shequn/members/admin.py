# mypy: disable-error-code="untyped-decorator,no-any-return"
"""Console pages of the members app: members (masked phone, filters by tag, lifecycle, relationship
level, community, role and source), identities and tags inline, merge, import and export."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import SimpleListFilter
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from unfold.contrib.filters.admin import ChoicesDropdownFilter, DropdownFilter
from unfold.decorators import action, display

from shequn.core.admin_base import (
    TenantScopedAdmin,
    TenantScopedTabularInline,
    request_principal,
    request_tenant_id,
    tenant_related_filter,
)
from shequn.core.masking import mask_email, mask_phone

from .importing import do_export_members
from .models import Identity, Member, MemberTag, Tag
from .services import UPDATABLE, check_email, check_phone, do_create_member, do_update_member


class SourceFilter(DropdownFilter):  # type: ignore[misc]
    title = _("来源渠道")
    parameter_name = "source"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        tenant_id = request_tenant_id(request)
        if tenant_id is None:
            return []
        values = (Member.objects.filter(tenant_id=tenant_id).exclude(source_channel="")
                  .values_list("source_channel", flat=True).distinct().order_by("source_channel")[:200])
        return [(v, v) for v in values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Member]) -> QuerySet[Member]:
        value = self.value()
        return queryset.filter(source_channel=value) if value else queryset


class MergedFilter(SimpleListFilter):
    """Merged members stay as tombstones; the list hides them unless asked."""

    title = _("合并状态")
    parameter_name = "merged"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("已合并 (存档)")), ("all", _("全部"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Member]) -> QuerySet[Member]:
        value = self.value()
        if value == "yes":
            return queryset.filter(merged_into__isnull=False)
        if value == "all":
            return queryset
        return queryset.filter(merged_into__isnull=True)


class IdentityInline(TenantScopedTabularInline):
    model = Identity
    permission_area = "members"
    fields = ("platform", "external_id", "display_name", "verified", "created_at")
    readonly_fields = ("created_at",)
    extra = 0


class MemberTagInline(TenantScopedTabularInline):
    model = MemberTag
    permission_area = "members"
    fields = ("tag",)
    extra = 0
    verbose_name = _("标签")
    verbose_name_plural = _("标签")


#: inlines other apps add to the member page (moderation: running mutes with the time left); an
#: engine registers its own from its admin module, the members app never imports an engine
_EXTRA_INLINES: list[type[Any]] = []


def register_member_inline(inline: type[Any]) -> None:
    """Show ``inline`` (an inline on a model with a ``member`` foreign key) on the member page."""
    if inline not in _EXTRA_INLINES:
        _EXTRA_INLINES.append(inline)


MEMBER_FIELDS = ("display_name", "phone", "email", "source_channel", "lifecycle_stage", "relationship_level",
                 "consent_marketing", "consent_data", "note")


@admin.register(Member)
class MemberAdmin(TenantScopedAdmin):
    permission_area = "members"
    audit_writes = False  # the member services audit
    list_display = ("display_name", "masked_phone", "lifecycle", "relationship_level", "source_channel",
                    "tag_list", "last_active_at")
    list_filter: tuple[Any, ...] = (
        tenant_related_filter("member_tags__tag", Tag, _("标签"), parameter_name="tag"),
        ("lifecycle_stage", ChoicesDropdownFilter),
        ("relationship_level", ChoicesDropdownFilter),
        SourceFilter,
        MergedFilter,
    )
    list_filter_submit = True
    search_fields = ("display_name", "=phone", "=identities__external_id")
    search_help_text = _("按昵称、完整手机号或平台账号搜索")
    list_per_page = 50
    show_full_result_count = False
    ordering = ("-last_active_at", "-id")
    fieldsets = (
        (None, {"fields": ("display_name", "phone", "email", "source_channel", "note")}),
        (_("运营"), {"fields": ("lifecycle_stage", "relationship_level", "consent_marketing", "consent_data")}),
        (_("记录"), {"fields": ("first_seen_at", "last_active_at", "merged_into", "created_at")}),
    )
    readonly_fields = ("first_seen_at", "last_active_at", "merged_into", "created_at")
    # communities/admin.py adds the member's communities and roles (inlines and filters)
    inlines: tuple[Any, ...] = (IdentityInline, MemberTagInline)
    actions = ["merge_two", "export_selected_csv", "export_selected_xlsx", "data_rights"]
    actions_list = ["import_members", "export_csv", "export_xlsx", "merge_suggestions"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Member]:
        return super().get_queryset(request).prefetch_related("member_tags__tag")

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        return (*super().get_inlines(request, obj), *_EXTRA_INLINES)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if self.has_change_permission(request, obj):
            return fieldsets
        # staff who may not edit members see contact details masked, as in the list
        swap = {"phone": "masked_phone", "email": "masked_email"}
        return [(name, {**opts, "fields": tuple(swap.get(f, f) for f in opts["fields"])})
                for name, opts in fieldsets]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))
        if self.has_change_permission(request, obj):
            return fields
        return (*fields, "masked_phone", "masked_email")

    @display(description=_("手机号"))
    def masked_phone(self, obj: Member) -> str:
        return mask_phone(obj.phone)

    @display(description=_("邮箱"))
    def masked_email(self, obj: Member) -> str:
        return mask_email(obj.email)

    @display(description=_("生命周期"), ordering="lifecycle_stage",
             label={"new": "info", "active": "success", "lurking": "warning", "dormant": "warning",
                    "churned": "danger"})
    def lifecycle(self, obj: Member) -> Any:
        return obj.lifecycle_stage, obj.get_lifecycle_stage_display()

    @display(description=_("标签"))
    def tag_list(self, obj: Member) -> str:
        names = [mt.tag.name for mt in obj.member_tags.all()]
        return format_html_join(" ", '<span class="bg-base-100 dark:bg-base-800 px-1 rounded">{}</span>',
                                ((n,) for n in names[:5]))

    # -- writes go through the member services (validation + audit) ------------------------------
    def check_form(self, request: HttpRequest, form: Any) -> None:
        data = form.cleaned_data
        if "phone" in data:
            data["phone"] = check_phone(data.get("phone"))
        if "email" in data:
            data["email"] = check_email(data.get("email"))

    def save_model(self, request: HttpRequest, obj: Member, form: Any, change: bool) -> None:
        principal = request_principal(request)
        assert principal is not None
        data = form.cleaned_data
        if change:
            fresh = Member.objects.get(tenant_id=principal.tenant_id, pk=obj.pk)
            changes = {f: data[f] for f in form.changed_data if f in UPDATABLE}
            if changes:
                do_update_member(principal, fresh, **changes)
            obj.__dict__.update(Member.objects.get(pk=obj.pk).__dict__)
            return
        member = do_create_member(
            principal, display_name=data["display_name"], phone=data.get("phone", ""), email=data.get("email", ""),
            source_channel=data.get("source_channel", "") or "console", consent_marketing=data.get(
                "consent_marketing", False), note=data.get("note", ""),
        )
        extra = {k: data[k] for k in ("lifecycle_stage", "relationship_level", "consent_data")
                 if k in data and data[k] != getattr(member, k)}
        if extra:
            do_update_member(principal, member, **extra)
        obj.__dict__.update(member.__dict__)

    # -- actions ----------------------------------------------------------------------------------
    @action(description=_("合并所选的两位会员"), permissions=["change"])
    def merge_two(self, request: HttpRequest, queryset: QuerySet[Member]) -> HttpResponse | None:
        ids = sorted(queryset.values_list("pk", flat=True)[:3])
        if len(ids) != 2:
            messages.error(request, gettext("请恰好选择两位会员进行合并"))
            return None
        return HttpResponseRedirect(f"{reverse('console:member_merge')}?a={ids[0]}&b={ids[1]}")

    @action(description=_("个人信息: 导出全部 / 删除"), permissions=["change"])
    def data_rights(self, request: HttpRequest, queryset: QuerySet[Member]) -> HttpResponse | None:
        """The member's data rights (PIPL): a full export of one member, or erasure."""
        ids = list(queryset.values_list("pk", flat=True)[:2])
        if len(ids) != 1:
            messages.error(request, gettext("请只选择一位会员"))
            return None
        return HttpResponseRedirect(reverse("console:member_data_rights", args=[ids[0]]))

    def _export_selected(self, request: HttpRequest, queryset: QuerySet[Member], fmt: str) -> HttpResponse | None:
        principal = request_principal(request)
        if principal is None or not principal.can("members.read"):
            return None
        body = do_export_members(principal, fmt, selection=queryset)
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        response = HttpResponse(body, content_type="text/csv; charset=utf-8" if fmt == "csv" else
                                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        response["Content-Disposition"] = f'attachment; filename="shequn-members-{stamp}.{fmt}"'
        return response

    @action(description=_("导出所选会员 (CSV)"))
    def export_selected_csv(self, request: HttpRequest, queryset: QuerySet[Member]) -> HttpResponse | None:
        """Exactly the rows the operator selected (with "select all", everything the current filters
        and search show); masked and audited like every export."""
        return self._export_selected(request, queryset, "csv")

    @action(description=_("导出所选会员 (Excel)"))
    def export_selected_xlsx(self, request: HttpRequest, queryset: QuerySet[Member]) -> HttpResponse | None:
        return self._export_selected(request, queryset, "xlsx")

    @action(description=_("导入会员"), icon="upload", permissions=["add"])
    def import_members(self, request: HttpRequest) -> HttpResponse:
        return HttpResponseRedirect(reverse("console:member_import"))

    @action(description=_("导出 CSV"), icon="download")
    def export_csv(self, request: HttpRequest) -> HttpResponse:
        return HttpResponseRedirect(reverse("console:member_export", args=["csv"]))

    @action(description=_("导出 Excel"), icon="download")
    def export_xlsx(self, request: HttpRequest) -> HttpResponse:
        return HttpResponseRedirect(reverse("console:member_export", args=["xlsx"]))

    @action(description=_("合并建议"), icon="merge", permissions=["change"])
    def merge_suggestions(self, request: HttpRequest) -> HttpResponse:
        return HttpResponseRedirect(reverse("console:member_merge_suggestions"))


@admin.register(Tag)
class TagAdmin(TenantScopedAdmin):
    permission_area = "members"
    list_display = ("name", "scope", "community", "color", "member_count")
    list_filter = (("scope", ChoicesDropdownFilter),
                   tenant_related_filter("community", Tag._meta.get_field("community").related_model, _("社群")))
    search_fields = ("name",)
    fields = ("name", "scope", "community", "owner", "color")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tag]:
        return super().get_queryset(request).annotate(n_members=Count("member_tags")).select_related("community")

    @display(description=_("会员数"), ordering="n_members")
    def member_count(self, obj: Tag) -> Any:
        n = getattr(obj, "n_members", 0)
        if not n:
            return 0
        url = reverse("admin:members_member_changelist") + f"?tag={obj.pk}"
        return format_html('<a class="text-primary-600" href="{}">{}</a>', url, n)


def member_link(member: Member | None) -> str:
    if member is None:
        return "-"
    return format_html('<a href="{}">{}</a>', reverse("admin:members_member_change", args=[member.pk]),
                       member.display_name)


__all__ = ["MemberAdmin", "TagAdmin", "member_link", "register_member_inline"]
