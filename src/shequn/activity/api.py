"""REST API of the activity stream (``/api/v1/activity/``): batch ingest and event listing."""


import datetime as dt
from typing import Any, Literal

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from shequn.core.http import ERRORS, ApiDatetime, BodyIn, Id, idempotent, require
from shequn.core.middleware_api import register_body_rule
from shequn.core.pagination import KeysetPagination, paginate

from .models import ActivityEvent, EventKind
from .services import MAX_BATCH, do_ingest

router = Router(tags=["activity"])

#: a batch of up to MAX_BATCH events may be larger than the API's default body limit
MAX_INGEST_BYTES = 16 * 1024 * 1024
register_body_rule(r"^/api/v1/activity/events$", max_body=MAX_INGEST_BYTES)

KindName = Literal["message", "reply", "reaction", "edit", "delete", "join", "leave", "check_in", "purchase",
                   "invite", "live_view", "content_view", "other"]
assert set(KindName.__args__) == set(EventKind.values)  # type: ignore[attr-defined]

_EVENT_DOC = """One platform event (an object):

* `platform` (required): wecom | telegram | matrix | portal | manual
* `event_id` (required): the platform's event id, unique per platform — the de-duplication key
* `kind` (required): message, reply, reaction, edit, delete, join, leave, check_in, purchase, invite,
  live_view, content_view, other (unknown kinds are stored as `other`)
* `occurred_at` (required): ISO 8601 or Unix seconds
* `sender` (the platform user id) or `member_id`; `sender_name` optional (used when a member is
  created for an unknown sender)
* `group`: the platform's room id (resolves the chat group and its community)
* `payload`: object (join events may carry `join_source`, `inviter_member_id`; leave events `reason`)
"""


class IngestIn(BodyIn):
    events: list[Any] = Field(min_length=1, max_length=MAX_BATCH, description=_EVENT_DOC)
    create_members: bool = Field(True, description="create a member (and identity) for an unknown sender")


class IngestErrorOut(Schema):
    index: int = Field(description="position of the bad event in `events`")
    field: str
    message: str


class IngestOut(Schema):
    stored: int
    duplicates: int
    created_members: int
    errors: list[IngestErrorOut]


class EventOut(Schema):
    id: int
    member_id: int | None
    community_id: int | None
    group_id: int | None
    platform: str
    platform_event_id: str
    kind: str
    occurred_at: dt.datetime
    received_at: dt.datetime
    payload: dict[str, Any]


class EventFilter(Schema):
    member_id: Id | None = None
    community_id: Id | None = None
    group_id: Id | None = None
    kind: KindName | None = None
    since: ApiDatetime | None = Field(None, description="occurred_at >= since (ISO 8601, years 2000-2100)")
    until: ApiDatetime | None = Field(None, description="occurred_at < until (ISO 8601, years 2000-2100)")


def events_for(tenant_id: int, f: EventFilter) -> QuerySet[ActivityEvent]:
    """Tenant-scoped event query (the activity app has no selector for it yet)."""
    qs = ActivityEvent.objects.filter(tenant_id=tenant_id)
    if f.member_id is not None:
        qs = qs.filter(member_id=f.member_id)
    if f.community_id is not None:
        qs = qs.filter(community_id=f.community_id)
    if f.group_id is not None:
        qs = qs.filter(group_id=f.group_id)
    if f.kind:
        qs = qs.filter(kind=f.kind)
    if f.since is not None:
        qs = qs.filter(occurred_at__gte=f.since)
    if f.until is not None:
        qs = qs.filter(occurred_at__lt=f.until)
    return qs


@router.post("/events", response={200: IngestOut, **ERRORS}, summary="批量写入活动事件 (幂等)")
@idempotent
def ingest(request: HttpRequest, payload: IngestIn) -> Any:
    """Stores the good events once each (the same platform event id twice is stored once) and reports
    the bad ones by index; answers 200 even when some events are bad. 422 only for a malformed body
    (not an object, `events` missing, empty or longer than 5000)."""
    p = require(request, "activity.write")
    result = do_ingest(p.tenant_id, payload.events, create_members=payload.create_members)
    return IngestOut(
        stored=result.stored, duplicates=result.duplicates, created_members=result.created_members,
        errors=[IngestErrorOut(index=e.index, field=e.field, message=e.message) for e in result.errors],
    )


@router.get("/events", response={200: list[EventOut], **ERRORS}, summary="活动事件列表")
@paginate(KeysetPagination, default_limit=100)
def list_events(request: HttpRequest, filters: Query[EventFilter]) -> Any:
    p = require(request, "activity.read")
    return events_for(p.tenant_id, filters)
