"""Inbound webhooks (mounted at /hooks/). Each verifies the platform's secret before anything is
stored: a failure answers 403 and logs the connection id and the reason — never the payload. A
verified callback is stored raw once (de-duplicated on the platform's id) and processed by a task
enqueued in the same transaction, so the platform gets its answer at once (WeCom: within 5 s)."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .models import Connection
from .services import connection_secrets, do_note_connection_error, do_store_inbound

log = logging.getLogger("shequn.connectors.hooks")
MAX_BODY = 2 * 1024 * 1024


def _connection(platform: str, hook_key: str) -> Connection | None:
    return Connection.objects.filter(platform=platform, hook_key=hook_key, is_active=True).first()


def _forbidden(conn: Connection, why: str) -> HttpResponse:
    log.warning("%s hook: rejected for connection %s: %s", conn.platform, conn.pk, why)
    do_note_connection_error(conn.pk, f"rejected callback: {why}")
    return JsonResponse({"ok": False, "error": "forbidden"}, status=403)


def _json_body(request: HttpRequest) -> Any:
    if len(request.body) > MAX_BODY:
        raise ValueError("body too large")
    return json.loads(request.body.decode("utf-8"))


@csrf_exempt
@require_http_methods(["POST"])
def telegram_webhook(request: HttpRequest, hook_key: str) -> HttpResponse:
    conn = _connection("telegram", hook_key)
    if conn is None:
        return JsonResponse({"ok": False, "error": "not found"}, status=404)
    expected = connection_secrets(conn).get("webhook_secret", "")
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return _forbidden(conn, "bad X-Telegram-Bot-Api-Secret-Token")
    try:
        update = _json_body(request)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"ok": False, "error": "malformed JSON"}, status=400)
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        return JsonResponse({"ok": False, "error": "update_id missing"}, status=400)
    kinds = [k for k in update if k != "update_id"]
    _row, created = do_store_inbound(conn, f"update:{update['update_id']}", kinds[0] if kinds else "", update)
    return JsonResponse({"ok": True, "duplicate": not created})


@csrf_exempt
@require_http_methods(["PUT", "POST"])
def matrix_transaction(request: HttpRequest, hook_key: str, txn_id: str) -> HttpResponse:
    """Matrix application-service push (``PUT /_matrix/app/v1/transactions/{txnId}``), authenticated
    by the homeserver token (``Authorization: Bearer <hs_token>``)."""
    conn = _connection("matrix", hook_key)
    if conn is None:
        return JsonResponse({"errcode": "M_NOT_FOUND"}, status=404)
    expected = connection_secrets(conn).get("hs_token", "")
    auth = request.headers.get("Authorization", "")
    given = auth[7:] if auth.startswith("Bearer ") else request.GET.get("access_token", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return _forbidden(conn, "bad homeserver token")
    try:
        body = _json_body(request)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"errcode": "M_NOT_JSON"}, status=400)
    if not isinstance(body, dict) or not isinstance(body.get("events", []), list):
        return JsonResponse({"errcode": "M_BAD_JSON"}, status=400)
    do_store_inbound(conn, f"txn:{txn_id}", "transaction", {"events": body.get("events", [])})
    return JsonResponse({})


@csrf_exempt
@require_http_methods(["GET", "POST"])
def wecom_callback(request: HttpRequest, hook_key: str) -> HttpResponse:
    """GET: URL verification (answer the decrypted echostr). POST: an encrypted event; answered
    "success" at once, processed by a task."""
    from .wecom import crypto, dedupe_key, parse_xml

    conn = _connection("wecom", hook_key)
    if conn is None:
        return HttpResponse("not found", status=404)
    sig = request.GET.get("msg_signature", "")
    ts = request.GET.get("timestamp", "")
    nonce = request.GET.get("nonce", "")
    if not (sig and ts and nonce):
        return _forbidden(conn, "missing msg_signature/timestamp/nonce")
    values = connection_secrets(conn)
    c = crypto(values, str(conn.config.get("corp_id") or ""))
    if request.method == "GET":
        try:
            echo = c.check_signature(sig, ts, nonce, request.GET.get("echostr", ""))
        except Exception as exc:  # wechatpy raises several types for a bad signature / ciphertext
            return _forbidden(conn, f"URL verification failed ({type(exc).__name__})")
        return HttpResponse(echo, content_type="text/plain")
    if len(request.body) > MAX_BODY:
        return HttpResponse("too large", status=400)
    try:
        outer = parse_xml(request.body.decode("utf-8"))
    except Exception:  # xmltodict raises ExpatError and friends
        return HttpResponse("malformed XML", status=400)
    if "Encrypt" not in outer:
        return HttpResponse("malformed XML: no Encrypt", status=400)
    try:
        plain = c.decrypt_message(outer, sig, ts, nonce)
    except Exception as exc:
        return _forbidden(conn, f"signature/decryption failed ({type(exc).__name__})")
    try:
        msg = parse_xml(plain)
    except Exception:
        return HttpResponse("malformed XML", status=400)
    do_store_inbound(conn, dedupe_key(msg), str(msg.get("Event") or msg.get("MsgType") or ""), msg)
    return HttpResponse("success", content_type="text/plain")
