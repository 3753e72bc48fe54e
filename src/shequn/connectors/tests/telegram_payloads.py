"""Recorded Telegram Bot API payloads (shapes as documented at https://core.telegram.org/bots/api:
Update, Message, ChatMemberUpdated, MessageReactionUpdated; error responses with
``parameters.retry_after``). Ids and names are made up."""

from __future__ import annotations

CHAT = {"id": -1001234567890, "title": "护肤交流群", "type": "supergroup"}
ALICE = {"id": 111, "is_bot": False, "first_name": "小", "last_name": "美", "username": "xiaomei"}
BOB = {"id": 222, "is_bot": False, "first_name": "阿强"}
BOT = {"id": 999, "is_bot": True, "first_name": "shequn", "username": "shequn_bot"}

MESSAGE = {"update_id": 10001, "message": {
    "message_id": 51, "from": ALICE, "chat": CHAT, "date": 1763870400, "text": "大家好 @ahqiang",
    "entities": [{"type": "mention", "offset": 4, "length": 8}]}}

REPLY = {"update_id": 10002, "message": {
    "message_id": 52, "from": BOB, "chat": CHAT, "date": 1763870460, "text": "欢迎!",
    "reply_to_message": {"message_id": 51, "from": ALICE, "chat": CHAT, "date": 1763870400, "text": "大家好"}}}

EDITED = {"update_id": 10003, "edited_message": {
    "message_id": 51, "from": ALICE, "chat": CHAT, "date": 1763870400, "edit_date": 1763870500,
    "text": "大家好呀"}}

NEW_MEMBERS = {"update_id": 10004, "message": {
    "message_id": 53, "from": BOB, "chat": CHAT, "date": 1763870600, "new_chat_members": [BOB]}}

CHAT_MEMBER_JOIN = {"update_id": 10005, "chat_member": {
    "chat": CHAT, "from": ALICE, "date": 1763870700,
    "old_chat_member": {"status": "left", "user": {"id": 333, "is_bot": False, "first_name": "新人"}},
    "new_chat_member": {"status": "member", "user": {"id": 333, "is_bot": False, "first_name": "新人"}},
    "invite_link": {"invite_link": "https://t.me/+abc", "creator": ALICE, "creates_join_request": False,
                    "is_primary": False, "is_revoked": False, "name": "小美的邀请"}}}

CHAT_MEMBER_KICKED = {"update_id": 10006, "chat_member": {
    "chat": CHAT, "from": BOT, "date": 1763870800,
    "old_chat_member": {"status": "member", "user": BOB},
    "new_chat_member": {"status": "kicked", "user": BOB, "until_date": 0}}}

REACTION = {"update_id": 10007, "message_reaction": {
    "chat": CHAT, "message_id": 51, "user": BOB, "date": 1763870900,
    "old_reaction": [], "new_reaction": [{"type": "emoji", "emoji": "👍"}]}}

UNKNOWN = {"update_id": 10008, "poll": {"id": "p1", "question": "周末聚会?", "options": [], "total_voter_count": 0,
                                        "is_closed": False, "is_anonymous": True, "type": "regular",
                                        "allows_multiple_answers": False}}

PRIVATE = {"update_id": 10009, "message": {"message_id": 7, "from": ALICE,
                                           "chat": {"id": 111, "type": "private", "first_name": "小"},
                                           "date": 1763871000, "text": "/start"}}

# --- responses -------------------------------------------------------------------------------------
SENT = {"ok": True, "result": {"message_id": 77, "from": BOT, "chat": CHAT, "date": 1763871100, "text": "群规"}}
TRUE = {"ok": True, "result": True}
RETRY_AFTER = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 17",
               "parameters": {"retry_after": 17}}
CANT_DELETE = {"ok": False, "error_code": 400, "description": "Bad Request: message can't be deleted"}
CHAT_NOT_FOUND = {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
SERVER_ERROR = {"ok": False, "error_code": 502, "description": "Bad Gateway"}
GET_UPDATES = {"ok": True, "result": [MESSAGE, REPLY]}
