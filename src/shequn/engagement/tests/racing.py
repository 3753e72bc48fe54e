"""The concurrent red-packet claim race shared by the points and the cash tests (PostgreSQL)."""

from __future__ import annotations

from typing import Any

from shequn.core.errors import Conflict
from shequn.core.testing import race
from shequn.engagement.services import do_claim_red_packet


def race_claims(tenant_id: int, packet_id: int, members: list[Any], *, threads: int = 8) -> list[int]:
    """Every member tries to claim twice, the attempts spread over ``threads`` threads released
    together. Returns the amounts of the claims that succeeded; fails on any error but "already
    claimed / none left" (:class:`Conflict`)."""
    results = race(lambda i: do_claim_red_packet(tenant_id, packet_id, members[i // 2].pk).amount,
                   2 * len(members), threads=threads)
    errors = [r for r in results if isinstance(r, Exception) and not isinstance(r, Conflict)]
    assert not errors, errors
    return [r for r in results if isinstance(r, int)]
