"""Keyset (cursor) pagination for every list operation of the API, on django-ninja's pagination
machinery: ``@paginate(KeysetPagination)`` under ``@router.get(..., response={200: list[ItemOut], ...})``.

The handler returns a tenant-scoped queryset; the paginator orders it by primary key (newest first by
default), takes ``limit`` rows after the ``cursor`` and answers ``{"items": [...], "next_cursor": str |
null}`` (the OpenAPI schema gets a ``Paged<ItemOut>`` component of that shape). Keyset on the primary
key: stable under inserts and deletes, O(limit) per page, no COUNT.

Why not ``ninja.pagination.CursorPagination``: it pages on any ordering with a position + offset
cursor and answers ``{results, next, previous}`` as URLs with a ``page_size`` parameter — every part of
it (input, output, cursor, query) would be overridden to keep the API's ``limit`` / ``next_cursor``
contract, so this is a ``PaginationBase`` of its own, ninja's decorator, signature and schema included.

Bad input is a 422 ``validation_error`` naming ``query.limit`` (1 … 500) or ``query.cursor`` (not a
cursor this API issued)."""

import base64
import binascii
from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Field, Schema
from ninja.pagination import PaginationBase, paginate
from pydantic import field_validator
from pydantic_core import PydanticCustomError

__all__ = ["KeysetPagination", "RankPagination", "decode_cursor", "encode_cursor", "paginate"]

#: the largest page
MAX_LIMIT = 500
#: the largest primary key a cursor may carry (a BIGINT column)
_MAX_PK = 2**63 - 1


def encode_cursor(pk: int) -> str:
    """The opaque cursor after the row ``pk``: URL-safe base64 of the key, no padding."""
    return base64.urlsafe_b64encode(str(pk).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The primary key inside a cursor; ``PydanticCustomError`` (422 naming ``query.cursor``) for
    anything this API did not issue."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True).decode("ascii")
        if not text.isdigit():
            raise ValueError(text)
        pk = int(text)
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise PydanticCustomError("cursor_invalid", "Invalid cursor") from exc
    if not 1 <= pk <= _MAX_PK:
        raise PydanticCustomError("cursor_invalid", "Invalid cursor")
    return pk


class KeysetPagination(PaginationBase):
    """Keyset pagination on the primary key.

    ``@paginate(KeysetPagination, descending=False, default_limit=100, item=to_dict)``:
    ``descending`` — newest first (default) or oldest first; ``default_limit`` — the page size when
    ``limit`` is omitted; ``item`` — shapes each row before the response schema validates it (a
    row that is not the schema's attributes, e.g. masked contacts)."""

    class Input(PaginationBase.Input):
        cursor: str | None = Field(None, max_length=32,
                                   description="`next_cursor` of the previous page; omitted: the first page")
        limit: int = Field(50, ge=1, le=MAX_LIMIT, description="rows per page")

        @field_validator("cursor")
        @classmethod
        def _known_cursor(cls, value: str | None) -> str | None:
            if value:
                decode_cursor(value)
            return value or None

    class Output(Schema):
        items: list[Any]
        next_cursor: str | None = None

    items_attribute = "items"

    def __init__(self, *, descending: bool = True, default_limit: int = 50,
                 item: Callable[[Any], Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.descending = descending
        self.item = item
        if default_limit != KeysetPagination.Input.model_fields["limit"].default:
            self.Input = type("Input", (KeysetPagination.Input,), {  # type: ignore[misc,assignment]
                "__annotations__": {"limit": int},
                "limit": Field(default_limit, ge=1, le=MAX_LIMIT, description="rows per page"),
            })

    def paginate_queryset(self, queryset: QuerySet[Any], pagination: Any, request: HttpRequest,
                          **params: Any) -> dict[str, Any]:
        limit: int = pagination.limit
        if pagination.cursor:
            last = decode_cursor(pagination.cursor)
            queryset = queryset.filter(pk__lt=last) if self.descending else queryset.filter(pk__gt=last)
        rows = list(queryset.order_by("-pk" if self.descending else "pk")[: limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "items": [self.item(r) for r in rows] if self.item else rows,
            "next_cursor": encode_cursor(rows[-1].pk) if more and rows else None,
        }


class RankPagination(KeysetPagination):
    """Pages of a computed ranking (top referrers, campaigns by K-factor), where the order is a score
    and not the primary key: the cursor carries the offset of the next page (issued by this API like a
    keyset cursor, so the same ``limit`` / ``cursor`` input and 422s). The handler returns the ranking
    as a sequence, or as ``fetch(offset, count)`` when only a window should be read."""

    def paginate_queryset(self, queryset: Any, pagination: Any, request: HttpRequest,
                          **params: Any) -> dict[str, Any]:
        limit: int = pagination.limit
        offset = decode_cursor(pagination.cursor) if pagination.cursor else 0
        rows = list(queryset(offset, limit + 1) if callable(queryset) else queryset[offset:offset + limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "items": [self.item(r) for r in rows] if self.item else rows,
            "next_cursor": encode_cursor(offset + limit) if more else None,
        }
