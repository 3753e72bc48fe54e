"""The base of every console (admin) page over tenant data.

Rows are filtered to the operator's active tenant, new rows get it, foreign-key choices are limited
to it, and view/add/change/delete follow the operator's staff role (``permission_area``).

Contract for every engine's ``admin.py``::

    @admin.register(MyModel)
    class MyModelAdmin(TenantScopedAdmin):
        permission_area = "moderation"      # an area of core/permissions.py
        read_only_model = False             # True for append-only tables (no add/change/delete)
        audit_writes = True                 # console saves/deletes write an AuditLog row

* ``get_queryset`` is filtered to ``request.tenant``; an id of another tenant's row behaves as not
  found (the admin redirects to the index with "does not exist").
* Forms: new objects (and new inline rows) get the tenant *before* validation, so unique constraints
  that include the tenant are validated as form errors instead of failing at save time.
* Override ``check_form(request, form)`` to run a service validator (``check_*``); a
  :class:`~shequn.core.errors.ShequnError` raised there becomes a form error on the field named in
  ``details["field"]``. A ShequnError raised while saving rolls the whole save back and is shown as
  an error message (nothing half-written).
* Foreign-key and many-to-many choices, and :func:`tenant_related_filter` list filters, only offer
  the tenant's rows.
* Money: every integer column named ``*_fen`` is entered in 元 (:class:`~shequn.core.money.YuanField`)
  and shown in 元 in lists (``¥19.90``); the database keeps fen.
* Service-backed creates and changes: set ``create_service`` (``do_create_*``), ``check_service``
  (``check_*``), ``change_service`` (``do_update_*``), ``change_check`` (``check_update_*``) and
  ``service_kwargs`` — the form's ``clean()`` runs the check, the save calls the service, so the
  console shows exactly the API's errors (see :class:`ServiceCreateMixin`).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterator
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import SimpleListFilter
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.functional import lazy
from django.utils.http import url_has_allowed_host_and_scheme
from unfold import widgets as unfold_widgets
from unfold.admin import ModelAdmin, StackedInline, TabularInline
from unfold.contrib.filters.admin import DropdownFilter

from .dbrouting import replica_reads
from .errors import ShequnError
from .money import PercentBpsField, YuanField, percent_label, yuan, yuan_label
from .permissions import Principal
from .services import do_audit


def request_principal(request: HttpRequest) -> Principal | None:
    return getattr(request, "principal", None)


def confirm_first(func: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Put under unfold's ``@action`` (so its permission check runs first) on a row or detail button
    that changes data.

    Unfold draws those buttons as links, so the browser asks with GET — and a GET must never change
    anything (a link in a chat or a prefetch would approve, replay or lift). A GET now shows a
    confirmation page whose form POSTs (with the CSRF token) to the same URL; only the POST runs the
    action, and its redirect goes back where the operator came from."""

    @functools.wraps(func)
    def wrapper(model_admin: Any, request: HttpRequest, object_id: Any, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "POST":
            return func(model_admin, request, object_id, *args, **kwargs)
        opts = model_admin.model._meta
        back = request.META.get("HTTP_REFERER") or ""
        if not _same_host(request, back):
            back = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        try:
            obj = model_admin.get_queryset(request).filter(pk=int(object_id)).first()
        except (TypeError, ValueError):
            obj = None
        label = getattr(getattr(model_admin, func.__name__, None), "short_description", "")
        ctx = {**model_admin.admin_site.each_context(request), "title": label, "action_label": label,
               "object": obj, "object_label": opts.verbose_name, "back_url": back, "opts": opts}
        return TemplateResponse(request, "console/confirm_action.html", ctx)

    wrapper.confirms_first = True  # type: ignore[attr-defined]
    return wrapper


def post_redirect_back(request: HttpRequest, fallback: str) -> HttpResponseRedirect:
    """Where a confirmed action returns: the page the confirmation came from (same host only)."""
    nxt = request.POST.get("next") or request.META.get("HTTP_REFERER") or ""
    return HttpResponseRedirect(nxt if _same_host(request, nxt) else fallback)


def _same_host(request: HttpRequest, url: str) -> bool:
    """May the console send the operator to ``url``: a path or an address on this host (never elsewhere)."""
    return url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}, require_https=request.is_secure())


