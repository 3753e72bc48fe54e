"""The concurrent red-packet claim race shared by the points and the cash tests (PostgreSQL)."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from django.db import connection

from shequn.core.errors import Conflict
from shequn.engagement.services import do_claim_red_packet


def race_claims(tenant_id: int, packet_id: int, members: list[Any], *, threads: int = 8) -> list[int]:
    """``threads`` threads start together; each member in a thread's share tries to claim twice.
    Returns the amounts of the claims that succeeded; fails if any thread hit an unexpected error."""
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def claim(chunk: list[Any]) -> None:
        try:
            barrier.wait()
            for m in chunk:
                for _ in range(2):  # each member tries twice
                    with contextlib.suppress(Conflict):
                        results.append(do_claim_red_packet(tenant_id, packet_id, m.pk).amount)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=claim, args=(members[i::threads],)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert not errors, errors
    return results
