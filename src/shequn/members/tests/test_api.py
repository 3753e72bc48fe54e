"""Members REST API: list/filter/mask, get, create, update, identities, tags, merge, import, export."""

import csv
import io
from typing import get_args

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook

from shequn.communities.models import CommunityRole, Membership
from shequn.core.models import AuditLog, Tenant
from shequn.core.services import do_create_operator
from shequn.members.api import RoleName
from shequn.members.models import Identity, Member
from shequn.testing.client import ApiClient
from shequn.testing.scenarios import api_key_for, api_world

URL = "/api/v1/members"


def upload(client, name, data, **fields):
    return client.client.post(f"{URL}/import", {"file": SimpleUploadedFile(name, data), **fields},
                              headers=client.headers)


# --- list / get ----------------------------------------------------------------------------------

def test_list_masks_contacts_and_paginates(world, make_client):
    c = make_client(world.tenant)
    for i in range(5):
        c.post(URL, {"display_name": f"批量{i}", "phone": f"1370000000{i}"})
    items, cursor, pages = [], None, 0
    while True:
        page = c.get(URL, {"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    ids = [m["id"] for m in items]
    assert pages == 3 and len(ids) == len(set(ids)) == 7
    assert ids == sorted(ids, reverse=True)
    for m in items:
        assert "****" in m["phone"]
        assert m["email"] == "" or "***@" in m["email"]
    text = c.get(URL).content.decode()
    assert world.member.phone not in text and world.member.email not in text


def test_list_filters(world, make_client):
    c = make_client(world.tenant)
    names = lambda **q: {m["display_name"] for m in c.get(URL, q).json()["items"]}  # noqa: E731
    assert names(q="甲会") == {"甲会员"}
    assert names(q=world.member.phone) == {"甲会员"}
    assert names(q="tg-甲") == {"甲会员"}
    assert names(tag="甲标签") == {"甲会员"}
    assert names(community_id=world.community.pk) == {"甲会员"}
    assert names(role="advocate") == {"甲会员"}
    assert names(lifecycle="new") == {"甲会员", "甲另一位"}
    assert names(relationship_level=0) == {"甲会员", "甲另一位"}
    assert names(relationship_level=3) == set()
    assert c.get(URL, {"lifecycle": "bogus"}).status_code == 422


def test_get_member_detail(world, make_client):
    full = make_client(world.tenant, ["members.write"]).get(f"{URL}/{world.member.pk}").json()
    assert full["phone"] == world.member.phone and full["contact_masked"] is False
    assert [i["external_id"] for i in full["identities"]] == ["tg-甲"]
    assert [t["name"] for t in full["tags"]] == ["甲标签"]
    masked = make_client(world.tenant, ["members.read"]).get(f"{URL}/{world.member.pk}").json()
    assert masked["phone"] == world.member.phone[:3] + "****" + world.member.phone[-4:]
    assert masked["contact_masked"] is True
    assert make_client(world.tenant).get(f"{URL}/999999").status_code == 404


# --- create / update ------------------------------------------------------------------------------

def test_create_member_with_identities_and_tags(world, make_client):
    c = make_client(world.tenant)
    resp = c.post(URL, {"display_name": " 新会员 ", "phone": "+86 139-1234-5678", "email": "A@B.cn",
                        "identities": [{"platform": "wecom", "external_id": "wm-9", "verified": True}],
                        "tags": ["VIP", "车主"]})
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["display_name"] == "新会员" and body["phone"] == "13912345678" and body["email"] == "a@b.cn"
    assert {t["name"] for t in body["tags"]} == {"VIP", "车主"}
    assert body["identities"][0]["platform"] == "wecom"
    assert AuditLog.objects.filter(tenant=world.tenant, action="member.create", object_id=str(body["id"])).exists()


def test_create_rejects_bad_phone_and_duplicate_identity_without_writing(world, make_client):
    c = make_client(world.tenant)
    before = Member.objects.count()
    bad = c.post(URL, {"display_name": "坏号码", "phone": "12345"})
    assert bad.status_code == 422 and bad.json()["details"]["field"] == "phone"
    dup = c.post(URL, {"display_name": "重复身份", "identities": [{"platform": "telegram", "external_id": "tg-甲"}]})
    assert dup.status_code == 409 and dup.json()["details"]["member_id"] == world.member.pk
    assert Member.objects.count() == before  # the member row rolled back with the identity conflict


def test_patch_member(world, make_client):
    c = make_client(world.tenant)
    url = f"{URL}/{world.member.pk}"
    resp = c.patch(url, {"lifecycle_stage": "active", "relationship_level": 2, "note": "铁粉"})
    assert resp.status_code == 200, resp.content
    m = Member.objects.get(pk=world.member.pk)
    assert (m.lifecycle_stage, m.relationship_level, m.note) == ("active", 2, "铁粉")
    assert m.display_name == "甲会员"  # untouched
    assert c.patch(url, {"relationship_level": 9}).status_code == 422
    assert c.patch(url, {"lifecycle_stage": "zombie"}).json()["details"][0]["field"] == "body.payload.lifecycle_stage"
    null = c.patch(url, {"display_name": None})
    assert null.status_code == 422 and null.json()["details"][0]["field"] == "body.payload.display_name"
    assert c.patch(url, {"phone": "bad"}).status_code == 422
    assert Member.objects.get(pk=world.member.pk).phone == world.member.phone


def test_identities_and_tags(world, make_client):
    c = make_client(world.tenant)
    url = f"{URL}/{world.other_member.pk}"
    resp = c.post(f"{url}/identities", {"platform": "matrix", "external_id": "@a:hs"})
    assert resp.status_code == 201
    assert Identity.objects.filter(member=world.other_member, platform="matrix").exists()
    assert c.post(f"{url}/identities", {"platform": "telegram", "external_id": "tg-甲"}).status_code == 409
    tagged = c.post(f"{url}/tags", {"tags": ["甲标签", "新标签"]}).json()
    assert {t["name"] for t in tagged["tags"]} == {"甲标签", "新标签"}
    assert c.post(f"{url}/tags", {"tags": ["  "]}).status_code == 422
    untagged = c.delete(f"{url}/tags/{world.tag.pk}").json()
    assert {t["name"] for t in untagged["tags"]} == {"新标签"}
    tags = c.get(f"{URL}/tags").json()
    assert {"甲标签", "新标签"} <= {t["name"] for t in tags}


# --- merge ----------------------------------------------------------------------------------------

def test_merge_suggestions_and_merge(world, make_client):
    c = make_client(world.tenant)
    dup = c.post(URL, {"display_name": "甲会员(企微)", "phone": world.member.phone,
                       "identities": [{"platform": "wecom", "external_id": "wm-甲"}]}).json()
    suggestions = c.get(f"{URL}/merge-suggestions").json()
    assert {"reason": "phone", "member_ids": [world.member.pk, dup["id"]]} in suggestions
    resp = c.post(f"{URL}/merge", {"keep_id": world.member.pk, "merge_id": dup["id"], "reason": "同一手机号"})
    assert resp.status_code == 200, resp.content
    kept = resp.json()
    assert {i["platform"] for i in kept["identities"]} == {"telegram", "wecom"}
    assert Member.objects.get(pk=dup["id"]).merged_into_id == world.member.pk
    assert c.get(f"{URL}/{dup['id']}").json()["merged_into_id"] == world.member.pk
    assert dup["id"] not in [m["id"] for m in c.get(URL).json()["items"]]
    log = AuditLog.objects.get(tenant=world.tenant, action="member.merge")
    assert log.reason == "同一手机号" and log.data["merged"] == dup["id"]
    again = c.post(f"{URL}/merge", {"keep_id": world.member.pk, "merge_id": dup["id"]})
    assert again.status_code == 409
    self_merge = c.post(f"{URL}/merge", {"keep_id": world.member.pk, "merge_id": world.member.pk})
    assert self_merge.status_code == 422
    assert c.get(f"{URL}/merge-suggestions").json() == []


# --- import / export ------------------------------------------------------------------------------

GOOD_CSV = "昵称,手机号,标签,平台,平台账号,社群\n小王,13800001111,车主;VIP,企业微信,wm-1,{community}\n小李,,,,,\n"


def test_import_good_file_applies_all(world, make_client):
    c = make_client(world.tenant)
    data = GOOD_CSV.format(community=world.community.name).encode()
    dry = upload(c, "seed.csv", data, dry_run="true")
    assert dry.status_code == 200, dry.content
    assert dry.json() == {"ok": True, "dry_run": True, "applied": False, "rows": 2, "created": 0, "errors": []}
    assert not Member.objects.filter(display_name="小王").exists()
    resp = upload(c, "seed.csv", data)
    assert resp.status_code == 200, resp.content
    assert resp.json()["created"] == 2 and resp.json()["applied"] is True
    wang = Member.objects.get(tenant=world.tenant, display_name="小王")
    assert Identity.objects.filter(member=wang, platform="wecom", external_id="wm-1").exists()
    assert Membership.objects.filter(member=wang, community=world.community, join_source="import").exists()


def test_import_gbk_file_is_read(world, make_client):
    c = make_client(world.tenant)
    resp = upload(c, "gbk.csv", "昵称,手机号,备注\n老张,13600001111,GBK 编码的备注\n".encode("gbk"))
    assert resp.status_code == 200, resp.content
    assert Member.objects.get(tenant=world.tenant, display_name="老张").note == "GBK 编码的备注"


def _errors(resp):
    assert resp.status_code == 422, resp.content
    body = resp.json()
    assert body["code"] == "import_invalid"
    return [(e["row"], e["column"]) for e in body["details"]["errors"]]


def test_import_bad_files_name_row_and_column_and_apply_nothing(world, make_client):
    c = make_client(world.tenant)
    before = Member.objects.count()
    wrong_columns = _errors(upload(c, "a.csv", "名字,电话号码\n小王,138\n".encode()))
    assert set(wrong_columns) == {(1, "电话号码"), (1, "名字"), (1, "display_name")}
    bad_phone = "昵称,手机号\n好人,13800002222\n坏号,12345\n".encode()
    assert _errors(upload(c, "b.csv", bad_phone)) == [(3, "手机号")]
    dupes = "昵称,手机号\n甲,13800003333\n乙,138-0000-3333\n".encode()
    assert _errors(upload(c, "c.csv", dupes)) == [(3, "手机号")]
    gbk_bad = "昵称,手机号\n张三,13800004444\n,13800005555\n".encode("gbk")
    assert _errors(upload(c, "d.csv", gbk_bad)) == [(3, "昵称")]
    existing = f"昵称,手机号\n已存在,{world.member.phone}\n".encode()
    assert _errors(upload(c, "e.csv", existing)) == [(2, "手机号")]
    assert Member.objects.count() == before


def test_import_undecodable_and_wrong_type(world, make_client):
    c = make_client(world.tenant)
    resp = upload(c, "x.csv", b"\xff\xfe\xfa\x00\x81\xff")
    assert resp.status_code == 422 and resp.json()["details"][0]["row"] == 1
    assert upload(c, "x.pdf", b"%PDF").status_code == 422
    missing = c.client.post(f"{URL}/import", {}, headers=c.headers)
    assert missing.status_code == 422


def test_import_xlsx(world, make_client):
    wb = Workbook()
    ws = wb.active
    ws.append(["昵称", "手机号"])
    ws.append(["表格用户", 13900001111])
    ws.append(["坏", "abc"])
    buf = io.BytesIO()
    wb.save(buf)
    c = make_client(world.tenant)
    assert _errors(upload(c, "m.xlsx", buf.getvalue())) == [(3, "手机号")]
    assert not Member.objects.filter(display_name="表格用户").exists()


def test_import_is_idempotent_with_key(world, make_client):
    c = make_client(world.tenant)
    data = "昵称\n只导一次\n".encode()
    hdr = {**c.headers, "Idempotency-Key": "imp-1"}
    r1 = c.client.post(f"{URL}/import", {"file": SimpleUploadedFile("s.csv", data)}, headers=hdr)
    r2 = c.client.post(f"{URL}/import", {"file": SimpleUploadedFile("s.csv", data)}, headers=hdr)
    assert r1.status_code == r2.status_code == 200 and r1.json() == r2.json()
    assert Member.objects.filter(display_name="只导一次").count() == 1
    other = c.client.post(f"{URL}/import", {"file": SimpleUploadedFile("s.csv", "昵称\n别的\n".encode())},
                          headers=hdr)
    assert other.status_code == 409


def test_export_is_masked(world, make_client):
    c = make_client(world.tenant, ["members.read"])
    resp = c.get(f"{URL}/export")
    assert resp.status_code == 200 and resp["Content-Type"].startswith("text/csv")
    assert "attachment" in resp["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["ID", "昵称", "手机号"]
    assert world.member.phone not in resp.content.decode("utf-8-sig")
    assert any(r[2] == world.member.phone[:3] + "****" + world.member.phone[-4:] for r in rows[1:])
    xlsx = c.get(f"{URL}/export", {"format": "xlsx"})
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    assert c.get(f"{URL}/export", {"format": "pdf"}).status_code == 422


def _export_ids(client, **params):
    resp = client.get(f"{URL}/export", params)
    assert resp.status_code == 200, resp.content
    return {int(r[0]) for r in list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"))))[1:]}


def _list_ids(client, **params):
    return {m["id"] for m in client.get(URL, {"limit": 500, **params}).json()["items"]}


def test_export_honours_the_list_filters(world, make_client):
    """Each filter of the member list (q, tag, lifecycle, community, role, level) selects the same
    members in the export; another tenant's community selects nobody."""
    c = make_client(world.tenant, ["members.read"])
    Member.objects.filter(pk=world.other_member.pk).update(lifecycle_stage="dormant", relationship_level=2)
    other = api_world(Tenant.objects.create(slug="other-x", name="别家"), "乙")
    cases = [
        {}, {"q": "甲会员"}, {"q": world.member.phone}, {"q": "tg-甲"}, {"tag": "甲标签"}, {"lifecycle": "dormant"},
        {"community_id": world.community.pk}, {"role": "advocate"}, {"relationship_level": 2},
        {"community_id": other.community.pk}, {"tag": "甲标签", "lifecycle": "dormant"},
    ]
    for params in cases:
        assert _export_ids(c, **params) == _list_ids(c, **params), params
    assert _export_ids(c, q="甲会员") == {world.member.pk}
    assert _export_ids(c, lifecycle="dormant") == {world.other_member.pk}
    assert _export_ids(c, community_id=other.community.pk) == set()
    assert c.get(f"{URL}/export", {"lifecycle": "bogus"}).status_code == 422
    # the filtered xlsx holds the filtered rows, phones masked

    xlsx = c.get(f"{URL}/export", {"format": "xlsx", "q": "甲会员"})
    rows = list(load_workbook(io.BytesIO(xlsx.content)).active.iter_rows(values_only=True))
    assert [r[0] for r in rows[1:]] == [str(world.member.pk)]
    assert rows[1][2] == world.member.phone[:3] + "****" + world.member.phone[-4:]


def test_export_is_audited_with_who_and_the_filter(world, make_client):
    key, secret = api_key_for(world.tenant, ["members.read"], name="导出脚本")
    c = ApiClient(secret)
    before = AuditLog.objects.filter(tenant=world.tenant, action="member.export").count()
    assert c.get(f"{URL}/export", {"format": "xlsx", "tag": "甲标签", "community_id": world.community.pk}
                 ).status_code == 200
    log = AuditLog.objects.filter(tenant=world.tenant, action="member.export").latest("pk")
    assert AuditLog.objects.filter(tenant=world.tenant, action="member.export").count() == before + 1
    assert (log.actor_type, log.actor_id, log.actor_label) == ("api_key", str(key.pk), "导出脚本")
    assert log.data == {"format": "xlsx", "filters": {"tag": "甲标签", "community_id": world.community.pk}, "rows": 1}
    assert world.member.phone not in str(log.data)



    staff = do_create_operator(tenant=world.tenant, username="exporter", password="pw-123456789", role="owner")
    session = Client()
    session.force_login(staff.user)
    assert session.get(f"{URL}/export", {"q": "甲会员"}).status_code == 200
    log = AuditLog.objects.filter(tenant=world.tenant, action="member.export").latest("pk")
    assert (log.actor_type, log.actor_id) == ("staff", str(staff.user_id))
    assert log.data == {"format": "csv", "filters": {"q": "甲会员"}, "rows": 1}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(phone=st.text(alphabet="0123456789", min_size=7, max_size=15))
def test_list_never_shows_a_full_phone(world, make_client, phone):
    """Whatever phone a member has, the list shows at most its first 3 and last 4 digits."""
    m = Member.objects.filter(pk=world.other_member.pk)
    m.update(phone=phone)
    text = make_client(world.tenant, ["members.read"]).get(URL).content.decode()
    assert phone not in text


def test_the_role_filter_names_every_community_role():
    assert set(get_args(RoleName)) == set(CommunityRole.values)
