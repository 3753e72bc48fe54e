"""Red-packet (红包) splitting, pure and exact to the fen (or point).

Random split: each share is drawn uniformly from ``[1, min(2 × remaining mean, remaining − (left − 1))]``
(the common "twice the remaining mean" rule, capped so everyone after still gets at least 1), and the
last share takes the rest. Every share is ≥ 1 and the shares sum exactly to the total."""

from __future__ import annotations

import secrets
from collections.abc import Callable

#: ``randint(a, b)`` inclusive, like :func:`random.randint`; the default is the OS CSPRNG.
RandInt = Callable[[int, int], int]


def _sys_randint(a: int, b: int) -> int:
    return a + secrets.randbelow(b - a + 1)


def next_share(remaining_amount: int, remaining_count: int, randint: RandInt = _sys_randint) -> int:
    """The amount of the next claim of a random packet with ``remaining_count`` shares left."""
    if remaining_count <= 0:
        raise ValueError("no shares left")
    if remaining_amount < remaining_count:
        raise ValueError("amount too small: every share needs at least 1")
    if remaining_count == 1:
        return remaining_amount
    upper = min((2 * remaining_amount) // remaining_count, remaining_amount - (remaining_count - 1))
    return randint(1, max(upper, 1))


def fixed_share(remaining_amount: int, remaining_count: int) -> int:
    """Equal split; when the total does not divide evenly the last claims get the extra fen."""
    if remaining_count <= 0:
        raise ValueError("no shares left")
    return remaining_amount // remaining_count


def split(total: int, count: int, *, mode: str = "random", randint: RandInt = _sys_randint) -> list[int]:
    """All shares at once (for tests and previews): the same rule as successive claims."""
    if count <= 0:
        raise ValueError("count must be positive")
    if total < count:
        raise ValueError("amount too small: every share needs at least 1")
    shares: list[int] = []
    remaining, left = total, count
    while left:
        share = next_share(remaining, left, randint) if mode == "random" else fixed_share(remaining, left)
        shares.append(share)
        remaining -= share
        left -= 1
    return shares
