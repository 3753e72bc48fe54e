"""WeCom outbound, around wechatpy (pinned in pyproject; nothing else in shequn imports it) and aiohttp.

* The outbox adapter is the group robot webhook (群机器人): text (≤ 2048 bytes), markdown (≤ 4096
  bytes), image (by URL is not supported by the robot: sent as a link), news (≤ 8 articles). The
  robot's key is a per-room secret (``Room.secrets_encrypted['robot_key']``). errcode 45009 means the
  robot went over 20/min and is throttled for 10 minutes. Kick/recall/mute do not exist for customer
  groups: those actions become owner tasks (capabilities).
* :class:`WecomApi` is the server API the services call: ``externalcontact/groupchat/get`` (the
  membership diff of ``change_external_chat``), join-way (加入群聊) and contact-way (联系我) QR
  configs. Its access token is cached in Django's cache (Redis when configured)."""

from __future__ import annotations

from typing import Any

import aiohttp
from django.core.cache import cache
from wechatpy.enterprise import WeChatClient
from wechatpy.exceptions import WeChatClientException
from wechatpy.session import SessionStorage
from wechatpy.session.memorystorage import MemoryStorage

from shequn.connectors.adapters import ActionItem, ConnInfo, DeliveryError, may_send, not_sent, text_of
from shequn.connectors.models import ActionKind

DEFAULT_API = "https://qyapi.weixin.qq.com/cgi-bin/"
TEXT_MAX = 2048
MARKDOWN_MAX = 4096
THROTTLE_SECONDS = 600
RETRY_CODES = {-1, 45009, 45033}


class _CacheSession(SessionStorage):  # type: ignore[misc]
    """wechatpy's token storage on Django's cache (Redis when configured), shared by processes,
    one namespace per connection."""

    def __init__(self, connection_id: int) -> None:
        self.prefix = f"wecom:{connection_id}:"

    def get(self, key: str, default: Any = None) -> Any:
        return cache.get(self.prefix + key, default)

    def set(self, key: str, value: Any, ttl: int | None = None) -> None:
        cache.set(self.prefix + key, value, timeout=max(60, (ttl or 7200) - 300))

    def delete(self, key: str) -> None:
        cache.delete(self.prefix + key)


