"""Fault 2 (continued): ``kill -9`` of a worker in the middle of outbox delivery.

One tenant has a Telegram bot and a Matrix bot, each talking to a local fake of its platform that
records every request it received and the effect it applied — and sleeps a little after applying it
before it answers, so the kill lands between "the platform acted" and "the outbox recorded it".
120 ``send`` actions go to 120 Telegram groups and 100 to 4 Matrix rooms (``do_request_action``);
``shequn worker`` delivers them and is killed with SIGKILL while the fakes are answering, then
started again. The restarted delivery loop releases the dead process's leases at once (its lease
token names the process) and applies the recovery rule:

* Matrix: every message carries the transaction id ``shequn-<action id>``, which the homeserver
  de-duplicates, so an interrupted send is sent again: every action ends ``done`` and each message
  is in its room exactly once (the fake may have *received* it twice).
* Telegram: ``sendMessage`` has no idempotency key. An action whose call had begun (the engine
  committed ``attempt_started_at`` just before it) goes to the dead letter for a person — never
  sent twice; one the killed worker had claimed but not yet sent is sent again.

Afterwards no action is pending or sending, none is lost (each is ``done`` or dead-lettered with the
"interrupted" reason) and no message reached a group twice."""

from __future__ import annotations

import collections
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.utils import timezone

from shequn.communities.models import ChatGroup, Community
from shequn.connectors.models import OutboxAction
from shequn.connectors.services import do_create_connection, do_request_action
from shequn.connectors.services.delivery import interrupted_reason
from shequn.connectors.tests.fake_server import Answer
from shequn.connectors.tests.telegram_fake import FakeTelegram
from shequn.core.models import Tenant
from shequn.core.permissions import Principal

from ._harness import figures, wait_for

TELEGRAM = 120
MATRIX = 100
MATRIX_ROOMS = 4
#: what each fake sleeps after applying a send, before answering
PEER_DELAY = 0.12

Status = OutboxAction.Status


class SlowTelegram(FakeTelegram):
    """The stateful Telegram fake, answering ``sendMessage`` only ``PEER_DELAY`` after the message is
    in the chat (``sent``); ``in_flight`` counts the messages sent but not yet answered."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.lock = threading.Lock()
        # the answer to the killed worker goes into a closed socket: not an error of the test
        self.server.httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]

    def answer(self, name: str, path: str, f: dict[str, str]) -> Answer:
        if name != "sendMessage":
            return super().answer(name, path, f)
        with self.lock:
            out = super().answer(name, path, f)
            self.in_flight += 1
        time.sleep(PEER_DELAY)
        with self.lock:
            self.in_flight -= 1
        return out


class FakeHomeserver:
    """The Matrix client-server API a bot's outbox uses: ``PUT /rooms/{room}/send/{type}/{txnId}``
    with the spec's idempotency (the same access token and transaction id return the first event, the
    message is not posted again), and an idle ``/sync`` that honours its ``timeout`` (up to 2 s)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.lock = threading.Lock()
        self.received: list[str] = []  # the transaction id of every send request
        self.events: dict[tuple[str, str], str] = {}  # (token, txn) → event id
        self.timeline: list[tuple[str, str]] = []  # (room, body) of every message posted
        self.in_flight = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _token(self, query: dict[str, list[str]]) -> str:
                auth = self.headers.get("Authorization", "")
                return auth.removeprefix("Bearer ") if auth else (query.get("access_token") or [""])[0]

            def do_GET(self) -> None:
                url = urllib.parse.urlparse(self.path)
                query = urllib.parse.parse_qs(url.query)
                if self._token(query) != fake.token:
                    return self._reply(401, {"errcode": "M_UNKNOWN_TOKEN", "error": "unknown token"})
                if url.path.endswith("/sync"):
                    time.sleep(min(2.0, int((query.get("timeout") or ["0"])[0]) / 1000))
                    return self._reply(200, {"next_batch": f"s{time.monotonic_ns()}"})
                return self._reply(404, {"errcode": "M_UNRECOGNIZED", "error": "not here"})

            def do_PUT(self) -> None:
                url = urllib.parse.urlparse(self.path)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                token = self._token(urllib.parse.parse_qs(url.query))
                if token != fake.token:
                    return self._reply(401, {"errcode": "M_UNKNOWN_TOKEN", "error": "unknown token"})
                parts = [urllib.parse.unquote(p) for p in url.path.split("/")]
                # /_matrix/client/v3/rooms/{room}/send/{type}/{txn}
                if len(parts) < 9 or parts[-3] != "send":
                    return self._reply(404, {"errcode": "M_UNRECOGNIZED", "error": "not here"})
                room, txn = parts[-4], parts[-1]
                with fake.lock:
                    fake.received.append(txn)
                    event = fake.events.get((token, txn))
                    if event is None:  # a new transaction: post it
                        event = fake.events[(token, txn)] = f"$ev{len(fake.events)}"
                        fake.timeline.append((room, str(body.get("body", ""))))
                    fake.in_flight += 1
                time.sleep(PEER_DELAY)
                with fake.lock:
                    fake.in_flight -= 1
                return self._reply(200, {"event_id": event})

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a long-polling /sync of the killed worker answers into a closed socket