def request_tenant_id(request: HttpRequest) -> int | None:
    tenant = getattr(request, "tenant", None)
    return None if tenant is None else int(tenant.pk)


def _can(request: HttpRequest, area: str, verb: str) -> bool:
    p = request_principal(request)
    return p is not None and p.can(f"{area}.{verb}")


def can(request: HttpRequest, permission: str) -> bool:
    """``can(request, "members.write")`` for the console user's staff role in the active tenant."""
    p = request_principal(request)
    return p is not None and p.can(permission)


def _has_tenant_field(model: type[models.Model] | None) -> bool:
    return model is not None and any(f.name == "tenant" for f in model._meta.get_fields())


def shequn_error_field(exc: ShequnError, fields: Any) -> str | None:
    details = exc.details
    if isinstance(details, dict):
        name = details.get("field")
        if isinstance(name, str) and name in fields:
            return name
    return None


class TenantScopedMixin:
    permission_area = "members"
    #: append-only models (audit, activity) set this to refuse edits and deletes in the console
    read_only_model = False
    #: console saves and deletes write an audit row (set False where a service already audits)
    audit_writes = True

    # -- rows --------------------------------------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs: QuerySet[Any] = super().get_queryset(request)  # type: ignore[misc]
        tenant = getattr(request, "tenant", None)
        if tenant is None:
            return qs.none()
        return qs.filter(tenant_id=tenant.pk)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change and getattr(request, "tenant", None) is not None:
            obj.tenant_id = request.tenant.pk  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        if self.audit_writes:
            self._audit(request, "update" if change else "create", obj,
                        {"fields": sorted(getattr(form, "changed_data", []) or [])})

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        pk = obj.pk
        super().delete_model(request, obj)  # type: ignore[misc]
        if self.audit_writes:
            obj.pk = pk
            self._audit(request, "delete", obj, {})

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        objs = list(queryset)
        super().delete_queryset(request, queryset)  # type: ignore[misc]
        if self.audit_writes:
            for obj in objs:
                self._audit(request, "delete", obj, {})

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        tenant_id = request_tenant_id(request)
        instances = formset.save(commit=False)
        for obj in formset.deleted_objects:
            obj.delete()
        for obj in instances:
            if obj.pk is None:
                if tenant_id is not None and hasattr(obj, "tenant_id") and obj.tenant_id is None:
                    obj.tenant_id = tenant_id
                self.prepare_inline_instance(request, obj)
            obj.save()
        formset.save_m2m()
        if self.audit_writes and (instances or formset.deleted_objects):
            parent = form.instance
            self._audit(request, "inline_update", parent, {
                "inline": formset.model._meta.model_name,
                "saved": len(instances), "deleted": len(formset.deleted_objects),
            })

    def prepare_inline_instance(self, request: HttpRequest, obj: Any) -> None:
        """Hook: fill server-side fields of a new inline row before it is saved."""

    def _audit(self, request: HttpRequest, verb: str, obj: Any, data: dict[str, Any]) -> None:
        principal = request_principal(request)
        if principal is None:
            return

        do_audit(principal, f"console.{obj._meta.model_name}.{verb}", obj.__class__.__name__, obj.pk,
                 data=data)

    # -- forms -------------------------------------------------------------------------------
    def check_form(self, request: HttpRequest, form: Any) -> None:
        """Hook: run service validators; raise ShequnError to reject the form."""

    def _tenant_form(self, request: HttpRequest, form_class: Any, run_checks: bool) -> Any:
        tenant_id = request_tenant_id(request)
        admin_ref = self

        class TenantForm(form_class):  # type: ignore[misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                if tenant_id is not None and hasattr(self.instance, "tenant_id") and self.instance.tenant_id is None:
                    self.instance.tenant_id = tenant_id
                style_plain_widgets(self)

            def _get_validation_exclusions(self) -> Any:
                excluded = super()._get_validation_exclusions()
                if getattr(self.instance, "tenant_id", None) is not None:
                    excluded.discard("tenant")
                return excluded

            def clean(self) -> Any:
                data = super().clean()
                if run_checks and not self.errors:
                    try:
                        admin_ref.check_form(request, self)
                    except ShequnError as exc:
                        self.add_error(shequn_error_field(exc, self.fields), exc.message)
                return data

        TenantForm.__name__ = form_class.__name__
        return TenantForm

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if is_fen_field(db_field):
            return YuanField(label=yuan_label(db_field.verbose_name), required=not db_field.blank and
                             not db_field.has_default(), initial=db_field.default if db_field.has_default() else None,
                             help_text=db_field.help_text or None)
        if is_bps_field(db_field):
            return PercentBpsField(label=percent_label(db_field.verbose_name), required=not db_field.blank and
                                   not db_field.has_default(),
                                   initial=db_field.default if db_field.has_default() else None)
        return super().formfield_for_dbfield(db_field, request, **kwargs)  # type: ignore[misc]

    def get_list_display(self, request: HttpRequest) -> Any:
        names = super().get_list_display(request)  # type: ignore[misc]
        model = getattr(self, "model", None)
        return [_yuan_column(model, n) if isinstance(n, str) else n for n in names]

    def formfield_for_foreignkey(self, db_field: models.ForeignKey[Any, Any], request: HttpRequest,
                                 **kwargs: Any) -> Any:
        tenant = getattr(request, "tenant", None)
        related = db_field.related_model
        if tenant is not None and _has_tenant_field(related):
            kwargs.setdefault("queryset", related._default_manager.filter(tenant_id=tenant.pk))
        elif tenant is None and _has_tenant_field(related):
            kwargs.setdefault("queryset", related._default_manager.none())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        tenant = getattr(request, "tenant", None)
        related = db_field.related_model
        if _has_tenant_field(related):
            qs = related._default_manager.filter(tenant_id=tenant.pk) if tenant is not None else \
                related._default_manager.none()
            kwargs.setdefault("queryset", qs)
        return super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Any:
        exclude = list(super().get_exclude(request, obj) or [])  # type: ignore[misc]
        return [*exclude, "tenant"]

    # -- permissions -------------------------------------------------------------------------
    def has_module_permission(self, request: HttpRequest) -> bool:
        return _can(request, self.permission_area, "read")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _can(request, self.permission_area, "read")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return not self.read_only_model and _can(request, self.permission_area, "write")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not self.read_only_model and _can(request, self.permission_area, "write")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not self.read_only_model and _can(request, self.permission_area, "write")


