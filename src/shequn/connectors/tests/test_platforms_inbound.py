"""The platforms' inbound modules are pure: recorded payloads → event dicts, rooms and staff facts,
and the signature / secret checks — without a database (no ``db`` fixture anywhere in this file)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
import xmltodict
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.utils import to_text

from shequn.connectors.platforms.matrix import inbound as mx
from shequn.connectors.platforms.telegram import inbound as tg
from shequn.connectors.platforms.wecom import inbound as wc

from . import telegram_payloads as P

SRC = Path(__file__).resolve().parents[3]  # src/


def test_inbound_modules_import_no_database_models_or_cache() -> None:
    """Imported on their own (no Django settings, no app registry), the inbound modules pull in
    neither the ORM nor the cache nor any other shequn module."""
    code = ("import sys\n"
            "import shequn.connectors.platforms.matrix.inbound, shequn.connectors.platforms.telegram.inbound\n"
            "import shequn.connectors.platforms.wecom.inbound\n"
            "bad = [m for m in sys.modules if m.startswith(('django.db', 'django.core.cache', 'django.apps'))\n"
            "       or (m.startswith('shequn.') and not m.startswith('shequn.connectors.platforms')\n"
            "           and m != 'shequn.connectors')]\n"
            "print(','.join(sorted(bad)))\n")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(SRC)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == ""


# --- Telegram ------------------------------------------------------------------------------------------

def test_telegram_update_key_and_secret() -> None:
    assert tg.is_update(P.MESSAGE) and not tg.is_update({"no": "update_id"}) and not tg.is_update([1])
    assert tg.update_key(P.MESSAGE) == ("update:10001", "message")
    assert tg.update_key(P.CHAT_MEMBER_JOIN) == ("update:10005", "chat_member")
    assert tg.secret_matches("s3cret", "s3cret")
    assert not tg.secret_matches("s3cret", "wrong") and not tg.secret_matches("", "")


def test_telegram_staff_facts_without_a_database() -> None:
    promote = {"update_id": 1, "chat_member": {
        "chat": P.CHAT, "from": P.ALICE, "date": 1763871000,
        "old_chat_member": {"status": "member", "user": P.BOB},
        "new_chat_member": {"status": "administrator", "user": P.BOB}}}
    change = tg.admin_change(promote)
    chat = str(P.CHAT["id"])
    assert change == (chat, str(P.BOB["id"]), True)
    admins = tg.admins_after(set(), change)
    assert admins == {str(P.BOB["id"])}
    assert tg.admins_after(admins, (chat, str(P.BOB["id"]), False)) == set()
    assert tg.admin_change(P.MESSAGE) is None
    events = tg.parse_update(P.REPLY)[0] + tg.parse_update(P.MESSAGE)[0]
    assert tg.message_chats(events) == {chat}
    tg.mark_admins(events, {chat: admins})
    assert [e["payload"].get("sender_is_admin") for e in events] == [True, None]  # bob marked, alice not


# --- WeCom ---------------------------------------------------------------------------------------------

CORP = "ww1234567890abcdef"
TOKEN = "cbtoken123"
AES_KEY = base64.b64encode(b"k" * 32).decode().rstrip("=")
CHAT = "wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA"
SECRETS = {"callback_token": TOKEN, "encoding_aes_key": AES_KEY}


def _change(change: str, created: int = 1763870400, quit_scene: int | None = None) -> str:
    extra = f"<QuitScene>{quit_scene}</QuitScene>" if quit_scene is not None else ""
    return (f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[{CHAT}]]></ChatId>"
            f"<ChangeType><![CDATA[{change}]]></ChangeType>{extra}</xml>")


def _encrypted(inner: str, nonce: str = "n0nce", ts: str = "1763870400") -> tuple[bytes, str]:
    outer = xmltodict.parse(to_text(WeChatCrypto(TOKEN, AES_KEY, CORP).encrypt_message(inner, nonce, ts)))["xml"]
    body = (f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{outer['Encrypt']}]]></Encrypt>"
            "<AgentID><![CDATA[]]></AgentID></xml>").encode()
    return body, outer["MsgSignature"]


def test_wecom_callback_is_verified_and_decrypted() -> None:
    c = wc.crypto(SECRETS, CORP)
    body, sig = _encrypted(_change("create"))
    msg = wc.decrypt_callback(c, body, sig, "1763870400", "n0nce")
    assert msg["ChatId"] == CHAT and wc.event_type(msg) == wc.CHAT_CHANGE
    # a retry (new nonce, same content) has the same dedupe key
    body2, sig2 = _encrypted(_change("create"), nonce="other")
    assert wc.dedupe_key(wc.decrypt_callback(c, body2, sig2, "1763870400", "other")) == wc.dedupe_key(msg)
    with pytest.raises(wc.Rejected, match="signature/decryption failed"):
        wc.decrypt_callback(c, body, "0" * 40, "1763870400", "n0nce")
    with pytest.raises(wc.Malformed, match="malformed XML"):
        wc.decrypt_callback(c, b"<xml><oops", sig, "1763870400", "n0nce")
    with pytest.raises(wc.Malformed, match="no Encrypt"):
        wc.decrypt_callback(c, b"<xml><ToUserName>x</ToUserName></xml>", sig, "1763870400", "n0nce")
    with pytest.raises(wc.Rejected, match="URL verification failed"):
        wc.verify_url(c, "bad", "1763870400", "abc", "x")


def test_wecom_member_diff_and_staff() -> None:
    chat = {"chat_id": CHAT, "name": "宝妈交流群", "owner": "wmOwner01", "admin_list": [{"userid": "wmAdm"}],
            "member_list": [{"userid": "wmOwner01", "type": 1, "join_time": 1763800000, "join_scene": 1},
                            {"userid": "wmAdm", "type": 1, "join_time": 1763800050, "join_scene": 1},
                            {"userid": "wmNew", "type": 2, "join_time": 1763870500, "join_scene": 3,
                             "state": "ref_alice", "invitor": {"userid": "wmOwner01"}},
                            {"no": "userid"}]}
    assert wc.staff_of(chat) == {"owner": "wmOwner01", "admins": ["wmAdm"]}
    assert len(wc.chat_members(chat)) == 3
    msg = wc.parse_xml(_change("update", created=1763870600, quit_scene=1))
    events = wc.member_diff(msg, chat, current={"wmOwner01", "wmGone"})
    by_kind = {(e["kind"], e["sender"]): e for e in events}
    assert set(by_kind) == {("join", "wmAdm"), ("join", "wmNew"), ("leave", "wmGone")}
    new = by_kind[("join", "wmNew")]
    assert new["event_id"] == f"{CHAT}:join:wmNew:1763870500" and new["payload"]["state"] == "ref_alice"
    assert new["payload"]["join_source"] == "qr" and new["payload"]["sender_is_admin"] is False
    assert by_kind[("join", "wmAdm")]["payload"]["sender_is_admin"] is True
    gone = by_kind[("leave", "wmGone")]
    assert gone["event_id"] == f"{CHAT}:leave:wmGone:1763870600" and gone["payload"]["reason"] == "kick"
    (d,) = wc.dismiss_events(wc.parse_xml(_change("dismiss")), {"wmX"})
    assert d["kind"] == "leave" and d["payload"]["reason"] == "dismiss"
    other = wc.callback_event({"Event": "change_external_tag", "CreateTime": "1763870400", "ChangeType": "create"})
    assert other["kind"] == "wecom.change_external_tag" and other["occurred_at"] == 1763870400


# --- Matrix --------------------------------------------------------------------------------------------

SYNC = {"next_batch": "s2", "rooms": {
    "join": {"!a:hs": {
        "summary": {"m.joined_member_count": 3},
        "state": {"events": [{"type": "m.room.name", "state_key": "", "event_id": "$n", "sender": "@al:hs",
                              "content": {"name": "车友群"}},
                             {"type": "m.room.power_levels", "state_key": "", "event_id": "$p", "sender": "@al:hs",
                              "content": {"users": {"@al:hs": 100}}}]},
        "timeline": {"limited": True, "prev_batch": "p1", "events": [
            {"type": "m.room.message", "event_id": "$1", "sender": "@al:hs", "origin_server_ts": 1_700_000_000_000,
             "content": {"msgtype": "m.text", "body": "大家好"}},
            {"type": "m.room.message", "event_id": "$2", "sender": "@bo:hs", "origin_server_ts": 1_700_000_001_000,
             "content": {"msgtype": "m.text", "body": "hi", "m.relates_to": {"m.in_reply_to": {"event_id": "$1"}}}},
        ]}}},
    "leave": {"!b:hs": {"timeline": {"events": []}}},
    "invite": {"!c:hs": {}}}}


def test_matrix_sync_body_to_rooms_and_events() -> None:
    batch = mx.batch_from_dict(SYNC)
    assert batch.next_batch == "s2" and batch.invites == ["!c:hs"]
    (a, b) = batch.rooms
    assert (a.room_id, a.name, a.member_count, a.joined) == ("!a:hs", "车友群", 3, True)
    assert a.power_levels == {"users": {"@al:hs": 100}} and (b.room_id, b.joined) == ("!b:hs", False)
    assert mx.limited_timelines(SYNC) == [("!a:hs", "p1")]
    acts = mx.to_activities(batch.events, levels={"!a:hs": a.power_levels})
    assert [(e["kind"], e["payload"]["sender_is_admin"]) for e in acts] == [("message", True), ("reply", False)]
    assert acts[1]["payload"]["reply_to"] == "$1"


def test_matrix_appservice_transaction() -> None:
    assert mx.hs_token_matches("hs-token", "Bearer hs-token", "")
    assert mx.hs_token_matches("hs-token", "", "hs-token")
    assert not mx.hs_token_matches("hs-token", "Bearer nope", "") and not mx.hs_token_matches("", "Bearer ", "")
    body = {"events": [{"room_id": "!a:hs", "type": "m.reaction", "event_id": "$r", "sender": "@bo:hs",
                        "content": {"m.relates_to": {"event_id": "$1", "key": "👍"}}}, "junk"]}
    ((room, ev),) = mx.transaction_events(body)
    assert room == "!a:hs" and mx.to_activity(room, ev)["kind"] == "reaction"  # type: ignore[index]
