"""A local HTTP server answering from scripted responses, recording every request (for the
Telegram Bot API and WeCom API tests). Bound to 127.0.0.1 on a free port; no external host is hit."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, Any]


def _form(content_type: str, body: bytes) -> dict[str, str]:
    if content_type.startswith("multipart/form-data"):
        msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        out = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            out[str(name)] = part.get_content() if isinstance(part.get_content(), str) else "<bytes>"
        return out
    if content_type.startswith("application/x-www-form-urlencoded"):
        return {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
    if (content_type.startswith("application/json") or body[:1] == b"{") and body:
        data = json.loads(body)
        return data if isinstance(data, dict) else {"_": data}
    return {}


class FakeServer:
    def __init__(self, default: Callable[[str, dict[str, str]], Answer] | None = None, *,
                 routed: Callable[[str, str, dict[str, str]], Answer] | None = None) -> None:
        """``default(name, fields)`` answers unscripted calls; or ``routed(name, path, fields)`` when
        the answer depends on the whole path (the Telegram token is part of it)."""
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method name, path, fields)
        self.script: dict[str, list[Answer]] = {}
        self.default = default or (lambda name, fields: (200, {"ok": True, "result": True}))
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parsed = urllib.parse.urlparse(self.path)
                fields = _form(self.headers.get("Content-Type", ""), body)
                fields.update({f"?{k}": v[0] for k, v in urllib.parse.parse_qs(parsed.query).items()})
                name = parsed.path.rstrip("/").rsplit("/", 1)[-1]
                server.requests.append((name, parsed.path, fields))
                queue = server.script.get(name)
                if queue:
                    status, answer = queue.pop(0)
                elif routed is not None:
                    status, answer = routed(name, parsed.path, fields)
                else:
                    status, answer = server.default(name, fields)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def calls(self, name: str) -> list[dict[str, str]]:
        return [f for n, _p, f in self.requests if n == name]
