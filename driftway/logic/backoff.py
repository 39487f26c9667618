"""How long to wait before trying again: one schedule for every retry in Driftway (a process
the supervisor starts again, a processor waiting for a store that went away)."""

from __future__ import annotations


def backoff(attempt: int, first: float, longest: float) -> float:
    """Seconds to wait before try `attempt` + 1 (attempt 1 waits `first`): doubling, at most
    `longest`.

    >>> [backoff(n, 0.5, 4.0) for n in (1, 2, 3, 4, 5)]
    [0.5, 1.0, 2.0, 4.0, 4.0]
    """
    return min(longest, first * 2.0 ** max(0, attempt - 1))