class WecomApi:
    """The WeCom server API for one connection (access token cached by wechatpy)."""

    def __init__(self, conn: ConnInfo, *, cached: bool = True) -> None:
        base = str(conn.config.get("api_base") or DEFAULT_API)
        base = base if base.endswith("/") else base + "/"
        # ``cached=False``: a token for this object only (checking credentials before they are stored)
        client = WeChatClient(conn.config["corp_id"], conn.secrets["corp_secret"], timeout=10,
                              session=_CacheSession(conn.id) if cached else MemoryStorage())
        client.API_BASE_URL = base

        def fetch_access_token() -> Any:
            return client._fetch_access_token(url=f"{base}gettoken",
                                              params={"corpid": client.corp_id, "corpsecret": client.secret})

        client.fetch_access_token = fetch_access_token
        self.client = client

    def post(self, endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(endpoint, data=data)
        return result

    def group_chat(self, chat_id: str) -> dict[str, Any]:
        data = self.post("externalcontact/groupchat/get", {"chat_id": chat_id, "need_name": 1})
        return dict(data.get("group_chat") or {})

    def add_join_way(self, *, chat_ids: list[str], state: str, remark: str = "", auto_create_room: bool = False,
                     room_base_name: str = "", room_base_id: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"scene": 2, "remark": remark, "auto_create_room": int(auto_create_room),
                                "chat_id_list": chat_ids, "state": state}
        if auto_create_room:
            body.update(room_base_name=room_base_name, room_base_id=room_base_id or 1)
        config_id = self.post("externalcontact/groupchat/add_join_way", body)["config_id"]
        way = self.post("externalcontact/groupchat/get_join_way", {"config_id": config_id}).get("join_way") or {}
        return {"config_id": config_id, "qr_code": way.get("qr_code", "")}

    def add_contact_way(self, *, users: list[str], state: str, remark: str = "", single: bool = True) -> dict[str, Any]:
        body = {"type": 1 if single else 2, "scene": 2, "state": state, "remark": remark, "user": users}
        data = self.post("externalcontact/add_contact_way", body)
        return {"config_id": data["config_id"], "qr_code": data.get("qr_code", "")}


class AccessError(Exception):
    """WeCom refused the connect-time check: ``step`` is ``token`` or ``permission``."""

    def __init__(self, step: str, errcode: int | None, errmsg: str) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.step, self.errcode, self.errmsg = step, errcode, errmsg


#: gettoken errcodes that mean a wrong corp id, and a wrong secret (WeCom's global error codes)
BAD_CORP_ID = {40013}
BAD_SECRET = {40001, 40091, 41004, 42001}


def check_access(conn: ConnInfo) -> dict[str, Any]:
    """Connect-time check, with a token of its own (nothing cached): ``gettoken`` with the corp id and
    secret, then ``externalcontact/get_follow_user_list``, which only a secret with the 客户联系
    (customer contact) permission may call (48002 / 60011 otherwise) — the one the customer-group
    callbacks and ``groupchat/get`` need. Raises :class:`AccessError`; network errors pass through."""
    api = WecomApi(conn, cached=False)
    try:
        api.client.fetch_access_token()
    except WeChatClientException as exc:
        if exc.errcode is None and exc.response is not None:
            raise AccessError("token", None, f"HTTP {exc.response.status_code}") from exc
        raise AccessError("token", exc.errcode, str(exc.errmsg or "")) from exc
    try:
        data: dict[str, Any] = api.client.get("externalcontact/get_follow_user_list")
    except WeChatClientException as exc:
        raise AccessError("permission", exc.errcode, str(exc.errmsg or "")) from exc
    return {"follow_users": len(data.get("follow_user") or [])}


# --- the outbox adapter: the group robot ---------------------------------------------------------------

def robot_body(item: ActionItem) -> dict[str, Any]:
    p = item.payload
    articles = p.get("articles")
    link = p.get("link") if isinstance(p.get("link"), dict) else None
    if link and not articles:
        articles = [link]
    if articles:
        if not isinstance(articles, list) or not 1 <= len(articles) <= 8:
            raise DeliveryError(DeliveryError.PERMANENT, "图文消息需要 1 到 8 篇")
        return {"msgtype": "news", "news": {"articles": [
            {"title": str(a.get("title", ""))[:128], "description": str(a.get("description", ""))[:512],
             "url": str(a.get("url", "")), "picurl": str(a.get("picurl") or a.get("image_url") or "")}
            for a in articles]}}
    text = text_of(p)
    name = str(p.get("member_name") or "")
    if item.kind == ActionKind.WARN and name and p.get("format") != "markdown":
        # name the member in the text: the robot's mentioned_list reaches only the corp's own staff
        # (userid), not an external customer (wm…), so the name is what tells the group who is warned
        text = f"@{name} {text}"
    if p.get("format") == "markdown":
        if len(text.encode()) > MARKDOWN_MAX:
            raise DeliveryError(DeliveryError.PERMANENT, f"markdown 超过 {MARKDOWN_MAX} 字节")
        return {"msgtype": "markdown", "markdown": {"content": text}}
    if not text:
        raise DeliveryError(DeliveryError.PERMANENT, "文本为空")
    if len(text.encode()) > TEXT_MAX:
        raise DeliveryError(DeliveryError.PERMANENT, f"文本超过 {TEXT_MAX} 字节 ({len(text.encode())})")
    body: dict[str, Any] = {"msgtype": "text", "text": {"content": text}}
    if item.target:
        body["text"]["mentioned_list"] = [item.target]
    return body


class WecomAdapter:
    platform = "wecom"

    async def deliver_batch(self, conn: ConnInfo, items: list[ActionItem]) -> list[dict[str, Any] | DeliveryError]:
        base = str(conn.config.get("api_base") or DEFAULT_API)
        base = base if base.endswith("/") else base + "/"
        out: list[dict[str, Any] | DeliveryError] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            for item in items:
                if not await may_send(item):
                    out.append(not_sent())
                    continue
                try:
                    out.append(await self.deliver(session, base, item))
                except DeliveryError as exc:
                    out.append(exc)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    out.append(DeliveryError(DeliveryError.RETRY, f"{type(exc).__name__}"))
        return out

    async def deliver(self, session: aiohttp.ClientSession, base: str, item: ActionItem) -> dict[str, Any]:
        if item.kind not in (ActionKind.SEND, ActionKind.WARN):
            raise DeliveryError(DeliveryError.DELEGATE, "企业微信客户群不支持该操作, 请群主手动处理")
        key = item.room_secrets.get("robot_key")
        if not key:
            raise DeliveryError(DeliveryError.DELEGATE, "该群未配置群机器人, 请群主手动发送")
        body = robot_body(item)
        async with session.post(f"{base}webhook/send", params={"key": key}, json=body) as resp:
            if resp.status >= 500:
                raise DeliveryError(DeliveryError.RETRY, f"HTTP {resp.status}")
            try:
                data = await resp.json(content_type=None)
            except ValueError as exc:
                raise DeliveryError(DeliveryError.RETRY, f"HTTP {resp.status}: bad JSON") from exc
        code = int(data.get("errcode", -1)) if isinstance(data, dict) else -1
        msg = str(data.get("errmsg", "")) if isinstance(data, dict) else ""
        if code == 0:
            return {"msgtype": body["msgtype"]}
        if code == 45009:
            raise DeliveryError(DeliveryError.RATE_LIMITED, f"45009 {msg}", retry_after=THROTTLE_SECONDS)
        if code in RETRY_CODES:
            raise DeliveryError(DeliveryError.RETRY, f"{code} {msg}"[:500])
        raise DeliveryError(DeliveryError.PERMANENT, f"{code} {msg}"[:500])
