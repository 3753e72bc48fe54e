"""The operator CLI (``shequn moderation classify``) and the REST API."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from shequn.activity.services import do_ingest
from shequn.communities.models import ChatGroup, Community
from shequn.core.models import AuditLog, Tenant
from shequn.core.permissions import Principal
from shequn.core.services import do_create_api_key, do_create_operator
from shequn.moderation.models import ModerationPolicy, Violation
from shequn.moderation.services import do_save_policy


def run_classify(lines: list[str], *args: str, monkeypatch: pytest.MonkeyPatch | None = None) -> list[dict[str, Any]]:
    out = io.StringIO()
    assert monkeypatch is not None
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    call_command("moderation", "classify", *args, "-", stdout=out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_cli_classify_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [
        json.dumps({"text": "兼职刷单日结300加我薇信 vip_8888"}, ensure_ascii=False),
        json.dumps({"text": "周六早上八点集合", "member_joined_days": 100, "message_index": 300}, ensure_ascii=False),
        "not json at all 加微信 abc12345 私聊",
        json.dumps({"text": None}),
        json.dumps(["a list"]),
        json.dumps({"text": "\ud800 bad surrogate"}),
        json.dumps({"text": "x" * 100_000}),
    ]
    rows = run_classify(lines, monkeypatch=monkeypatch)
    assert len(rows) == len(lines)
    assert rows[0]["verdict"] == "ad" and rows[0]["category"] == "job"
    assert rows[1] == {"verdict": "ok", "score": rows[1]["score"], "category": None, "reasons": rows[1]["reasons"]}
    for row in rows:
        assert set(row) == {"verdict", "score", "category", "reasons"}
        assert row["verdict"] in ("ad", "ok", "review")
        assert isinstance(row["score"], float)


def test_cli_duplicate_text_across_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "大家看看这个新出的东西 http://x-deal.xyz/p"
    lines = [json.dumps({"text": text, "group": g}, ensure_ascii=False) for g in ("a", "b", "c")]
    rows = run_classify(lines, monkeypatch=monkeypatch)
    assert not any(r["rule"] == "signal.duplicate_across_groups" for r in rows[0]["reasons"])
    assert any(r["rule"] == "signal.duplicate_across_groups" for r in rows[2]["reasons"])
    # a check-in posted in every group is not a spam wave
    lines = [json.dumps({"text": "签到", "group": g}, ensure_ascii=False) for g in ("a", "b", "c")]
    rows = run_classify(lines, monkeypatch=monkeypatch)
    assert [r["verdict"] for r in rows] == ["ok", "ok", "ok"]
    assert not any(r["rule"] == "signal.duplicate_across_groups" for row in rows for r in row["reasons"])


def test_cli_classify_file(tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text('{"text": "帮我砍一刀吧"}\n\n{"text": "hello"}\n', encoding="utf-8")
    out = io.StringIO()
    call_command("moderation", "classify", str(f), stdout=out)
    assert len(out.getvalue().splitlines()) == 2
    with pytest.raises(CommandError):
        call_command("moderation", "classify", str(tmp_path / "missing.jsonl"), stdout=io.StringIO())


@pytest.mark.django_db
def test_cli_classify_with_community_pack(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    community = Community.objects.create(tenant=tenant, name="护肤群")
    do_save_policy(Principal.system(tenant.pk), community.pk,
                   rules_text="category selling 推销\n  term 8.0 团长价\n")
    line = json.dumps({"text": "团长价今天特别优惠"}, ensure_ascii=False)
    default = run_classify([line], monkeypatch=monkeypatch)
    own = run_classify([line], "--community", str(community.pk), monkeypatch=monkeypatch)
    assert default[0]["verdict"] == "ok"
    assert own[0]["verdict"] == "ad" and own[0]["category"] == "selling"
    with pytest.raises(CommandError):
        run_classify([line], "--community", "999999", monkeypatch=monkeypatch)


def test_cli_check_pack_reports_lines(tmp_path: Path) -> None:
    f = tmp_path / "pack.txt"
    f.write_text("category a 测试\n  term 1.0 好词\n  term nope 坏\n", encoding="utf-8")
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("moderation", "check-pack", str(f), stderr=err, stdout=io.StringIO())
    assert f"{f}:3:" in err.getvalue()


@pytest.fixture
def api(tenant: Tenant) -> Client:
    _key, secret = do_create_api_key(Principal.system(tenant.pk), name="t", scopes=["moderation.write"])
    return Client(headers={"Authorization": f"Bearer {secret}"})


@pytest.mark.django_db
def test_api_policy_classify_and_review(tenant: Tenant, other_tenant: Tenant, api: Client) -> None:
    community = Community.objects.create(tenant=tenant, name="车友会")
    ChatGroup.objects.create(tenant=tenant, community=community, platform="matrix", external_id="!r:hs",
                             name="群")
    url = f"/api/v1/moderation/communities/{community.pk}/policy"
    bad = api.put(url, {"rules_text": "category x 测试\nterm 2 ok\nterm bad 词\n"}, content_type="application/json")
    assert bad.status_code == 422
    assert bad.json()["details"][0]["line"] == 3
    good = api.put(url, {"rules_text": "allow domain club.example", "warn_limit": 2},
                   content_type="application/json")
    assert good.status_code == 200 and good.json()["warn_limit"] == 2
    other = Community.objects.create(tenant=other_tenant, name="别人的")
    assert api.get(f"/api/v1/moderation/communities/{other.pk}/policy").status_code == 404

    r = api.post("/api/v1/moderation/classify", {"text": "帮我砍一刀吧 https://p.pinduoduo.com/x"},
                 content_type="application/json")
    assert r.status_code == 200 and r.json()["verdict"] == "ad"

    do_ingest(tenant.pk, [{"platform": "matrix", "event_id": "$1", "kind": "message", "sender": "@s:hs",
                           "group": "!r:hs", "occurred_at": "2026-11-23T10:00:00+00:00",
                           "payload": {"text": "兼职刷单日结300加我薇信 vip_8888"}}])
    listing = api.get("/api/v1/moderation/violations").json()
    assert len(listing["items"]) == 1
    vid = listing["items"][0]["id"]
    appeal = api.post(f"/api/v1/moderation/violations/{vid}/appeal", {"text": "误会"},
                      content_type="application/json")
    assert appeal.status_code == 200 and appeal.json()["status"] == "pending"
    rev = api.post(f"/api/v1/moderation/violations/{vid}/review", {"decision": "reverse"},
                   content_type="application/json")
    assert rev.status_code == 200 and rev.json()["status"] == "reversed"
    again = api.post(f"/api/v1/moderation/violations/{vid}/review", {"decision": "reverse"},
                     content_type="application/json")
    assert again.status_code == 409
    days = api.get("/api/v1/moderation/health/violations-per-day").json()
    assert days == []  # the only violation was reversed


@pytest.mark.django_db
def test_console_review_queue_renders_and_reverses(tenant: Tenant) -> None:
    community = Community.objects.create(tenant=tenant, name="车友会")
    ChatGroup.objects.create(tenant=tenant, community=community, platform="matrix", external_id="!r:hs", name="群")
    do_ingest(tenant.pk, [{"platform": "matrix", "event_id": "$1", "kind": "message", "sender": "@s:hs",
                           "group": "!r:hs", "occurred_at": "2026-11-23T10:00:00+00:00",
                           "payload": {"text": "兼职刷单日结300加我薇信 vip_8888"}}])
    staff = do_create_operator(tenant=tenant, username="cs", password="pw-123456", role="cs")
    c = Client()
    c.force_login(staff.user)
    page = c.get("/console/moderation/violation/")
    assert page.status_code == 200
    assert "兼职刷单" in page.content.decode()
    v = Violation.objects.get(tenant=tenant)
    ask = c.get(f"/console/moderation/violation/{v.pk}/reverse/", HTTP_REFERER="/console/moderation/violation/")
    assert ask.status_code == 200 and "确认撤销" in ask.content.decode()
    v.refresh_from_db()
    assert v.status != Violation.Status.REVERSED  # a GET (a link, a prefetch) changes nothing
    r = c.post(f"/console/moderation/violation/{v.pk}/reverse/", {"next": "/console/moderation/violation/"})
    assert r.status_code == 302 and r["Location"] == "/console/moderation/violation/"
    v.refresh_from_db()
    assert v.status == Violation.Status.REVERSED
    assert c.get("/console/moderation/moderationpolicy/add/").status_code == 200


@pytest.mark.django_db
def test_console_policy_form_refuses_bad_pack_with_line(tenant: Tenant) -> None:
    community = Community.objects.create(tenant=tenant, name="护肤群")
    staff = do_create_operator(tenant=tenant, username="op", password="pw-123456", role="operator")
    c = Client()
    c.force_login(staff.user)
    form = {"community": community.pk, "enabled": "on", "rules_text": "category a 测试\n  term x 词\n",
            "on_ad": "delete_warn", "on_review": "review", "warn_limit": 3, "warn_window_days": 7,
            "mute_hours": 24, "final_step": "kick", "exempt_roles": "[]", "exempt_role_holders": "on",
            "exempt_staff": "on", "notify_on_reversal": "on", "warn_text": "", "alert_rate": 5.0,
            "report_threshold": 3}
    r = c.post("/console/moderation/moderationpolicy/add/", form)
    assert r.status_code == 200
    assert "第 2 行" in r.content.decode()
    assert not ModerationPolicy.objects.exists()
    form["rules_text"] = "allow domain skin.example\n"
    r = c.post("/console/moderation/moderationpolicy/add/", form)
    assert r.status_code == 302
    assert ModerationPolicy.objects.get(tenant=tenant).rules_text.strip() == "allow domain skin.example"
    policy = ModerationPolicy.objects.get(tenant=tenant)
    form["rules_text"] = "allow domain skin.example\nallow domain shop.example\n"
    form.pop("community")
    r = c.post(f"/console/moderation/moderationpolicy/{policy.pk}/change/", form)
    assert r.status_code == 302
    policy.refresh_from_db()
    assert "shop.example" in policy.rules_text and policy.community_id == community.pk

    assert AuditLog.objects.filter(tenant=tenant, action="moderation.policy.update").exists()


def test_shequn_entry_point_handles_invalid_bytes(tmp_path: Path) -> None:
    env = {**os.environ, "SHEQUN_HOME": str(tmp_path), "DJANGO_SETTINGS_MODULE": "shequn.settings"}
    good = json.dumps({"text": "加我薇信 vip_8888 刷单"}, ensure_ascii=False).encode()
    data = good + b"\n\xff\xfe\x00 broken\n"
    proc = subprocess.run([sys.executable, "-m", "shequn.cli", "moderation", "classify", "-"], input=data,
                          capture_output=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(rows) == 2 and rows[0]["verdict"] == "ad"


def test_cli_reads_an_optional_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 16: the sender's context (new, joined through no invite, same text in other groups,
    staff) can come with each line, as an object or as flat fields; odd values are ignored."""
    text = "大家看看这个新出的东西 http://x-deal.xyz/p"
    ctx = {"message_index": 0, "member_joined_days": 0.1, "joined_without_invite": True,
           "same_text_other_groups": 2, "messages_last_minute": 9, "mentions": 6}
    lines = [
        json.dumps({"text": text}, ensure_ascii=False),
        json.dumps({"text": text, "context": ctx}, ensure_ascii=False),
        json.dumps({"text": text, **ctx}, ensure_ascii=False),
        json.dumps({"text": text, "context": {"joined_without_invite": "yes", "mentions": "many",
                                             "same_text_other_groups": -3}}, ensure_ascii=False),
        json.dumps({"text": "兼职刷单日结300加我薇信 vip_8888", "context": {"sender_is_staff": True}},
                   ensure_ascii=False),
    ]
    rows = run_classify(lines, monkeypatch=monkeypatch)
    plain, with_ctx, flat, odd, staff = rows
    rules = {r["rule"] for r in with_ctx["reasons"]}
    assert {"signal.first_message", "signal.no_invite", "signal.duplicate_across_groups", "signal.flood",
            "signal.mention_storm"} <= rules
    assert with_ctx["score"] > plain["score"] and with_ctx["verdict"] == "ad"
    assert flat == with_ctx
    assert odd == plain
    assert staff["exempt"] is True and staff["verdict"] == "ad"
    assert all("exempt" not in row for row in rows[:4])


@pytest.mark.django_db
def test_api_classify_takes_an_optional_context(tenant: Tenant, api: Client) -> None:
    url = "/api/v1/moderation/classify"
    text = "大家看看这个新出的东西 http://x-deal.xyz/p"
    plain = api.post(url, {"text": text}, content_type="application/json").json()
    assert plain["exempt"] is False
    r = api.post(url, {"text": text, "context": {"message_index": 0, "joined_without_invite": True,
                                                 "same_text_other_groups": 2}},
                 content_type="application/json")
    assert r.status_code == 200
    body = r.json()
    rules = {x["rule"] for x in body["reasons"]}
    assert {"signal.first_message", "signal.no_invite", "signal.duplicate_across_groups"} <= rules
    assert body["score"] > plain["score"]
    staff = api.post(url, {"text": text, "context": {"sender_is_staff": True}}, content_type="application/json")
    assert staff.json()["exempt"] is True
    bad = api.post(url, {"text": text, "context": {"joined_without_invite": "yes"}}, content_type="application/json")
    assert bad.status_code == 422 and "joined_without_invite" in json.dumps(bad.json())
