"""Inbound webhooks (mounted at /hooks/). Each verifies the platform's secret before anything is
stored: a failure answers 403 and logs the connection id and the reason — never the payload. A
verified callback is stored raw once (de-duplicated on the platform's id) and processed by a task
enqueued in the same transaction, so the platform gets its answer at once (WeCom: within 5 s)."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .models import Connection
from .platforms.matrix import inbound as mx
from .platforms.telegram import inbound as tg
from .platforms.wecom import inbound as wc
from .selectors import hook_connection
from .services import connection_secrets, do_note_connection_error, do_store_inbound

log = logging.getLogger("shequn.connectors.hooks")
MAX_BODY = 2 * 1024 * 1024


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
    conn = hook_connection("telegram", hook_key)
    if conn is None:
        return JsonResponse({"ok": False, "error": "not found"}, status=404)
    expected = connection_secrets(conn).get("webhook_secret", "")
    if not tg.secret_matches(expected, request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")):
        return _forbidden(conn, "bad X-Telegram-Bot-Api-Secret-Token")
    try:
        update = _json_body(request)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"ok": False, "error": "malformed JSON"}, status=400)
    if not tg.is_update(update):
        return JsonResponse({"ok": False, "error": "update_id missing"}, status=400)
    key, kind = tg.update_key(update)
    _row, created = do_store_inbound(conn, key, kind, update)
    return JsonResponse({"ok": True, "duplicate": not created})


@csrf_exempt
@require_http_methods(["PUT", "POST"])
def matrix_transaction(request: HttpRequest, hook_key: str, txn_id: str) -> HttpResponse:
    """Matrix application-service push (``PUT /_matrix/app/v1/transactions/{txnId}``), authenticated
    by the homeserver token (``Authorization: Bearer <hs_token>``)."""
    conn = hook_connection("matrix", hook_key)
    if conn is None:
        return JsonResponse({"errcode": "M_NOT_FOUND"}, status=404)
    expected = connection_secrets(conn).get("hs_token", "")
    if not mx.hs_token_matches(expected, request.headers.get("Authorization", ""),
                               request.GET.get("access_token", "")):
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
    conn = hook_connection("wecom", hook_key)
    if conn is None:
        return HttpResponse("not found", status=404)
    sig = request.GET.get("msg_signature", "")
    ts = request.GET.get("timestamp", "")
    nonce = request.GET.get("nonce", "")
    if not (sig and ts and nonce):
        return _forbidden(conn, "missing msg_signature/timestamp/nonce")
    values = connection_secrets(conn)
    c = wc.crypto(values, str(conn.config.get("corp_id") or ""))
    try:
        if request.method == "GET":
            echo = wc.verify_url(c, sig, ts, nonce, request.GET.get("echostr", ""))
            return HttpResponse(echo, content_type="text/plain")
        if len(request.body) > MAX_BODY:
            return HttpResponse("too large", status=400)
        msg = wc.decrypt_callback(c, request.body, sig, ts, nonce)
    except wc.Rejected as exc:
        return _forbidden(conn, str(exc))
    except wc.Malformed as exc:
        return HttpResponse(str(exc), status=400)
    do_store_inbound(conn, wc.dedupe_key(msg), wc.event_type(msg), msg)
    return HttpResponse("success", content_type="text/plain")