def style_plain_widgets(form: Any) -> None:
    """Give the fields a form declares itself (not from the model: Unfold styles those) Unfold's
    classes, so their inputs are visible like the others (a bare ``<input>`` has no border in the
    console's stylesheet)."""
    for field in form.fields.values():
        widget = field.widget
        if widget.attrs.get("class"):
            continue
        if isinstance(widget, forms.CheckboxInput):
            classes = unfold_widgets.CHECKBOX_CLASSES
        elif isinstance(widget, forms.Textarea):
            classes = unfold_widgets.TEXTAREA_CLASSES
        elif isinstance(widget, forms.Select | forms.SelectMultiple):
            classes = unfold_widgets.SELECT_CLASSES
        elif isinstance(widget, forms.widgets.Input) and not isinstance(widget, forms.HiddenInput | forms.FileInput):
            classes = unfold_widgets.INPUT_CLASSES
            if isinstance(widget, forms.DateInput) and widget.input_type == "text":
                widget.input_type = "date"
        else:
            continue
        widget.attrs["class"] = " ".join(classes)


def is_bps_field(db_field: Any) -> bool:
    """A rate in basis points (万分之): entered and shown in percent."""
    return isinstance(db_field, models.IntegerField) and str(getattr(db_field, "name", "")).endswith("_bps")


def is_fen_field(db_field: Any) -> bool:
    """An integer money column: stored in fen, shown and entered in 元."""
    return isinstance(db_field, models.IntegerField) and not db_field.choices and \
        str(getattr(db_field, "name", "")).endswith("_fen")


_YUAN_COLUMNS: dict[tuple[type[models.Model], str], Any] = {}


def _strip_yuan(label: Any) -> str:
    return yuan_label(label).replace("(元)", "").replace("（元）", "")


_column_label = lazy(_strip_yuan, str)


