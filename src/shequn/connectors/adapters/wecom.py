"""WeCom group robot webhook (群机器人): text (≤ 2048 bytes), markdown (≤ 4096 bytes), image (by URL is
not supported by the robot: sent as a link), news (≤ 8 articles). The robot's key is a per-room
secret (``Room.secrets_encrypted['robot_key']``). errcode 45009 means the robot went over 20/min and
is throttled for 10 minutes."""

from __future__ import annotations

from typing import Any

import aiohttp

from ..models import ActionKind
from . import ActionItem, ConnInfo, DeliveryError, text_of

DEFAULT_API = "https://qyapi.weixin.qq.com/cgi-bin/"
TEXT_MAX = 2048
MARKDOWN_MAX = 4096
THROTTLE_SECONDS = 600
RETRY_CODES = {-1, 45009, 45033}


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
