"""Rooms: the rooms/chats/customer groups a connection has seen, and their mapping to communities
(mapping creates or moves the room's :class:`~shequn.communities.models.ChatGroup`). Per-room secrets
(a WeCom group robot key) are encrypted like the connection's."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _

from shequn.communities.models import ChatGroup, Community
from shequn.core.errors import Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from .. import secrets
from ..models import Connection, Room
from .ingest import release_held_events


def do_discover_room(conn: Connection, external_id: str, *, name: str = "", member_count: int | None = None,
                     joined: bool = True, encrypted: bool = False) -> Room:
    """Record a room the bot has seen; map it to the community of the group registered for it (a
    partner's own group), else to the connection's default community if it has one (never an
    end-to-end encrypted room: the bot could not read it)."""
    room, created = Room.objects.get_or_create(
        connection=conn, external_id=external_id,
        defaults={"tenant_id": conn.tenant_id, "name": name[:200], "member_count": member_count,
                  "bot_joined": joined},
    )
    changed: list[str] = []
    if not created:
        if name and room.name != name[:200]:
            room.name = name[:200]
            changed.append("name")
        if member_count is not None and room.member_count != member_count:
            room.member_count = member_count
            changed.append("member_count")
        if room.bot_joined != joined:
            room.bot_joined = joined
            changed.append("bot_joined")
    if encrypted and not room.encrypted:  # Matrix cannot switch encryption off again
        room.encrypted = True
        changed.append("encrypted")
    if changed:
        room.save(update_fields=changed)
    if room.group_id is None and joined and not room.encrypted:
        # a group registered already (a partner's own group, one added through the API) keeps its
        # community; otherwise the connection's default community takes the room
        registered = (ChatGroup.objects.filter(tenant_id=conn.tenant_id, platform=conn.platform,
                                               external_id=external_id).values_list("community_id", flat=True)
                      .first())
        if registered is not None:
            _map(room, registered)
        elif conn.default_community_id is not None:
            _map(room, conn.default_community_id)
    return room


def encrypted_refusal(room: Room) -> str:
    return _("群「%(room)s」开启了端到端加密: 机器人读不到其中的消息, 无法审核, 因此不能映射。"
             "请使用未加密的群 (Element 建群时关闭“启用端到端加密”; 已加密的群无法关闭加密)。") % {
        "room": room.name or room.external_id}


def _map(room: Room, community_id: int) -> ChatGroup:
    group, _created = ChatGroup.objects.get_or_create(
        tenant_id=room.tenant_id, platform=room.connection.platform, external_id=room.external_id,
        defaults={"community_id": community_id, "name": (room.name or room.external_id)[:120]},
    )
    if group.community_id != community_id:
        group.community_id = community_id
        group.save(update_fields=["community_id"])
    room.group = group
    room.save(update_fields=["group"])
    release_held_events(room)
    return group


def do_map_room(principal: Principal, room_id: int, community_id: int, *,
                robot_key: str | None = None) -> ChatGroup:
    """Map a discovered room to a community (creates or moves its ChatGroup). ``robot_key`` is a
    WeCom group robot's webhook key, stored encrypted on the room."""
    with transaction.atomic():
        room = Room.objects.select_related("connection").filter(tenant_id=principal.tenant_id, pk=room_id).first()
        if room is None:
            raise NotFound(_("群不存在"), details={"field": "room_id"})
        if not Community.objects.filter(tenant_id=principal.tenant_id, pk=community_id).exists():
            raise NotFound(_("社群不存在"), details={"field": "community_id"})
        if room.encrypted:
            raise Invalid(encrypted_refusal(room), code="room_encrypted", details={"field": "room_id"})
        group = _map(room, community_id)
        if robot_key:
            do_set_room_secret(room, "robot_key", robot_key)
        do_audit(principal, "connectors.map_room", "room", str(room.pk),
                 data={"community_id": community_id, "group_id": group.pk})
    return group


def do_set_room_secret(room: Room, key: str, value: str) -> None:
    values = secrets.decrypt(room.secrets_encrypted)
    values[key] = value
    room.secrets_encrypted = secrets.encrypt(values)
    room.secret_hints = {k: secrets.hint(v) for k, v in values.items()}
    room.save(update_fields=["secrets_encrypted", "secret_hints"])
