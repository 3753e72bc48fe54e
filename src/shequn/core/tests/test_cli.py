import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from shequn import cli
from shequn.activity.models import ActivityEvent
from shequn.communities.models import Membership, RoleAssignment
from shequn.core.models import StaffMembership, Tenant
from shequn.members.models import Member


@pytest.mark.django_db
def test_demo_is_idempotent_and_prints_the_login(settings, tmp_path):
    settings.HOME = tmp_path
    out = io.StringIO()
    call_command("demo", "--no-serve", "--members", "60", stdout=out)
    first = out.getvalue()
    assert "operator" in first and "http://127.0.0.1:8000/console/" in first
    tenant = Tenant.objects.get(slug="demo")
    # the members' pages and a one-click demo member link beside the console login, and the link works
    assert "http://127.0.0.1:8000/portal/demo/" in first
    magic = re.search(r"http://127\.0\.0\.1:8000(/portal/demo/magic/[^/\s]+/)", first)
    assert magic, first
    client = Client()
    assert client.post(magic.group(1)).status_code == 302
    assert client.get("/portal/demo/earnings/").status_code == 200
    counts = (Member.objects.count(), ActivityEvent.objects.count(), Membership.objects.count())
    assert counts[0] == 60 and counts[1] > 500 and counts[2] >= 60
    assert RoleAssignment.objects.filter(tenant=tenant).exists()
    out2 = io.StringIO()
    call_command("demo", "--no-serve", stdout=out2)
    assert (Member.objects.count(), ActivityEvent.objects.count(), Membership.objects.count()) == counts
    password = first.split("password: ")[1].split()[0]
    assert f"password: {password}" in out2.getvalue()
    staff = StaffMembership.objects.get(tenant=tenant)
    assert staff.role == "owner" and staff.user.check_password(password)


@pytest.mark.django_db
def test_import_and_export_commands(tenant, tmp_path, capsysbinary):
    good = tmp_path / "seed.csv"
    good.write_text("昵称,手机号\n小王,13812348888\n", encoding="gbk")
    call_command("import_data", "members", str(good), "--tenant", tenant.slug)
    assert Member.objects.get().phone == "13812348888"
    bad = tmp_path / "bad.csv"
    bad.write_text("昵称,手机号\n小李,123\n", encoding="utf-8")
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("import_data", "members", str(bad), "--tenant", tenant.slug, stderr=err)
    assert "第 2 行 [手机号]" in err.getvalue()
    assert Member.objects.count() == 1
    out = tmp_path / "out.csv"
    call_command("export_data", "members", "--tenant", tenant.slug, "-o", str(out))
    assert "138****8888" in out.read_text(encoding="utf-8-sig")


@pytest.mark.django_db
def test_createoperator(tenant):
    out = io.StringIO()
    call_command("createoperator", "alice", "--tenant", tenant.slug, "--role", "finance", "--generate", stdout=out)
    staff = StaffMembership.objects.get(user__username="alice")
    assert staff.role == "finance" and staff.tenant == tenant


def test_cli_maps_import_export_aliases(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "execute_from_command_line", lambda argv: seen.setdefault("a", argv))
    cli.main(["shequn", "import", "members", "x.csv"])
    assert seen["a"] == ["shequn", "import_data", "members", "x.csv"]
