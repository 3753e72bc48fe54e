"""What each platform lets a bot do, and how fast. Engines ask for an action; an action the platform
lacks becomes a human task (see :func:`shequn.connectors.services.do_request_action`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from .models import ActionKind


@dataclass(frozen=True)
class Limit:
    """A token bucket refilled at ``count`` per ``seconds`` holding at most ``burst`` tokens, per
    ``scope`` (``connection`` = the bot account, ``group`` = one room). Any window of W seconds sees
    at most ``burst + W × count / seconds`` actions — the figures below are chosen so that this bound
    stays within the platform's published limit."""

    name: str
    scope: str
    count: int
    seconds: float
    burst: int = 1
    #: the action kinds the limit counts (None: all). Telegram's per-chat limits are on *messages*
    #: the bot sends (Bot FAQ: ~1/s per chat, 20/min per group); deleteMessage and restrictChatMember
    #: are not messages, so an ad's deletion never waits behind the warnings in the group's bucket
    kinds: frozenset[str] | None = None

    @property
    def rate(self) -> float:
        return self.count / self.seconds


@dataclass(frozen=True)
class Profile:
    platform: str
    read_messages: bool
    membership_events: bool
    send_formats: frozenset[str]  # text, markdown, image, link_card
    actions: frozenset[str]
    welcome_window: dt.timedelta | None = None  # a welcome must be sent within this time of the join
    delete_max_age: dt.timedelta | None = None  # a bot may delete only messages younger than this
    #: the platform ends a mute by itself (Telegram ``until_date``); otherwise the outbox schedules
    #: an ``unmute`` at the mute's end (Matrix: the power level has no expiry)
    timed_mute: bool = False
    #: the bot can message a member directly (``send`` with ``payload["dm"]`` and no group): Telegram
    #: private chats (only to users who started the bot; others answer 403, a permanent failure);
    #: Matrix: the bot's direct room with the user from its ``m.direct`` account data, made once
    direct_messages: bool = False
    limits: tuple[Limit, ...] = field(default_factory=tuple)
    #: action kinds the outbox may deliver again when a worker died after it may have reached the
    #: platform (a claimed action whose outcome was never recorded): the platform de-duplicates the
    #: retry (a Matrix transaction id) or the call sets a state, so repeating it changes nothing a
    #: member sees. Any other kind that had reached the platform goes to a person (dead letter),
    #: never blindly twice into the group (see docs/subsystems/connectors.md, "Crash recovery")
    resend_safe: frozenset[str] = frozenset()
    notes: str = ""


_ALL_MOD = frozenset({ActionKind.SEND, ActionKind.WARN, ActionKind.DELETE, ActionKind.MUTE, ActionKind.UNMUTE,
                      ActionKind.KICK, ActionKind.BAN, ActionKind.UNBAN, ActionKind.ANNOUNCE})

_MESSAGES = frozenset({ActionKind.SEND, ActionKind.WARN, ActionKind.ANNOUNCE})

#: answering a join request: Telegram approve/declineChatJoinRequest; Matrix invite / kick a knock
_JOIN_REQUESTS = frozenset({ActionKind.APPROVE_JOIN, ActionKind.DECLINE_JOIN})

#: calls that set a state (deleted, muted, banned, answered): done twice, they leave the same state
_STATE_SETTING = frozenset({ActionKind.DELETE, ActionKind.MUTE, ActionKind.UNMUTE, ActionKind.KICK, ActionKind.BAN,
                            ActionKind.UNBAN, ActionKind.JOIN_RULE, ActionKind.REVOKE_INVITE}) | _JOIN_REQUESTS

PROFILES: dict[str, Profile] = {
    "matrix": Profile(
        "matrix", read_messages=True, membership_events=True,
        send_formats=frozenset({"text", "markdown", "image", "link_card"}),
        actions=_ALL_MOD | _JOIN_REQUESTS | {ActionKind.JOIN_RULE}, direct_messages=True,
        limits=(Limit("account", "connection", 10, 1.0, burst=10),),
        # messages and redactions carry the transaction id ``shequn-<action id>``, which the
        # homeserver de-duplicates; the rest set room state
        resend_safe=_ALL_MOD | _JOIN_REQUESTS | {ActionKind.JOIN_RULE},
        notes="redact = delete; mute = power level below events_default; announce = m.notice + pin",
    ),
    "telegram": Profile(
        "telegram", read_messages=True, membership_events=True,
        send_formats=frozenset({"text", "markdown", "image", "link_card"}),
        actions=_ALL_MOD | _JOIN_REQUESTS | {ActionKind.REVOKE_INVITE},
        delete_max_age=dt.timedelta(hours=48), timed_mute=True, direct_messages=True,
        # 30/s overall → 15/s + burst 15; ~1/s per chat; 20/min per group → 19/min + burst 1
        limits=(Limit("overall", "connection", 15, 1.0, burst=15),
                Limit("chat", "group", 1, 1.0, burst=1, kinds=_MESSAGES),
                Limit("group_minute", "group", 19, 60.0, burst=1, kinds=_MESSAGES)),
        # sendMessage has no idempotency key: a message that may have gone out is never sent again
        resend_safe=_STATE_SETTING,
        notes="privacy mode hides group messages unless disabled or the bot is admin; "
              "restrictChatMember only in supergroups",
    ),
    # WeCom customer groups: a group robot can post; nothing can kick, mute or recall.
    "wecom": Profile(
        "wecom", read_messages=False, membership_events=True,
        send_formats=frozenset({"text", "markdown", "image", "link_card"}),
        actions=frozenset({ActionKind.SEND, ActionKind.WARN}),
        welcome_window=dt.timedelta(seconds=20),
        # ≤ 20/min per robot or it is throttled for 10 minutes → 19/min + burst 1
        limits=(Limit("robot_minute", "group", 19, 60.0, burst=1),),
        notes="message content only via the paid session archive; robot text ≤ 2048 bytes",
    ),
    "portal": Profile(
        "portal", read_messages=True, membership_events=True, send_formats=frozenset({"text", "markdown"}),
        actions=frozenset({ActionKind.SEND, ActionKind.WARN, ActionKind.DELETE}),
    ),
    "manual": Profile("manual", read_messages=False, membership_events=False, send_formats=frozenset(),
                      actions=frozenset()),
}

CAPABILITIES: dict[str, frozenset[str]] = {p: prof.actions for p, prof in PROFILES.items()}


def supports(platform: str, kind: str) -> bool:
    return kind in CAPABILITIES.get(platform, frozenset())


def profile(platform: str) -> Profile | None:
    return PROFILES.get(platform)


def can_direct_message(platform: str) -> bool:
    prof = PROFILES.get(platform)
    return bool(prof and prof.direct_messages)