def _outbox(tenant: Tenant, platform: str) -> dict[int, OutboxAction]:
    return {a.pk: a for a in OutboxAction.objects.filter(tenant=tenant, platform=platform)}


def test_kill_a_worker_mid_outbox_delivery(site):
    tenant = Tenant.objects.create(slug="fault", name="故障演练")
    system = Principal.system(tenant.pk)
    community = Community.objects.create(tenant=tenant, name="演练社群")
    hs = FakeHomeserver("syt_fault_token")
    with SlowTelegram() as tg:
        try:
            do_create_connection(system, platform="telegram", name="tg", config={"api_base": tg.url},
                                 secret_values={"bot_token": tg.token, "webhook_secret": "fault-secret-token"},
                                 verify=False)
            do_create_connection(system, platform="matrix", name="mx",
                                 config={"homeserver": hs.url, "user_id": "@bot:fault.test"},
                                 secret_values={"access_token": hs.token}, verify=False)
            groups = ChatGroup.objects.bulk_create(
                [ChatGroup(tenant=tenant, community=community, platform="telegram", external_id=str(-1009000 - i),
                           name=f"TG {i}") for i in range(TELEGRAM)]
                + [ChatGroup(tenant=tenant, community=community, platform="matrix",
                             external_id=f"!room{i}:fault.test", name=f"MX {i}") for i in range(MATRIX_ROOMS)])
            tg_groups = [g for g in groups if g.platform == "telegram"]
            mx_groups = [g for g in groups if g.platform == "matrix"]
            for i, g in enumerate(tg_groups):
                do_request_action(tenant.pk, kind="send", group_id=g.pk, idempotency_key=f"fault:tg:{i}",
                                  payload={"text": f"fault-tg-{i}"}, source="faults")
            for i in range(MATRIX):
                do_request_action(tenant.pk, kind="send", group_id=mx_groups[i % MATRIX_ROOMS].pk,
                                  idempotency_key=f"fault:mx:{i}", payload={"text": f"fault-mx-{i}"}, source="faults")
            assert OutboxAction.objects.filter(tenant=tenant, status=Status.PENDING).count() == TELEGRAM + MATRIX

            site.start("worker", "worker", "--no-scheduler")
            wait_for(lambda: len(tg.sent) >= TELEGRAM // 4 and len(hs.timeline) >= MATRIX // 4, 120,
                     "a quarter of the messages delivered", step=0.05)
            # kill while the platforms are answering: their effect applied, the outcome not yet recorded
            wait_for(lambda: tg.in_flight > 0 and hs.in_flight > 0, 60, "sends in flight on both platforms",
                     step=0.002)
            site.kill("worker")
            killed_at = time.monotonic()
            sending = OutboxAction.objects.filter(tenant=tenant, status=Status.SENDING)
            in_flight = {"telegram": sending.filter(platform="telegram").count(),
                         "matrix": sending.filter(platform="matrix").count()}
            started_at_kill = sending.filter(attempt_started_at__isnull=False).count()
            sent_at_kill = (len(tg.sent), len(hs.timeline))

            site.start("worker2", "worker", "--no-scheduler")
            wait_for(lambda: not OutboxAction.objects.filter(
                tenant=tenant, status__in=(Status.PENDING, Status.SENDING)).exists(), 150,
                "the outbox drained after the restart", step=0.1)
            recovery = time.monotonic() - killed_at
            time.sleep(PEER_DELAY * 2)  # anything still on the wire lands in the fakes' records
        finally:
            hs.close()

    # --- Telegram: done exactly once, or dead-lettered for a person (and then at most once) -------
    tg_rows = _outbox(tenant, "telegram")
    tg_text = {pk: a.payload["text"] for pk, a in tg_rows.items()}
    in_chats = collections.Counter(m["text"] for m in tg.sent)
    tg_done = [pk for pk, a in tg_rows.items() if a.status == Status.DONE]
    tg_dead = [pk for pk, a in tg_rows.items() if a.status == Status.DEAD]
    tg_dup = sum(n - 1 for n in in_chats.values() if n > 1)
    tg_lost = [pk for pk in tg_done if in_chats[tg_text[pk]] != 1]  # recorded done, never in the chat
    flagged_delivered = sum(1 for pk in tg_dead if in_chats[tg_text[pk]] == 1)
    # --- Matrix: each action done, each message posted once (a repeated transaction de-duplicated) ---
    mx_rows = _outbox(tenant, "matrix")
    posted = collections.Counter(body for _room, body in hs.timeline)
    received = collections.Counter(hs.received)
    mx_done = [pk for pk, a in mx_rows.items() if a.status == Status.DONE]
    mx_dup = sum(n - 1 for n in posted.values() if n > 1)
    mx_missing = [pk for pk, a in mx_rows.items() if posted[a.payload["text"]] != 1]
    figures("kill_worker_mid_outbox", attempts=TELEGRAM + MATRIX,
            committed=len(tg_done) + len(mx_done), flagged_for_human=len(tg_dead),
            flagged_already_delivered=flagged_delivered,
            lost=len(tg_lost) + len(mx_missing) + (TELEGRAM - len(tg_done) - len(tg_dead)),
            duplicated=tg_dup + mx_dup, in_flight_at_kill=sum(in_flight.values()),
            tg_in_flight_at_kill=in_flight["telegram"], mx_in_flight_at_kill=in_flight["matrix"],
            started_at_kill=started_at_kill, tg_sent_at_kill=sent_at_kill[0], mx_posted_at_kill=sent_at_kill[1],
            mx_resent_deduplicated=sum(n - 1 for n in received.values() if n > 1), recovery_seconds=recovery)

    assert in_flight["telegram"] >= 1 and in_flight["matrix"] >= 1, "the worker was not killed mid-delivery"
    # nothing lost: every action is done or in the dead letter, none pending or sending
    assert len(tg_done) + len(tg_dead) == TELEGRAM, collections.Counter(a.status for a in tg_rows.values())
    assert len(mx_done) == MATRIX, collections.Counter(a.status for a in mx_rows.values())
    assert not tg_lost and not mx_missing
    # nothing twice in a chat or a room
    assert tg_dup == 0 and mx_dup == 0
    assert sum(in_chats.values()) == len(in_chats) and len(hs.timeline) == MATRIX
    # dead letters are the Telegram sends a crash interrupted after their call began, and say so
    assert tg_dead, "no Telegram send was interrupted mid-call"
    for pk in tg_dead:
        row = tg_rows[pk]
        assert row.attempt_started_at is not None and row.last_error == interrupted_reason()
        assert row.next_attempt_at is None and row.done_at is None
    assert all(tg_rows[pk].done_at is not None and tg_rows[pk].done_at <= timezone.now() for pk in tg_done)
