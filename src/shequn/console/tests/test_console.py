"""The operator console as staff of each role see it: tenant isolation, role permissions, import,
export, merge, dashboards and the language switch."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from openpyxl import Workbook

from shequn.analytics.services import do_rebuild
from shequn.communities.models import Community
from shequn.console import dashboard, views
from shequn.core.models import ApiKey, AuditLog, StaffRole, Tenant
from shequn.members.models import Member
from shequn.testing.factories import StaffFactory
from shequn.testing.scenarios import seeded_club

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path, monkeypatch):
    settings.MEDIA_ROOT = tmp_path
    # the dashboard series are cached per tenant/community id, and ids repeat between tests;
    # no cache.clear(): the Redis pass shares one cache database between test workers
    monkeypatch.setattr(views, "DASHBOARD_TTL", 0)
    monkeypatch.setattr(dashboard, "HOME_TTL", 0)


@pytest.fixture
def data(tenant: Tenant, other_tenant: Tenant) -> dict:
    mine = seeded_club(tenant, members=12, days=20)
    theirs = seeded_club(other_tenant, members=5, days=5, prefix="别家")
    # the factories write events directly (no stream delivery): rebuild the rollups from them
    do_rebuild(tenant.pk)
    do_rebuild(other_tenant.pk)
    return {"mine": mine, "theirs": theirs}


def client_for(tenant: Tenant, role: str = StaffRole.OWNER) -> Client:
    staff = StaffFactory(tenant=tenant, role=role)
    c = Client()
    c.force_login(staff.user)
    return c


def admin_url(name: str, *args: object) -> str:
    return reverse(f"admin:{name}", args=args)


# -- tenant isolation ------------------------------------------------------------------------

def test_lists_show_only_own_tenant(data, tenant):
    c = client_for(tenant)
    html = c.get(admin_url("members_member_changelist") + "?merged=all").content.decode()
    assert "会员000" in html and "别家会员000" not in html
    # the filter choices list only this tenant's communities and tags
    assert "别家车友会" not in html and "别家车主" not in html
    for name in ("communities_community_changelist", "communities_chatgroup_changelist",
                 "communities_membership_changelist", "communities_roleassignment_changelist",
                 "activity_activityevent_changelist", "members_tag_changelist", "core_tenant_changelist"):
        resp = c.get(admin_url(name))
        assert resp.status_code == 200, name
        assert "别家" not in resp.content.decode(), name


def test_other_tenants_ids_are_not_found(data, tenant):
    c = client_for(tenant)
    theirs = data["theirs"]
    member, community = theirs.members[0], theirs.community
    for name, obj in (("members_member_change", member), ("communities_community_change", community),
                      ("communities_chatgroup_change", theirs.groups[0])):
        resp = c.get(admin_url(name, obj.pk))
        assert resp.status_code == 302 and resp["Location"] == admin_url("index"), name
    # a POST with another tenant's id changes nothing
    resp = c.post(admin_url("members_member_change", member.pk), {"display_name": "hacked"})
    assert resp.status_code == 302
    member.refresh_from_db()
    assert member.display_name == "别家会员000"
    resp = c.post(admin_url("members_member_delete", member.pk), {"post": "yes"})
    assert Member.objects.filter(pk=member.pk).exists()
    assert c.get(reverse("console:community_dashboard", args=[community.pk])).status_code == 404
    mine = data["mine"].members[0]
    assert c.get(reverse("console:member_merge") + f"?a={mine.pk}&b={member.pk}").status_code == 404
    # the tenant page lists only the operator's own organisation
    assert c.get(admin_url("core_tenant_change", theirs.community.tenant_id)).status_code == 302


def test_foreign_key_choices_and_autocomplete_are_scoped(data, tenant):
    c = client_for(tenant)
    html = c.get(admin_url("communities_chatgroup_add")).content.decode()
    assert "车友会" in html and "别家车友会" not in html
    resp = c.get(reverse("admin:autocomplete"), {"app_label": "communities", "model_name": "roleassignment",
                                                 "field_name": "member", "term": "会员"})
    assert resp.status_code == 200
    names = [r["text"] for r in resp.json()["results"]]
    assert names and not any(n.startswith("别家") for n in names)


def test_cannot_attach_other_tenants_community_by_id(data, tenant):
    c = client_for(tenant)
    theirs = data["theirs"].community
    resp = c.post(admin_url("communities_chatgroup_add"), {
        "community": theirs.pk, "name": "x", "platform": "wecom", "external_id": "zz", "capacity": 10,
        "is_active": "on"})
    assert resp.status_code == 200  # form error, not saved
    assert "community" in resp.context["adminform"].form.errors


# -- role permissions ------------------------------------------------------------------------

@pytest.mark.parametrize("role,can_add_member,can_add_community,sees_staff", [
    (StaffRole.OWNER, True, True, True),
    (StaffRole.OPERATOR, True, True, False),
    (StaffRole.CUSTOMER_SERVICE, True, False, False),
    (StaffRole.CONTENT, False, False, False),
    (StaffRole.FINANCE, False, False, False),
    (StaffRole.READONLY, False, False, False),
])
def test_role_permissions(data, tenant, role, can_add_member, can_add_community, sees_staff):
    c = client_for(tenant, role)
    assert c.get(admin_url("members_member_changelist")).status_code == 200  # every role may read members
    assert (c.get(admin_url("members_member_add")).status_code == 200) is can_add_member
    assert (c.get(admin_url("communities_community_add")).status_code == 200) is can_add_community
    assert (c.get(admin_url("core_staffmembership_changelist")).status_code == 200) is sees_staff
    member = data["mine"].members[0]
    c.post(admin_url("members_member_change", member.pk), {"display_name": "改名"})
    member.refresh_from_db()
    if not can_add_member:
        assert member.display_name == "会员000"


def test_readonly_role_sees_no_write_buttons_and_cannot_import(data, tenant):
    c = client_for(tenant, StaffRole.READONLY)
    html = c.get(admin_url("members_member_changelist")).content.decode()
    assert reverse("console:member_import") not in html
    assert c.get(reverse("console:member_import")).status_code == 403
    assert c.get(admin_url("core_auditlog_changelist")).status_code == 200
    log = AuditLog.objects.create(tenant=tenant, actor_type="system", action="x", object_type="Member",
                                  object_id="1")
    c2 = client_for(tenant, StaffRole.OWNER)
    # the audit log is read-only even for the owner
    assert c2.post(admin_url("core_auditlog_delete", log.pk), {"post": "yes"}).status_code == 403


def test_member_edit_goes_through_services(data, tenant):
    c = client_for(tenant, StaffRole.OPERATOR)
    member = data["mine"].members[0]
    form = {"display_name": "新名字", "phone": "12345", "email": "", "source_channel": "x", "note": "",
            "lifecycle_stage": "active", "relationship_level": 2, "consent_data": "on"}
    for prefix in ("identities", "member_tags", "memberships", "roles", "running_mutes"):
        form.update({f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0})
    resp = c.post(admin_url("members_member_change", member.pk), form)
    assert resp.status_code == 200 and "手机号格式不正确" in resp.content.decode()
    form["phone"] = "+86 138-0000-1111"
    resp = c.post(admin_url("members_member_change", member.pk), form)
    assert resp.status_code == 302, resp.content.decode()[:2000]
    member.refresh_from_db()
    assert member.phone == "13800001111" and member.display_name == "新名字" and member.relationship_level == 2
    log = AuditLog.objects.filter(tenant=tenant, action="member.update", object_id=str(member.pk)).get()
    assert "13800001111" not in str(log.data)  # field names only, never the values


def test_member_list_masks_phones(data, tenant):
    c = client_for(tenant)
    member = data["mine"].members[0]
    html = c.get(admin_url("members_member_changelist")).content.decode()
    assert member.phone not in html and f"{member.phone[:3]}****{member.phone[-4:]}" in html


def test_member_filters(data, tenant):
    c = client_for(tenant)
    mine = data["mine"]
    resp = c.get(admin_url("members_member_changelist"), {"tag": mine.tag.pk})
    shown = {m.pk for m in resp.context["cl"].result_list}
    assert shown == {m.pk for i, m in enumerate(mine.members) if i % 3 == 0}
    resp = c.get(admin_url("members_member_changelist"), {"role": "owner"})
    assert [m.pk for m in resp.context["cl"].result_list] == [mine.members[0].pk]
    resp = c.get(admin_url("members_member_changelist"), {"q": mine.members[3].phone})
    assert [m.pk for m in resp.context["cl"].result_list] == [mine.members[3].pk]
    resp = c.get(admin_url("members_member_changelist"), {"community": data["theirs"].community.pk})
    assert list(resp.context["cl"].result_list) == []


# -- staff and API keys ----------------------------------------------------------------------

def test_owner_creates_staff_but_never_takes_over_an_existing_login(data, tenant, other_tenant):
    c = client_for(tenant)
    StaffFactory(tenant=other_tenant, role=StaffRole.OWNER, username="bob")
    resp = c.post(admin_url("core_staffmembership_add"), {"username": "bob", "password": "longpassword",
                                                          "role": "cs", "display_name": "Bob"})
    assert resp.status_code == 200 and "该登录名已被使用" in resp.content.decode()
    resp = c.post(admin_url("core_staffmembership_add"), {"username": "carol", "password": "longpassword",
                                                          "role": "cs", "display_name": "Carol"})
    assert resp.status_code == 302
    assert Client().login(username="carol", password="longpassword")
    assert AuditLog.objects.filter(tenant=tenant, action="staff.create").exists()


def test_api_key_secret_shown_once_and_revocable(data, tenant):
    c = client_for(tenant)
    resp = c.post(admin_url("core_apikey_add"), {"name": "CRM", "scopes": ["members.read"]}, follow=True)
    html = resp.content.decode()
    key = ApiKey.objects.get(tenant=tenant, name="CRM")
    secret = re.search(r"sq_[0-9a-f]{8}_[A-Za-z0-9_\-]+", html).group(0)
    assert key.key_hash not in html and secret.startswith(f"sq_{key.prefix}_")
    detail = c.get(admin_url("core_apikey_change", key.pk)).content.decode()
    assert secret not in detail and key.key_hash not in detail
    c.post(admin_url("core_apikey_changelist"), {"action": "revoke_keys", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None


# -- import / export -------------------------------------------------------------------------

def upload(c: Client, name: str, body: bytes):
    return c.post(reverse("console:member_import"), {"file": SimpleUploadedFile(name, body)})


@pytest.mark.parametrize("body,needles", [
    ("名字,电话\n张三,13800000000\n".encode(), ["未知的列: 名字", "缺少必填列"]),
    ("昵称,手机号\n张三,12345\n李四,13800000001\n".encode(), ["<td>2</td><td>手机号</td>", "手机号格式不正确"]),
    ("昵称,手机号\n张三,13800000001\n李四,13800000001\n".encode(), ["<td>3</td><td>手机号</td>", "与第 2 行重复"]),
    ("昵称,手机号\n张三,13800000001\n".encode() + b"\xff\xfe\xfa\n", ["无法识别文件编码"]),
])
def test_import_bad_files_show_report_and_apply_nothing(data, tenant, body, needles):
    c = client_for(tenant)
    before = Member.objects.count()
    resp = upload(c, "members.csv", body)
    html = resp.content.decode()
    assert resp.status_code == 200 and 'id="import-errors"' in html and 'id="import-apply"' not in html
    for needle in needles:
        assert needle in html
    assert Member.objects.count() == before


def test_import_gbk_preview_then_apply_all(data, tenant):
    c = client_for(tenant)
    body = "昵称,手机号,标签,社群\n王五,13900000001,新客;北京,车友会\n赵六,13900000002,,\n".encode("gbk")
    before = Member.objects.filter(tenant=tenant).count()
    resp = upload(c, "seed.csv", body)
    html = resp.content.decode()
    assert 'id="import-preview-ok"' in html
    assert Member.objects.filter(tenant=tenant).count() == before  # the preview writes nothing
    token = re.search(r'name="token" value="([0-9a-f]{32})"', html).group(1)
    # another tenant's operator cannot apply this tenant's staged file
    other = client_for(data["theirs"].community.tenant)
    other.post(reverse("console:member_import"), {"token": token, "filename": "seed.csv"})
    assert not Member.objects.filter(display_name="王五").exclude(tenant=tenant).exists()
    resp = c.post(reverse("console:member_import"), {"token": token, "filename": "seed.csv"})
    assert resp.status_code == 302
    wang = Member.objects.get(tenant=tenant, display_name="王五")
    assert wang.phone == "13900000001" and wang.memberships.filter(community=data["mine"].community).exists()
    assert Member.objects.filter(tenant=tenant).count() == before + 2


def test_import_xlsx_reports_row_and_column(data, tenant):
    wb = Workbook()
    ws = wb.active
    ws.append(["昵称", "手机号", "邮箱"])
    ws.append(["甲", 13800000009, "bad-mail"])
    buf = io.BytesIO()
    wb.save(buf)
    c = client_for(tenant)
    html = upload(c, "m.xlsx", buf.getvalue()).content.decode()
    assert "<td>2</td><td>邮箱</td>" in html


def test_export_is_masked(data, tenant):
    c = client_for(tenant, StaffRole.READONLY)
    resp = c.get(reverse("console:member_export", args=["csv"]))
    body = resp.content.decode("utf-8-sig")
    member = data["mine"].members[0]
    assert resp.status_code == 200 and member.display_name in body and member.phone not in body
    assert "别家" not in body
    resp = c.get(reverse("console:member_export", args=["xlsx"]))
    assert resp.status_code == 200 and resp.content[:2] == b"PK"


def test_export_selected_rows_only_masked_and_audited(data, tenant, other_tenant):
    c = client_for(tenant, StaffRole.OPERATOR)
    mine = data["mine"].members
    theirs = data["theirs"].members
    picked = [mine[0].pk, mine[1].pk, theirs[0].pk]  # a forged foreign id in the POST is ignored
    resp = c.post(admin_url("members_member_changelist"),
                  {"action": "export_selected_csv", "_selected_action": picked})
    assert resp.status_code == 200 and resp["Content-Disposition"].endswith('.csv"')
    body = resp.content.decode("utf-8-sig")
    rows = [r for r in body.splitlines()[1:] if r]
    assert len(rows) == 2 and mine[0].display_name in body and mine[2].display_name not in body
    assert mine[0].phone not in body and "别家" not in body
    log = AuditLog.objects.filter(tenant=tenant, action="member.export").latest("pk")
    assert log.data["rows"] == 2 and log.data["filters"] == {"selection": True}
    xlsx = c.post(admin_url("members_member_changelist"),
                  {"action": "export_selected_xlsx", "_selected_action": [mine[0].pk]})
    assert xlsx.content[:2] == b"PK"


# -- merge -----------------------------------------------------------------------------------

def test_merge_action_confirmation_and_merge(data, tenant):
    c = client_for(tenant, StaffRole.OPERATOR)
    a, b = data["mine"].members[1], data["mine"].members[2]
    resp = c.post(admin_url("members_member_changelist"), {"action": "merge_two", "_selected_action": [a.pk, b.pk]})
    assert resp.status_code == 302 and reverse("console:member_merge") in resp["Location"]
    page = c.get(resp["Location"])
    assert page.status_code == 200 and a.display_name in page.content.decode()
    resp = c.post(reverse("console:member_merge"), {"a": a.pk, "b": b.pk, "keep": a.pk, "reason": "同一人"})
    assert resp.status_code == 302
    b.refresh_from_db()
    assert b.merged_into_id == a.pk
    assert a.identities.count() == 2
    assert AuditLog.objects.filter(tenant=tenant, action="member.merge", object_id=str(a.pk)).exists()
    # merging an already merged member is refused with a message, nothing changes
    resp = c.post(reverse("console:member_merge"), {"a": a.pk, "b": b.pk, "keep": a.pk})
    assert resp.status_code == 200 and 'id="merge-error"' in resp.content.decode()


def test_merge_action_needs_exactly_two(data, tenant):
    c = client_for(tenant)
    ids = [m.pk for m in data["mine"].members[:3]]
    resp = c.post(admin_url("members_member_changelist"), {"action": "merge_two", "_selected_action": ids},
                  follow=True)
    assert "请恰好选择两位会员" in resp.content.decode()


def test_merge_suggestions_list_exact_phone_matches(data, tenant):
    a, b = data["mine"].members[4], data["mine"].members[5]
    Member.objects.filter(pk=b.pk).update(phone=a.phone)
    c = client_for(tenant)
    html = c.get(reverse("console:member_merge_suggestions")).content.decode()
    assert f"?a={a.pk}&amp;b={b.pk}" in html and a.phone not in html


# -- dashboards ------------------------------------------------------------------------------

def test_index_shows_headline_figures_and_dashboard_links(data, tenant):
    c = client_for(tenant, StaffRole.READONLY)
    resp = c.get(admin_url("index"))
    kpis = {k["label"]: k["value"] for k in resp.context["shequn_kpis"]}
    assert kpis["会员"] == 12 and kpis["社群"] == 2
    html = resp.content.decode()
    assert reverse("console:community_dashboard", args=[data["mine"].community.pk]) in html


def test_community_dashboard_renders_series(data, tenant):
    c = client_for(tenant, StaffRole.CONTENT)
    community = data["mine"].community
    resp = c.get(reverse("console:community_dashboard", args=[community.pk]))
    html = resp.content.decode()
    assert resp.status_code == 200 and "echarts.min.js" in html and 'id="dashboard-series"' in html
    series = resp.context["series"]
    assert len(series["dates"]) == 90 and sum(series["messages"]) > 0 and series["members"][-1] > 0
    assert "车友一群" in html


# -- language --------------------------------------------------------------------------------

def test_console_is_chinese_by_default_and_english_after_switching(data, tenant):
    c = client_for(tenant)
    c.defaults["HTTP_ACCEPT_LANGUAGE"] = "en-US,en;q=0.9"  # a browser's English preference is not enough
    html = c.get(admin_url("members_member_changelist")).content.decode()
    assert "生命周期" in html and "全部应用" in html and "Lifecycle" not in html
    resp = c.post(reverse("set_language"), {"language": "en", "next": admin_url("members_member_changelist")})
    assert resp.status_code == 302
    html = c.get(admin_url("members_member_changelist")).content.decode()
    assert "Lifecycle" in html and "All applications" in html and "生命周期" not in html
    html = c.get(reverse("console:community_dashboard", args=[data["mine"].community.pk])).content.decode()
    assert "Members over time" in html


# -- writes through forms and inlines --------------------------------------------------------

def _member_form(member, **extra):
    form = {"display_name": member.display_name, "phone": member.phone, "email": "", "source_channel": "x",
            "note": "", "lifecycle_stage": member.lifecycle_stage, "relationship_level": member.relationship_level,
            "consent_data": "on"}
    for prefix in ("identities", "member_tags", "memberships", "roles", "running_mutes"):
        form.update({f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0})
    form.update(extra)
    return form


def test_inline_rows_get_the_tenant_and_duplicate_identities_are_form_errors(data, tenant):
    c = client_for(tenant)
    a, b = data["mine"].members[6], data["mine"].members[7]
    new_identity = {"identities-TOTAL_FORMS": 1, "identities-0-platform": "telegram",
                    "identities-0-external_id": "tg-777", "identities-0-member": a.pk}
    resp = c.post(admin_url("members_member_change", a.pk), _member_form(a, **new_identity))
    assert resp.status_code == 302
    ident = a.identities.get(platform="telegram")
    assert ident.tenant_id == tenant.pk
    dup = {**new_identity, "identities-0-member": b.pk}
    resp = c.post(admin_url("members_member_change", b.pk), _member_form(b, **dup))
    assert resp.status_code == 200  # a validation error on the inline row, not a crash
    assert not b.identities.filter(platform="telegram").exists()
    # the same account id in another tenant is not a clash
    theirs = data["theirs"].members[0]
    Identity = type(ident)
    Identity.objects.create(tenant=theirs.tenant, member=theirs, platform="telegram", external_id="tg-888")
    resp = c.post(admin_url("members_member_change", b.pk),
                  _member_form(b, **{**new_identity, "identities-0-external_id": "tg-888",
                                     "identities-0-member": b.pk}))
    assert resp.status_code == 302 and b.identities.filter(external_id="tg-888", tenant=tenant).exists()


def test_community_create_goes_through_services(data, tenant):
    c = client_for(tenant, StaffRole.OPERATOR)
    form = {"name": "读书会", "theme": "每月一本", "stage": "seeding", "audience": "", "needs": "",
            "purpose": "sharing", "category": "knowledge", "rules": "", "announcement": "",
            "entry_threshold": "free", "groups-TOTAL_FORMS": 0, "groups-INITIAL_FORMS": 0,
            "roles-TOTAL_FORMS": 0, "roles-INITIAL_FORMS": 0}
    resp = c.post(admin_url("communities_community_add"), form)
    assert resp.status_code == 302, resp.content.decode()[:1500]

    made = Community.objects.get(tenant=tenant, name="读书会")
    assert AuditLog.objects.filter(tenant=tenant, action="community.create", object_id=str(made.pk)).exists()
    resp = c.post(admin_url("communities_community_add"), {**form, "name": "车友会"})
    assert resp.status_code == 200 and "已有同名社群" in resp.content.decode()
    # another tenant's community name is free to use
    resp = c.post(admin_url("communities_community_add"), {**form, "name": "别家车友会"})
    assert resp.status_code == 302


def test_roles_without_member_write_see_contact_details_masked(data, tenant):
    member = data["mine"].members[0]
    Member.objects.filter(pk=member.pk).update(email="zhang.san@example.com")
    html = client_for(tenant, StaffRole.READONLY).get(admin_url("members_member_change", member.pk)).content.decode()
    assert member.phone not in html and "zhang.san@example.com" not in html
    assert f"{member.phone[:3]}****{member.phone[-4:]}" in html and "z***@example.com" in html
    html = client_for(tenant, StaffRole.CUSTOMER_SERVICE).get(
        admin_url("members_member_change", member.pk)).content.decode()
    assert member.phone in html  # those who edit members see what they edit


def test_staff_of_two_tenants_switches_and_sees_only_the_active_one(data, tenant, other_tenant):
    staff = StaffFactory(tenant=tenant, role=StaffRole.OPERATOR, username="agency")
    staff = StaffFactory(tenant=other_tenant, role=StaffRole.READONLY, username="agency")  # same login, second tenant
    c = Client()
    c.force_login(staff.user)
    html = c.get(admin_url("members_member_changelist")).content.decode()
    assert "会员000" in html and "别家会员000" not in html
    assert c.post(reverse("console:tenant_switch"), {"tenant": 999999}).status_code == 404
    resp = c.post(reverse("console:tenant_switch"), {"tenant": other_tenant.pk})
    assert resp.status_code == 302
    html = c.get(admin_url("members_member_changelist")).content.decode()
    assert "别家会员000" in html and ">会员000<" not in html
    assert c.get(admin_url("members_member_add")).status_code == 403  # read-only there


def test_console_pages_need_a_staff_login_with_a_tenant(data, tenant):
    community = data["mine"].community
    urls = [reverse("console:community_dashboard", args=[community.pk]), reverse("console:member_import"),
            reverse("console:member_export", args=["csv"]), reverse("console:member_merge_suggestions")]
    anonymous = Client()
    for url in urls:
        resp = anonymous.get(url)
        assert resp.status_code == 302 and "/login/" in resp["Location"], url

    stray = get_user_model().objects.create_user("stray", password="x" * 10, is_staff=True)
    c = Client()
    c.force_login(stray)
    assert c.get(admin_url("members_member_changelist")).status_code == 403
    assert "shequn createoperator" in c.get(admin_url("index")).content.decode()
    for url in urls:
        assert c.get(url).status_code in (403, 404), url