def _yuan_column(model: Any, name: str) -> Any:
    """A list column for a ``*_fen`` model field that shows 元; other names are returned unchanged."""
    try:
        field = model._meta.get_field(name)
    except Exception:
        return name
    if not is_fen_field(field):
        return name
    key = (model, name)
    if key not in _YUAN_COLUMNS:
        # lazy: the column is cached per model and must follow each request's language
        label = _column_label(field.verbose_name)

        def column(obj: Any) -> str:
            return yuan(getattr(obj, name))

        column.short_description = label  # type: ignore[attr-defined]
        column.admin_order_field = name  # type: ignore[attr-defined]
        column.__name__ = f"{name}_yuan"
        _YUAN_COLUMNS[key] = column
    return _YUAN_COLUMNS[key]


class ServiceCreateMixin:
    """Console adds and changes that go through the app's services, with the services' errors as
    form errors.

    Assign services as ``staticmethod(services.do_create_x)`` (or define methods).

    * **Add**: ``check_service(tenant_id, **kwargs)`` runs in the add form's ``clean()`` (a
      ``ShequnError`` becomes an error on the field named in ``details["field"]``, mapped through
      ``field_map``), then ``create_service(principal, **kwargs)`` writes the row (and audits it).
      ``service_kwargs(request, cleaned_data)`` turns the form into the service's arguments; with
      ``service_input`` set (an input dataclass such as ``commerce.services.NewProduct``) they are
      passed to the add's check and create as that one object instead.
    * **Change**: ``change_check(tenant_id, pk, **changes)`` runs in the change form's ``clean()``
      and ``change_service(principal, pk, **changes)`` writes (``do_update_x``: the same ``check_*``
      as creation plus the object's state rules). ``changes`` are the ``service_kwargs`` named in
      ``change_fields`` (the fields the change form shows; override ``change_kwargs`` for more).
      Without a ``change_service`` the model save of the base class is used."""

    create_service: Any = None
    check_service: Any = None
    change_service: Any = None
    service_input: Any = None
    change_check: Any = None
    #: the service keywords a change form sends (its editable fields)
    change_fields: tuple[str, ...] = ()
    #: service field name → form field name, for errors whose field is named differently
    field_map: dict[str, str] = {}

    def service_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _call(self, service: Any, first: Any, request: HttpRequest, data: dict[str, Any]) -> Any:
        kwargs = self.service_kwargs(request, data)
        if self.service_input is not None:
            return service(first, self.service_input(**kwargs))
        return service(first, **kwargs)

    def change_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        kwargs = self.service_kwargs(request, data)
        return {k: kwargs[k] for k in self.change_fields if k in kwargs}

    def check_form(self, request: HttpRequest, form: Any) -> None:
        tenant_id = request_tenant_id(request)
        if tenant_id is None:
            return
        try:
            if form.instance.pk is None and self.check_service is not None:
                self._call(self.check_service, tenant_id, request, form.cleaned_data)
            elif form.instance.pk is not None and self.change_service is not None:
                self.check_change(request, form)
        except ShequnError as exc:
            details = exc.details if isinstance(exc.details, dict) else {}
            name = details.get("field")
            if isinstance(name, str) and name in self.field_map:
                exc.details = {**details, "field": self.field_map[name]}
            raise

    def _form_changes(self, request: HttpRequest, form: Any) -> dict[str, Any]:
        """``change_kwargs``, where a time the form shows to the minute keeps the stored seconds (an
        untouched start time must not read as a change, e.g. of a running flash sale)."""
        kwargs = self.change_kwargs(request, form.cleaned_data)
        stored = type(form.instance)._default_manager.filter(pk=form.instance.pk).values().first() or {}
        for key, value in kwargs.items():
            old = stored.get(key)
            if (isinstance(value, dt.datetime | dt.time) and type(old) is type(value)
                    and value == old.replace(second=0, microsecond=0)):
                kwargs[key] = old
        return kwargs

    def check_change(self, request: HttpRequest, form: Any) -> None:
        """Validate a change through the service's checks (``change_check``)."""
        tenant_id = request_tenant_id(request)
        if self.change_check is not None and tenant_id is not None:
            self.change_check(tenant_id, form.instance.pk, **self._form_changes(request, form))

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        principal = request_principal(request)
        if change and self.change_service is not None and principal is not None:
            self.change_service(principal, obj.pk, **self._form_changes(request, form))
            obj.refresh_from_db()
            return
        if change or self.create_service is None or principal is None:
            super().save_model(request, obj, form, change)  # type: ignore[misc]
            return
        created = self._call(self.create_service, principal, request, form.cleaned_data)
        if isinstance(created, tuple):
            created = created[0]
        adopt(obj, created)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        if change and self.change_service is not None:
            for formset in formsets:  # the object itself (and its many-to-many) went through the service
                self.save_formset(request, form, formset, change=change)  # type: ignore[attr-defined]
            return
        if change or self.create_service is None:
            super().save_related(request, form, formsets, change)  # type: ignore[misc]


