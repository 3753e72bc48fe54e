"""A tiny synchronous Matrix client-server helper for the tests (what a human user does)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any


class User:
    def __init__(self, base_url: str, creds: dict[str, str]) -> None:
        self.base = base_url
        self.user_id = creds["user_id"]
        self.token = creds["access_token"]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        req = urllib.request.Request(f"{self.base}/_matrix/client/v3{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:300]!r}") from exc

    def create_room(self, name: str, invite: list[str], power: dict[str, int]) -> str:
        body = {"name": name, "preset": "private_chat", "invite": invite,
                "power_level_content_override": {"users": power}}
        return self.call("POST", "/createRoom", body)["room_id"]

    def join(self, room_id: str) -> None:
        self.call("POST", f"/join/{urllib.parse.quote(room_id)}", {})

    def send(self, room_id: str, text: str, **extra: Any) -> str:
        txn = uuid.uuid4().hex
        return self.call("PUT", f"/rooms/{urllib.parse.quote(room_id)}/send/m.room.message/{txn}",
                         {"msgtype": "m.text", "body": text, **extra})["event_id"]

    def event(self, room_id: str, event_id: str) -> dict[str, Any]:
        return self.call("GET", f"/rooms/{urllib.parse.quote(room_id)}/event/{urllib.parse.quote(event_id)}")

    def state(self, room_id: str, etype: str, key: str = "") -> dict[str, Any]:
        return self.call("GET", f"/rooms/{urllib.parse.quote(room_id)}/state/{etype}/{urllib.parse.quote(key)}")

    def messages(self, room_id: str, limit: int = 50) -> list[dict[str, Any]]:
        return self.call("GET", f"/rooms/{urllib.parse.quote(room_id)}/messages?dir=b&limit={limit}")["chunk"]
