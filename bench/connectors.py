"""Connector throughput.

    python bench/connectors.py                                   # SQLite
    python bench/connectors.py --db postgres://postgres@127.0.0.1:5432/shequn_bench_conn
    python bench/connectors.py --synapse                         # + a live sync from a real Synapse

Prints:
1. inbound events/s from Matrix sync payloads (recorded shape of ``/sync`` responses, decoded and
   run through the same extraction + ingest path as the bot: ``batch_from_dict`` →
   ``to_activity`` → ``do_ingest_platform_events``), for new events and for a replay (all duplicates);
2. with ``--synapse``: events/s of ``do_matrix_sync`` against a real Synapse (network + parse + ingest);
3. the outbox's sustained delivery rate (claim → Telegram adapter over HTTP → record) against a local
   Bot API endpoint, with the platform rate limits lifted (worker capacity) and with Telegram's
   limits on (what a single bot is allowed: 15/s overall)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def setup(db: str, name: str) -> str:
    """A throw-away database: SQLite in a temp dir, or the PostgreSQL database of ``db`` recreated."""
    import os
    import tempfile

    os.environ["SHEQUN_HOME"] = tempfile.mkdtemp(prefix="shequn-bench-")
    if db == "sqlite":
        os.environ.pop("SHEQUN_DATABASE_URL", None)
        label = "SQLite (WAL)"
    else:
        import dj_database_url
        import psycopg

        cfg = dj_database_url.parse(db)
        dbname = cfg["NAME"] or name
        admin = psycopg.connect(host=cfg["HOST"], port=cfg["PORT"] or 5432, user=cfg["USER"], dbname="postgres",
                                autocommit=True)
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{dbname}"')
        admin.close()
        os.environ["SHEQUN_DATABASE_URL"] = db
        label = "PostgreSQL"
    os.environ["DJANGO_SETTINGS_MODULE"] = "shequn.settings"
    os.environ.setdefault("SHEQUN_LOG_LEVEL", "WARNING")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    return label


def sync_payload(rooms: list[str], per_room: int, start: int, users: int) -> dict[str, Any]:
    """A ``/sync`` response as Synapse sends it: joined rooms with a timeline of messages, replies,
    reactions and membership events."""
    join: dict[str, Any] = {}
    ts = 1763870400000
    for r, room in enumerate(rooms):
        events = []
        for i in range(per_room):
            n = start + r * per_room + i
            sender = f"@user{n % users}:bench"
            eid = f"$ev{n}_{r}"
            if i % 20 == 0:
                events.append({"type": "m.room.member", "event_id": eid, "sender": sender, "state_key": sender,
                               "origin_server_ts": ts + n, "content": {"membership": "join", "displayname": sender},
                               "unsigned": {"prev_content": {"membership": "leave"}}})
            elif i % 7 == 0:
                events.append({"type": "m.reaction", "event_id": eid, "sender": sender, "origin_server_ts": ts + n,
                               "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": f"$ev{n - 1}_{r}",
                                                            "key": "👍"}}})
            else:
                content: dict[str, Any] = {"msgtype": "m.text", "body": f"消息 {n} 今天的团购几点开始?"}
                if i % 5 == 0:
                    content["m.relates_to"] = {"m.in_reply_to": {"event_id": f"$ev{n - 1}_{r}"}}
                    content["m.mentions"] = {"user_ids": [f"@user{(n + 1) % users}:bench"]}
                events.append({"type": "m.room.message", "event_id": eid, "sender": sender,
                               "origin_server_ts": ts + n, "content": content})
        join[room] = {"timeline": {"events": events, "limited": False, "prev_batch": f"p{start}"},
                      "state": {"events": []}, "ephemeral": {"events": []}, "account_data": {"events": []},
                      "summary": {"m.joined_member_count": users}, "unread_notifications": {}}
    return {"next_batch": f"s{start + len(rooms) * per_room}", "rooms": {"join": join, "invite": {}, "leave": {}},
            "presence": {"events": []}, "account_data": {"events": []}, "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []}, "device_one_time_keys_count": {}}


def bench_inbound(conn: Any, rooms: list[str], rounds: int, per_room: int, users: int) -> None:
    from django.db import transaction

    from shequn.connectors.platforms.matrix.inbound import batch_from_dict, to_activity
    from shequn.connectors.services import do_ingest_platform_events

    payloads = [sync_payload(rooms, per_room, k * len(rooms) * per_room, users) for k in range(rounds)]
    raw = [json.dumps(p) for p in payloads]  # the wire form: timing includes JSON decoding

    def run() -> tuple[int, int, float]:
        stored = dup = 0
        t0 = time.perf_counter()
        for body in raw:
            batch = batch_from_dict(json.loads(body))
            with transaction.atomic():
                events = [a for room, ev in batch.events if (a := to_activity(room, ev, bot_user="@bot:bench"))]
                result = do_ingest_platform_events(conn, events)
            stored += result.stored
            dup += result.duplicates
        return stored, dup, time.perf_counter() - t0

    stored, _dup, secs = run()
    print(f"inbound  matrix sync → activity (new):     {stored / secs:9.0f} events/s  "
          f"({stored} events, {rounds} syncs × {len(rooms)} rooms × {per_room})")
    _s, dup, secs = run()
    print(f"inbound  matrix sync → activity (replay):  {dup / secs:9.0f} events/s  (all duplicates, stored {_s})")


def bench_synapse(tenant: Any, messages: int) -> None:
    import importlib.util

    from shequn.communities.models import Community
    from shequn.connectors.services import do_create_connection, do_matrix_sync
    from shequn.core.permissions import Principal

    spec = importlib.util.spec_from_file_location("syn", ROOT / "scripts" / "synapse.py")
    assert spec and spec.loader
    syn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(syn)
    sys.path.insert(0, str(ROOT / "src" / "shequn" / "connectors" / "tests"))
    from matrix_client import User

    server = syn.Synapse().start()
    try:
        bot = server.register("benchbot", admin=True)
        alice = User(server.base_url, server.register("alice"))
        community = Community.objects.create(tenant=tenant, name="synapse-bench")
        conn = do_create_connection(Principal.system(tenant.pk), platform="matrix", name="bench-bot",
                                    default_community_id=community.pk,
                                    config={"homeserver": server.base_url, "user_id": bot["user_id"]},
                                    secret_values={"access_token": bot["access_token"]})
        room = alice.create_room("bench", invite=[bot["user_id"]], power={})
        do_matrix_sync(conn.pk)
        do_matrix_sync(conn.pk)
        for i in range(messages):
            alice.send(room, f"消息 {i}")
        t0 = time.perf_counter()
        out = do_matrix_sync(conn.pk)
        secs = time.perf_counter() - t0
        print(f"inbound  live Synapse sync (+{out['gap_pages']} gap pages): {out['stored'] / secs:9.0f} events/s  "
              f"({out['stored']} events in {secs:.2f}s)")
    finally:
        server.stop()


class _Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536  # one write per response (unbuffered writes + delayed ACK cost 40 ms a request)
    body = json.dumps({"ok": True, "result": {"message_id": 1, "date": 1763870400,
                                               "chat": {"id": -1, "type": "supergroup"}, "text": "x"}}).encode()

    def log_message(self, *a: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


def bench_outbox(tenant: Any, actions: int, groups: int, limits: bool) -> None:
    from django.db import connection as db
    from django.utils import timezone

    from shequn.communities.models import ChatGroup, Community
    from shequn.connectors import capabilities
    from shequn.connectors.models import OutboxAction, RateBucket
    from shequn.connectors.services import delivery, do_create_connection, do_request_action
    from shequn.core.permissions import Principal

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    tag = "limits" if limits else "nolimits"
    community = Community.objects.create(tenant=tenant, name=f"outbox-{tag}")
    do_create_connection(Principal.system(tenant.pk), platform="telegram", name=f"bench-{tag}",
                         config={"api_base": f"http://127.0.0.1:{httpd.server_address[1]}"},
                         secret_values={"bot_token": "1:BENCHTOKEN", "webhook_secret": "x"}, verify=False)
    from shequn.connectors.models import Connection, Room

    conn = Connection.objects.get(name=f"bench-{tag}")
    OutboxAction.objects.filter(tenant=tenant).exclude(status="done").update(status="cancelled")
    gs = []
    for i in range(groups):
        g = ChatGroup.objects.create(tenant=tenant, community=community, platform="telegram",
                                     external_id=f"-{tag}{i}", name=f"g{i}")
        Room.objects.create(tenant=tenant, connection=conn, external_id=g.external_id, group=g)
        gs.append(g)
    for i in range(actions):
        do_request_action(tenant.pk, kind="send", group_id=gs[i % groups].pk, idempotency_key=f"{tag}-{i}",
                          payload={"text": f"第 {i} 条通知"})
    saved = capabilities.PROFILES["telegram"]
    if not limits:
        capabilities.PROFILES["telegram"] = capabilities.Profile(**{**saved.__dict__, "limits": ()})
    RateBucket.objects.all().delete()
    from shequn.connectors.adapters import get_adapter

    get_adapter("telegram")  # aiogram's import (pydantic models) is a one-time cost, not delivery
    deadline = time.monotonic() + (30 if limits else 120)
    t0 = time.perf_counter()
    done = 0
    try:
        while done < actions and time.monotonic() < deadline:
            stats = delivery.deliver_due(200, now=timezone.now())
            done += stats.done
            if not stats.claimed:
                time.sleep(0.05)
    finally:
        capabilities.PROFILES["telegram"] = saved
        httpd.shutdown()
    secs = time.perf_counter() - t0
    label = "Telegram limits on " if limits else "limits lifted      "
    print(f"outbox   deliver → local Bot API ({label}): {done / secs:9.0f} actions/s  "
          f"({done}/{actions} in {secs:.1f}s, {groups} groups, {db.vendor})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--per-room", type=int, default=100)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--actions", type=int, default=3000)
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--synapse", action="store_true")
    parser.add_argument("--synapse-messages", type=int, default=300)
    args = parser.parse_args()
    label = setup(args.db, name="shequn_bench_connectors")
    print(f"database: {label}")

    from shequn.communities.models import Community
    from shequn.connectors.services import do_create_connection, do_discover_room
    from shequn.core.models import Tenant
    from shequn.core.permissions import Principal

    tenant = Tenant.objects.create(slug=f"bench-conn-{int(time.time())}", name="bench")
    community = Community.objects.create(tenant=tenant, name="bench")
    conn = do_create_connection(Principal.system(tenant.pk), platform="matrix", name="bench",
                                default_community_id=community.pk,
                                config={"homeserver": "http://127.0.0.1:1", "user_id": "@bot:bench"},
                                secret_values={"access_token": "x"}, verify=False)
    rooms = [f"!room{i}:bench" for i in range(args.rooms)]
    for r in rooms:
        do_discover_room(conn, r, name=r)
    bench_inbound(conn, rooms, args.rounds, args.per_room, args.users)
    if args.synapse:
        bench_synapse(tenant, args.synapse_messages)
    bench_outbox(tenant, args.actions, args.groups, limits=False)
    bench_outbox(tenant, min(args.actions, 600), args.groups, limits=True)


if __name__ == "__main__":
    main()
