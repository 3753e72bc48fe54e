"""A local WeChat Pay v3 server for the merchant-transfer API that serves recorded responses
(``wechatpay_recorded.json``) signed with a test platform key, so ``wechatpayv3`` verifies them
exactly as it verifies api.mch.weixin.qq.com. Never reaches an external host."""

from __future__ import annotations

import json
import secrets
import threading
import time
from base64 import b64encode
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256

RECORDED = json.loads((Path(__file__).with_name("wechatpay_recorded.json")).read_text(encoding="utf-8"))
PUBKEY_ID = "PUB_KEY_ID_0000000001"


def pem_private(key: Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def pem_public(key: Any) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class FakeWeChatPay:
    """``status`` (``detail_processing`` / ``detail_success`` / ``detail_fail``) is what a detail query
    of a known batch answers; ``batch_reply`` what a new batch gets (``batch_accepted`` by default).
    ``posts``/``gets`` record what the client sent."""

    def __init__(self) -> None:
        self.platform_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.merchant_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.batches: dict[str, dict[str, Any]] = {}
        self.posts: list[dict[str, Any]] = []
        self.gets: list[str] = []
        self.status = "detail_processing"
        self.batch_reply = "batch_accepted"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, name: str, out_no: str) -> None:
                recorded = RECORDED[name]
                body = json.dumps(recorded["body"], ensure_ascii=False).replace("{out_no}", out_no)
                ts, nonce = str(int(time.time())), secrets.token_hex(8)
                sig = b64encode(fake.platform_key.sign(f"{ts}\n{nonce}\n{body}\n".encode(), PKCS1v15(), SHA256()))
                self.send_response(recorded["status"])
                self.send_header("Content-Type", "application/json")
                self.send_header("Wechatpay-Timestamp", ts)
                self.send_header("Wechatpay-Nonce", nonce)
                self.send_header("Wechatpay-Signature", sig.decode())
                self.send_header("Wechatpay-Serial", PUBKEY_ID)
                self.send_header("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048")
                self.end_headers()
                self.wfile.write(body.encode())

            def do_POST(self) -> None:
                data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.posts.append({"path": self.path, "authorization": self.headers["Authorization"], "body": data})
                out_no = data["out_batch_no"]
                if out_no in fake.batches:
                    return self._send("batch_duplicate", out_no)
                if fake.batch_reply == "batch_accepted":
                    fake.batches[out_no] = data
                self._send(fake.batch_reply, out_no)

            def do_GET(self) -> None:
                fake.gets.append(self.path)
                parts = self.path.split("/")
                out_batch, out_detail = parts[5], parts[-1]
                if out_batch not in fake.batches:
                    return self._send("detail_not_found", out_detail)
                self._send(fake.status, out_detail)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def config_fields(self) -> dict[str, str]:
        """What an operator types into the console form for this merchant."""
        return {"mchid": "1900000001", "appid": "wx0000000001", "cert_serial_no": "5157F09EFDC096DE15EBE81A47057A72",
                "public_key_id": PUBKEY_ID, "public_key": pem_public(self.platform_key),
                "private_key": pem_private(self.merchant_key), "apiv3_key": "0" * 32}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
