import io

import pytest
from openpyxl import Workbook, load_workbook

from shequn.communities.models import Community, Membership
from shequn.core.errors import Invalid
from shequn.core.models import AuditLog
from shequn.core.permissions import Principal
from shequn.members.importing import do_import_members, export_csv, export_xlsx
from shequn.members.models import Member
from shequn.members.services import do_create_member

GOOD = ("昵称,手机号,标签,平台,平台账号,社群\n"
        "小王,13812348888,车主;VIP,企业微信,wm001,车友会\n"
        "Lily,,护肤,telegram,555,\n")


@pytest.fixture
def community(tenant):
    return Community.objects.create(tenant=tenant, name="车友会")


def errors(report):
    return [(e.row, e.column) for e in report.errors]


def test_good_csv_is_applied(system, community):
    report = do_import_members(system, "seed.csv", GOOD.encode())
    assert report.ok and report.created == 2
    wang = Member.objects.get(display_name="小王")
    assert wang.identities.get().platform == "wecom"
    assert Membership.objects.get(member=wang).join_source == "import"
    assert AuditLog.objects.filter(action="member.import").exists()


def test_gbk_file_is_read(system, community):
    report = do_import_members(system, "seed.csv", GOOD.encode("gbk"))
    assert report.ok and Member.objects.filter(display_name="小王").exists()


def test_undecodable_file_names_the_line(system):
    # a lone 0xFF is invalid in both UTF-8 and GB18030
    with pytest.raises(Invalid) as exc:
        do_import_members(system, "x.csv", "昵称\n".encode() + b"\xff\n")
    assert exc.value.details[0]["row"] == 2
    assert Member.objects.count() == 0


def test_wrong_columns(system):
    report = do_import_members(system, "x.csv", "名字,电话\n小王,138\n".encode())
    assert errors(report) == [(1, "名字"), (1, "电话"), (1, "display_name")]
    assert Member.objects.count() == 0


def test_bad_rows_apply_nothing(system, community):
    data = ("昵称,手机号,平台,平台账号,社群\n"
            "小王,13812348888,wecom,wm1,车友会\n"
            ",13812348889,,,\n"                 # row 3: no name
            "老李,12345,,,\n"                     # row 4: bad phone
            "小张,13812348888,,,\n"               # row 5: duplicate phone of row 2
            "小赵,,icq,1,\n"                      # row 6: unknown platform
            "小钱,,wecom,wm1,\n"                  # row 7: duplicate identity of row 2
            "小孙,,,,没这个群\n")                 # row 8: unknown community
    report = do_import_members(system, "x.csv", data.encode())
    assert errors(report) == [(3, "昵称"), (4, "手机号"), (5, "手机号"), (6, "平台"), (7, "平台账号"), (8, "社群")]
    assert "第 2 行" in report.errors[2].message
    assert Member.objects.count() == 0 and Membership.objects.count() == 0


def test_existing_member_conflicts(system):
    do_create_member(system, display_name="已有", phone="13812348888")
    report = do_import_members(system, "x.csv", "昵称,手机号\n小王,13812348888\n".encode())
    assert errors(report) == [(2, "手机号")]
    assert Member.objects.count() == 1


def test_dry_run_writes_nothing(system, community):
    report = do_import_members(system, "seed.csv", GOOD.encode(), dry_run=True)
    assert report.ok and report.rows == 2 and report.created == 0
    assert Member.objects.count() == 0


def test_xlsx_import_and_numeric_phone(system):
    wb = Workbook()
    ws = wb.active
    ws.append(["display_name", "phone"])
    ws.append(["小王", 13812348888])
    buf = io.BytesIO()
    wb.save(buf)
    report = do_import_members(system, "seed.xlsx", buf.getvalue())
    assert report.ok
    assert Member.objects.get().phone == "13812348888"


def test_broken_xlsx(system):
    with pytest.raises(Invalid):
        do_import_members(system, "seed.xlsx", b"not a zip")


def test_exports_mask_phones(system, other_tenant):
    do_create_member(system, display_name="小王", phone="13812348888", email="wang@example.com")
    do_create_member(Principal.system(other_tenant.pk), display_name="别人")
    text = export_csv(system.tenant_id).decode("utf-8-sig")
    assert "138****8888" in text and "13812348888" not in text and "w***@example.com" in text
    assert "别人" not in text

    wb = load_workbook(io.BytesIO(export_xlsx(system.tenant_id)))
    values = [c.value for row in wb.active.iter_rows() for c in row]
    assert "138****8888" in values and "13812348888" not in values
