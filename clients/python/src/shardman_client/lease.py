"""The process's own view of its lease: when shardman may already have handed its shards to another."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .models import Claim

#: Besides sleeping toward the deadline, the lapse timer looks at the clock at least this often, so a
#: process woken from SIGSTOP past its deadline notices within it (`clients/contract/lease.json`).
LAPSE_CHECK_EVERY = 0.2


class LeaseView:
    """Deadline of the lease as this process can prove it, on the monotonic clock.

    Before the first acknowledged beat: the /connect request's send time + max(sleep_durations) +
    lease_seconds (shardman's first lease covers the IDENTIFY wait). After it: the send time of the
    last beat that got 200/204 + lease_seconds. Send times, not answer times, because shardman
    counts from when it received the request, which is no earlier than when it was sent. Once
    lapsed, always lapsed: an answer arriving after the deadline cannot revive it.
    """

    def __init__(self, claim: Claim, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.lease_seconds = claim.lease_seconds
        self._clock = clock
        self.deadline = claim.requested_at + max(claim.sleep_durations, default=0.0) + claim.lease_seconds
        self._lapsed = False

    def acknowledged(self, sent_at: float) -> None:
        """A beat sent at `sent_at` was acknowledged (200/204), and the answer arrived just now."""
        if self.lapsed():
            return  # never trust that session id again
        self.deadline = sent_at + self.lease_seconds

    def remaining(self) -> float:
        return self.deadline - self._clock()

    def lapsed(self) -> bool:
        if not self._lapsed and self.remaining() <= 0:
            self._lapsed = True
        return self._lapsed

    async def wait_lapsed(self) -> None:
        """Return once the deadline has passed; wakes at least every LAPSE_CHECK_EVERY seconds."""
        while not self.lapsed():
            await asyncio.sleep(min(LAPSE_CHECK_EVERY, max(self.remaining(), 0.0)))