def adopt(obj: Any, created: Any) -> None:
    """Make the admin's unsaved ``obj`` the row a service created (for the redirect and the log)."""
    for f in created._meta.concrete_fields:
        setattr(obj, f.attname, getattr(created, f.attname))
    obj._state.adding = False
    obj._state.db = created._state.db


class TenantScopedAdmin(TenantScopedMixin, ModelAdmin):  # type: ignore[misc]
    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """A list page shown (GET) may be read from the replica (bounded staleness; the staff user's own
        writes of the last seconds pin it to the primary); actions and list edits (POST) never."""
        if request.method in ("GET", "HEAD"):
            with replica_reads():
                response: HttpResponse = super().changelist_view(request, extra_context)
                if isinstance(response, TemplateResponse):
                    response.render()  # the rows are fetched while rendering: inside the block
                return response
        return super().changelist_view(request, extra_context)  # type: ignore[no-any-return]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        return self._tenant_form(request, form, run_checks=True)

    def changeform_view(self, request: HttpRequest, object_id: str | None = None, form_url: str = "",
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)  # type: ignore[no-any-return]
        except ShequnError as exc:
            # the admin wraps the save in a transaction: it rolled back, nothing is half-written
            messages.error(request, exc.message)
            return HttpResponseRedirect(request.get_full_path())


class _TenantInlineMixin(TenantScopedMixin):
    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        kwargs["form"] = self._tenant_form(request, kwargs.get("form", self.form), run_checks=False)  # type: ignore[attr-defined]
        return super().get_formset(request, obj, **kwargs)  # type: ignore[misc]

    # inlines follow the permission of the page they sit on (checked there); their own area
    # decides whether rows may be added/changed
    def has_module_permission(self, request: HttpRequest) -> bool:
        return False


class TenantScopedTabularInline(_TenantInlineMixin, TabularInline):  # type: ignore[misc]
    pass


class TenantScopedStackedInline(_TenantInlineMixin, StackedInline):  # type: ignore[misc]
    pass


def tenant_related_filter(field_path: str, model: type[models.Model], title: Any,
                          parameter_name: str | None = None, label_field: str | None = None) -> type[SimpleListFilter]:
    """A dropdown list filter on a related row that offers only the operator's tenant's rows
    (Django's RelatedFieldListFilter would list every tenant's rows)."""
    param = parameter_name or field_path.replace("__", "_")

    class TenantRelatedFilter(DropdownFilter):  # type: ignore[misc]
        parameter_name = param

        def lookups(self, request: HttpRequest, model_admin: Any) -> Iterator[tuple[str, str]]:
            tenant_id = request_tenant_id(request)
            if tenant_id is None:
                return iter(())
            rows = model._default_manager.filter(tenant_id=tenant_id).order_by("pk")
            return ((str(r.pk), str(getattr(r, label_field) if label_field else r)) for r in rows)

        def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
            value = self.value()
            if not value or not str(value).isdigit():
                return queryset
            return queryset.filter(**{field_path: int(value)}).distinct()

    TenantRelatedFilter.title = title
    return TenantRelatedFilter


__all__ = [
    "ServiceCreateMixin",
    "TenantScopedAdmin",
    "TenantScopedMixin",
    "TenantScopedStackedInline",
    "TenantScopedTabularInline",
    "admin",
    "adopt",
    "can",
    "request_principal",
    "request_tenant_id",
    "tenant_related_filter",
]
