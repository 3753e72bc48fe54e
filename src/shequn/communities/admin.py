# mypy: disable-error-code="untyped-decorator,no-any-return"
"""Console pages of the communities app: communities (groups and roles inline, link to the
dashboard), chat groups, membership history and role assignments."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import SimpleListFilter
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from unfold.contrib.filters.admin import ChoicesDropdownFilter, DropdownFilter
from unfold.decorators import action, display

from shequn.core.admin_base import (
    TenantScopedAdmin,
    TenantScopedTabularInline,
    confirm_first,
    post_redirect_back,
    request_principal,
    request_tenant_id,
    tenant_related_filter,
)
from shequn.core.errors import Conflict, ShequnError
from shequn.members.admin import MemberAdmin, register_member_inline
from shequn.members.models import Member

from .models import ChatGroup, Community, CommunityRole, JoinRequest, Membership, RoleAssignment
from .services import (
    check_community_fields,
    do_create_community,
    do_decide_join,
    do_gate_ways_in,
    do_update_community,
)


class OpenFilter(SimpleListFilter):
    """Current (open) rows vs ended ones, for history tables."""

    title = _("状态")
    parameter_name = "current"
    end_field = "left_at"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("当前")), ("no", _("已结束"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(**{f"{self.end_field}__isnull": True})
        if self.value() == "no":
            return queryset.filter(**{f"{self.end_field}__isnull": False})
        return queryset


class RoleOpenFilter(OpenFilter):
    end_field = "until"


class ChatGroupInline(TenantScopedTabularInline):
    model = ChatGroup
    permission_area = "communities"
    fields = ("name", "platform", "external_id", "capacity", "is_active")
    extra = 0


class RoleInline(TenantScopedTabularInline):
    model = RoleAssignment
    permission_area = "communities"
    fields = ("member", "role", "since", "until", "reward_note", "assigned_by")
    readonly_fields = ("assigned_by",)
    autocomplete_fields = ("member",)
    extra = 0
    verbose_name_plural = _("角色 (群主、拥护者、客服、内容输出者、嘉宾)")

    def get_queryset(self, request: HttpRequest) -> QuerySet[RoleAssignment]:
        return super().get_queryset(request).select_related("member").order_by("until", "role", "since")


COMMUNITY_FIELDS = ("name", "theme", "audience", "needs", "purpose", "category", "rules", "announcement",
                    "entry_threshold", "stage")


@admin.register(Community)
class CommunityAdmin(TenantScopedAdmin):
    permission_area = "communities"
    audit_writes = False  # the community services audit
    list_display = ("name", "theme", "purpose", "category", "stage", "entry_threshold", "member_count",
                    "group_count", "dashboard_link")
    list_filter = (("purpose", ChoicesDropdownFilter), ("category", ChoicesDropdownFilter),
                   ("stage", ChoicesDropdownFilter))
    search_fields = ("name", "theme")
    fieldsets = (
        (None, {"fields": ("name", "theme", "stage")}),
        (_("定位"), {"fields": ("audience", "needs", "purpose", "category")}),
        (_("规则与公告"), {"fields": ("rules", "announcement", "entry_threshold")}),
    )
    inlines = (ChatGroupInline, RoleInline)
    actions_detail = ["open_dashboard"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Community]:
        return super().get_queryset(request).annotate(
            n_members=Count("memberships__member", filter=Q(memberships__left_at__isnull=True), distinct=True),
            n_groups=Count("groups", distinct=True),
        )

    @display(description=_("当前成员"), ordering="n_members")
    def member_count(self, obj: Community) -> Any:
        return getattr(obj, "n_members", 0)

    @display(description=_("群数"), ordering="n_groups")
    def group_count(self, obj: Community) -> Any:
        return getattr(obj, "n_groups", 0)

    @display(description=_("看板"))
    def dashboard_link(self, obj: Community) -> str:
        return format_html('<a class="text-primary-600 font-semibold" href="{}">{}</a>',
                           reverse("console:community_dashboard", args=[obj.pk]), _("查看看板"))

    @action(description=_("社群看板"), icon="monitoring", url_path="dashboard")
    def open_dashboard(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return HttpResponseRedirect(reverse("console:community_dashboard", args=[object_id]))

    def prepare_inline_instance(self, request: HttpRequest, obj: Any) -> None:
        principal = request_principal(request)
        if isinstance(obj, RoleAssignment) and principal is not None and not obj.assigned_by:
            obj.assigned_by = principal.label

    def check_form(self, request: HttpRequest, form: Any) -> None:
        data = {k: v for k, v in form.cleaned_data.items() if k in COMMUNITY_FIELDS}
        check_community_fields(data)
        principal = request_principal(request)
        if principal is not None and "name" in data:
            clash = Community.objects.filter(tenant_id=principal.tenant_id, name=data["name"])
            if form.instance.pk:
                clash = clash.exclude(pk=form.instance.pk)
            if clash.exists():
                raise Conflict(str(_("已有同名社群: %(n)s")) % {"n": data["name"]}, details={"field": "name"})

    def save_model(self, request: HttpRequest, obj: Community, form: Any, change: bool) -> None:
        principal = request_principal(request)
        assert principal is not None
        data = form.cleaned_data
        if change:
            changes = {f: data[f] for f in form.changed_data if f in COMMUNITY_FIELDS}
            if changes:
                fresh = Community.objects.get(tenant_id=principal.tenant_id, pk=obj.pk)
                do_update_community(principal, fresh, **changes)
            obj.__dict__.update(Community.objects.get(pk=obj.pk).__dict__)
            return
        community = do_create_community(principal, **{k: data[k] for k in COMMUNITY_FIELDS if k in data})
        obj.__dict__.update(community.__dict__)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # groups added in the inline join a gated community gated (Matrix rooms knock, links ask)
        new_groups = [g for fs in formsets if fs.model is ChatGroup for g in getattr(fs, "new_objects", [])]
        if new_groups:
            do_gate_ways_in(form.instance, new_groups)


@admin.register(ChatGroup)
class ChatGroupAdmin(TenantScopedAdmin):
    permission_area = "communities"
    list_display = ("name", "community", "platform", "external_id", "member_count", "capacity", "is_active")
    list_filter = (tenant_related_filter("community", Community, _("社群")), ("platform", ChoicesDropdownFilter),
                   "is_active")
    search_fields = ("name", "=external_id")
    fields = ("community", "name", "platform", "external_id", "capacity", "is_active")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChatGroup]:
        return super().get_queryset(request).select_related("community").annotate(
            n_members=Count("memberships", filter=Q(memberships__left_at__isnull=True)))

    @display(description=_("当前成员"), ordering="n_members")
    def member_count(self, obj: ChatGroup) -> Any:
        return getattr(obj, "n_members", 0)

    def save_model(self, request: HttpRequest, obj: ChatGroup, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change or {"community", "is_active"} & set(form.changed_data):
            do_gate_ways_in(obj.community, [obj])  # a group of a gated community asks before letting in


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    """The full history: one row per stay; a re-join is a new row."""

    permission_area = "communities"
    list_display = ("member", "community", "group", "joined_at", "left_at", "join_source", "inviter", "exit_reason")
    list_filter = (
        tenant_related_filter("community", Community, _("社群")),
        tenant_related_filter("group", ChatGroup, _("群"), parameter_name="group"),
        ("join_source", ChoicesDropdownFilter),
        OpenFilter,
    )
    search_fields = ("member__display_name", "=member__phone")
    date_hierarchy = "joined_at"
    autocomplete_fields = ("member", "inviter")
    list_select_related = ("member", "community", "group", "inviter")
    fields = ("member", "community", "group", "joined_at", "left_at", "join_source", "inviter", "exit_reason")
    show_full_result_count = False
    ordering = ("-joined_at",)


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(TenantScopedAdmin):
    permission_area = "communities"
    list_display = ("member", "community", "role", "since", "until", "assigned_by", "reward_note")
    list_filter = (tenant_related_filter("community", Community, _("社群")), ("role", ChoicesDropdownFilter),
                   RoleOpenFilter)
    search_fields = ("member__display_name",)
    autocomplete_fields = ("member",)
    list_select_related = ("member", "community")
    fields = ("community", "member", "role", "since", "until", "reward_note", "assigned_by")
    readonly_fields = ("assigned_by",)

    def save_model(self, request: HttpRequest, obj: RoleAssignment, form: Any, change: bool) -> None:
        principal = request_principal(request)
        if not change and principal is not None:
            obj.assigned_by = principal.label
        super().save_model(request, obj, form, change)


# --- the member page: their communities and roles (members is below communities and cannot show them) ---


class CommunityFilter(DropdownFilter):  # type: ignore[misc]
    """Members currently in a community (open membership)."""

    title = _("社群")
    parameter_name = "community"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        tenant_id = request_tenant_id(request)
        if tenant_id is None:
            return []
        return [(str(c.pk), c.name) for c in Community.objects.filter(tenant_id=tenant_id).order_by("pk")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Member]) -> QuerySet[Member]:
        value = self.value()
        if not value or not str(value).isdigit():
            return queryset
        return queryset.filter(memberships__community_id=int(value), memberships__left_at__isnull=True).distinct()


class RoleFilter(DropdownFilter):  # type: ignore[misc]
    """Members holding a community role now."""

    title = _("社群角色")
    parameter_name = "role"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(v), str(label)) for v, label in CommunityRole.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Member]) -> QuerySet[Member]:
        value = self.value()
        if value not in CommunityRole.values:
            return queryset
        return queryset.filter(roles__role=value, roles__until__isnull=True).distinct()



class MembershipHistoryInline(TenantScopedTabularInline):
    """Every stay in every community, joined and left (read-only here; edit on the membership page)."""

    model = Membership
    fk_name = "member"
    permission_area = "communities"
    fields = ("community", "group", "joined_at", "left_at", "join_source", "exit_reason")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-joined_at",)
    verbose_name = _("社群经历")
    verbose_name_plural = _("社群经历 (全部历史)")
    per_page = 20

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RoleHistoryInline(TenantScopedTabularInline):
    model = RoleAssignment
    permission_area = "communities"
    fields = ("community", "role", "since", "until", "assigned_by", "reward_note")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = _("社群角色")
    verbose_name_plural = _("社群角色")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


register_member_inline(MembershipHistoryInline)
register_member_inline(RoleHistoryInline)
MemberAdmin.list_filter = (*MemberAdmin.list_filter[:3], CommunityFilter, RoleFilter, *MemberAdmin.list_filter[3:])


def _decide(model_admin: admin.ModelAdmin[Any], request: HttpRequest, ids: list[int], approve: bool) -> int:
    principal = request_principal(request)
    if principal is None:
        return 0
    done = 0
    for pk in ids:
        try:
            do_decide_join(principal, pk, approve=approve, note=request.POST.get("note", "")[:200])
            done += 1
        except ShequnError as exc:
            model_admin.message_user(request, exc.message, messages.ERROR)
    return done


@admin.register(JoinRequest)
class JoinRequestAdmin(TenantScopedAdmin):
    """入群申请: the approval queue of every way in (portal requests, Telegram join requests, Matrix
    knocks). Approve or decline one row with its buttons, or several with the bulk actions; a platform
    request's answer goes to the platform through the outbox."""

    permission_area = "communities"
    list_display = ("created_at", "member", "community", "group", "via", "message", "status", "decided_by",
                    "decision_note")
    list_filter = ("status", "via", tenant_related_filter("community", Community, _("社群")))
    search_fields = ("member__display_name", "message")
    ordering = ("-pk",)
    actions = ("approve", "reject")
    actions_row = ["approve_row", "reject_row"]

    def has_add_permission(self, request: HttpRequest, *args: object) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def _back(self, request: HttpRequest) -> HttpResponse:
        return post_redirect_back(request, reverse("admin:communities_joinrequest_changelist"))

    @admin.action(description=_("通过"), permissions=["view"])
    def approve(self, request: HttpRequest, queryset: QuerySet[JoinRequest]) -> None:
        n = _decide(self, request, list(queryset.filter(status=JoinRequest.Status.PENDING)
                                        .values_list("pk", flat=True)), True)
        self.message_user(request, _("已处理 %(n)d 个申请") % {"n": n})

    @admin.action(description=_("拒绝"), permissions=["view"])
    def reject(self, request: HttpRequest, queryset: QuerySet[JoinRequest]) -> None:
        n = _decide(self, request, list(queryset.filter(status=JoinRequest.Status.PENDING)
                                        .values_list("pk", flat=True)), False)
        self.message_user(request, _("已处理 %(n)d 个申请") % {"n": n})

    @action(description=_("通过"), url_path="approve", permissions=["view"])
    @confirm_first
    def approve_row(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if _decide(self, request, [int(object_id)], True):
            self.message_user(request, _("已通过"))
        return self._back(request)

    @action(description=_("拒绝"), url_path="reject", permissions=["view"])
    @confirm_first
    def reject_row(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if _decide(self, request, [int(object_id)], False):
            self.message_user(request, _("已拒绝"))
        return self._back(request)
