"""A stateful local fake of the Telegram Bot API (https://core.telegram.org/bots/api), a real HTTP
server on 127.0.0.1 that aiogram — in the test process or in ``shequn worker`` subprocesses — talks
to through the connection's ``api_base``. It keeps what Telegram keeps for these calls:

* the bot's token (``/bot<token>/<method>``; any other token → 401 Unauthorized, as Telegram answers);
* chats with the bot's administrator rights per chat (``getChatMember`` for the bot answers them;
  ``deleteMessage`` / ``restrictChatMember`` / ``banChatMember`` are refused with Telegram's 400
  texts when the right is missing);
* an update queue served by ``getUpdates`` with its documented long polling (``offset`` confirms,
  ``timeout`` waits for the next update);
* what the bot did: deleted messages (with the time), restrictions with ``until_date``, bans, and
  the messages it sent (text, parse mode)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

from .fake_server import Answer, FakeServer

BOT = {"id": 7000001, "is_bot": True, "first_name": "shequn", "username": "shequn_test_bot"}
ALL_RIGHTS = {"can_delete_messages": True, "can_restrict_members": True, "can_invite_users": True}
UNAUTHORIZED = (401, {"ok": False, "error_code": 401, "description": "Unauthorized"})


def _bad(description: str) -> Answer:
    return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {description}"}


def _ok(result: Any) -> Answer:
    return 200, {"ok": True, "result": result}


class FakeTelegram:
    def __init__(self, token: str = "7000001:AAFakeTokenForShequnTests") -> None:
        self.token = token
        self.cond = threading.Condition()
        self.updates: list[dict[str, Any]] = []
        self.last_update_id = 0
        self.update_ids = itertools.count(500001)
        self.message_ids = itertools.count(1001)
        self.chats: dict[str, dict[str, Any]] = {}
        self.rights: dict[str, dict[str, bool]] = {}
        self.deleted: dict[str, float] = {}  # "<chat>:<message_id>" → time.time() of the deletion
        self.posted: dict[str, float] = {}   # "<chat>:<message_id>" → time.time() of the post
        self.restricted: list[dict[str, Any]] = []
        self.banned: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.server = FakeServer(routed=self.answer)
        self.url = self.server.url

    def __enter__(self) -> FakeTelegram:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        with self.cond:
            self.cond.notify_all()
        self.server.__exit__(*exc)

    # --- the test's side --------------------------------------------------------------------------
    def add_chat(self, chat_id: int, title: str, *, rights: dict[str, bool] | None = None,
                 admin: bool = True) -> dict[str, Any]:
        """A supergroup with the bot in it, as an administrator with ``rights`` (all by default) or
        a plain member (``admin=False``); queues the ``my_chat_member`` update Telegram sends."""
        chat = {"id": chat_id, "title": title, "type": "supergroup"}
        self.chats[str(chat_id)] = chat
        self.rights[str(chat_id)] = dict(ALL_RIGHTS if rights is None else rights) if admin else {}
        self.push({"my_chat_member": {"chat": chat, "from": {"id": 1, "is_bot": False, "first_name": "群主"},
                                      "date": int(time.time()),
                                      "old_chat_member": {"status": "left", "user": BOT},
                                      "new_chat_member": self._bot_member(str(chat_id))}})
        return chat

    def post(self, chat_id: int, user: dict[str, Any], text: str) -> str:
        """A member posts ``text``; returns the message's shequn id ``<chat>:<message_id>``."""
        mid = next(self.message_ids)
        self.push({"message": {"message_id": mid, "from": user, "chat": self.chats[str(chat_id)],
                               "date": int(time.time()), "text": text}})
        key = f"{chat_id}:{mid}"
        self.posted[key] = time.time()
        return key

    def push(self, body: dict[str, Any]) -> None:
        with self.cond:
            self.last_update_id = next(self.update_ids)
            self.updates.append({"update_id": self.last_update_id, **body})
            self.cond.notify_all()

    # --- the Bot API ------------------------------------------------------------------------------
    def _bot_member(self, chat: str) -> dict[str, Any]:
        rights = self.rights.get(chat) or {}
        if not rights:
            return {"status": "member", "user": BOT}
        return {"status": "administrator", "user": BOT, "can_be_edited": False, "is_anonymous": False,
                "can_manage_chat": True, "can_change_info": False, "can_post_stories": False,
                "can_edit_stories": False, "can_delete_stories": False, "can_manage_video_chats": False,
                "can_promote_members": False, "can_pin_messages": True, "can_send_welcome_messages": False,
                **{k: bool(rights.get(k)) for k in ALL_RIGHTS}}

    def _can(self, chat: str, right: str) -> bool:
        return bool((self.rights.get(chat) or {}).get(right))

    def answer(self, name: str, path: str, f: dict[str, str]) -> Answer:
        if not path.startswith(f"/bot{self.token}/"):
            return UNAUTHORIZED
        chat = str(f.get("chat_id", ""))
        if name == "getMe":
            return _ok(BOT)
        if name in ("deleteWebhook", "setWebhook"):
            return _ok(True)
        if name == "getUpdates":
            return _ok(self._get_updates(int(f.get("offset") or 0), float(f.get("timeout") or 0)))
        if name == "getChatMember":
            if chat not in self.chats:
                return _bad("chat not found")
            if int(f.get("user_id", 0)) == BOT["id"]:
                return _ok(self._bot_member(chat))
            return _ok({"status": "member", "user": {"id": int(f["user_id"]), "is_bot": False, "first_name": "x"}})
        if name == "deleteMessage":
            if not self._can(chat, "can_delete_messages"):
                return _bad("message can't be deleted")
            self.deleted[f"{chat}:{f.get('message_id')}"] = time.time()
            return _ok(True)
        if name == "restrictChatMember":
            if not self._can(chat, "can_restrict_members"):
                return _bad("not enough rights to restrict/unrestrict chat member")
            self.restricted.append({"chat": chat, "user_id": f.get("user_id"),
                                    "until_date": int(f["until_date"]) if f.get("until_date") else None,
                                    "permissions": json.loads(f.get("permissions") or "{}")})
            return _ok(True)
        if name in ("banChatMember", "unbanChatMember"):
            if not self._can(chat, "can_restrict_members"):
                return _bad("not enough rights to restrict/unrestrict chat member")
            self.banned.append({"method": name, "chat": chat, "user_id": f.get("user_id")})
            return _ok(True)
        if name == "sendMessage":
            mid = next(self.message_ids)
            entry = {"chat": chat, "text": f.get("text", ""), "parse_mode": f.get("parse_mode"),
                     "entities": json.loads(f["entities"]) if f.get("entities") else None}
            self.sent.append(entry)
            return _ok({"message_id": mid, "from": BOT, "chat": self.chats.get(chat, {"id": int(chat or 0),
                                                                                      "type": "supergroup"}),
                        "date": int(time.time()), "text": entry["text"]})
        if name == "pinChatMessage":
            return _ok(True)
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    def _get_updates(self, offset: int, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + min(timeout, 25)
        with self.cond:
            if offset:  # confirms every update below it, as Telegram does
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            while not self.updates and time.monotonic() < deadline:
                self.cond.wait(max(0.0, deadline - time.monotonic()))
            return list(self.updates[:100])
