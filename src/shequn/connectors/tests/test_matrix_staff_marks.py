"""Matrix staff marks without a homeserver: power levels and room-version-12 creators."""

from __future__ import annotations

from shequn.connectors.platforms.matrix.inbound import levels_from_state, to_activities


def _msg(sender: str, n: int) -> dict:
    return {"type": "m.room.message", "event_id": f"$m{n}", "sender": sender, "origin_server_ts": 1_700_000_000_000,
            "content": {"msgtype": "m.text", "body": "hi"}}


def _levels(users: dict[str, int], default: int = 0) -> dict:
    return {"type": "m.room.power_levels", "state_key": "", "event_id": "$pl", "sender": "@a:hs",
            "content": {"users": users, "users_default": default}}


def test_power_levels_and_creators_mark_admins() -> None:
    state = [{"type": "m.room.create", "state_key": "", "sender": "@creator:hs", "event_id": "$c",
              "content": {"room_version": "12", "additional_creators": ["@co:hs"]}},
             _levels({"@mod:hs": 50, "@low:hs": 49})]
    levels = {"!r:hs": levels_from_state(state)}
    out = to_activities([("!r:hs", _msg(u, i)) for i, u in enumerate(["@creator:hs", "@co:hs", "@mod:hs",
                                                                        "@low:hs", "@x:hs"])], levels=levels)
    assert [e["payload"]["sender_is_admin"] for e in out] == [True, True, True, False, False]


def test_legacy_rooms_use_power_levels_only_and_timeline_changes_apply_in_order() -> None:
    state = [{"type": "m.room.create", "state_key": "", "sender": "@creator:hs", "event_id": "$c",
              "content": {"room_version": "10"}}, _levels({"@creator:hs": 100})]
    levels = {"!r:hs": levels_from_state(state)}
    batch = [("!r:hs", _msg("@bob:hs", 1)), ("!r:hs", _levels({"@creator:hs": 100, "@bob:hs": 50})),
             ("!r:hs", _msg("@bob:hs", 2)), ("!r:hs", _msg("@creator:hs", 3))]
    marks = [(e["event_id"], e["payload"].get("sender_is_admin")) for e in to_activities(batch, levels=levels)
             if e["kind"] == "message"]
    assert marks == [("$m1", False), ("$m2", True), ("$m3", True)]
    assert levels["!r:hs"]["users"]["@bob:hs"] == 50  # the caller's cache follows the timeline


def test_unknown_rooms_are_left_unmarked() -> None:
    (out,) = to_activities([("!r:hs", _msg("@bob:hs", 1))], levels={})
    assert "sender_is_admin" not in out["payload"]
