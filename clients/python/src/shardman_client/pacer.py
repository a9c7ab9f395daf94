"""When each shard of a claim may IDENTIFY: its first slot from /connect, later ones booked with /identify."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import NoReturn

from .client import ShardmanClient
from .errors import Retired, SessionLost
from .events import Release
from .models import Claim

log = logging.getLogger("shardman_client.pacer")


class IdentifyPacer:
    """IDENTIFY pacing for one claim, for any bot library that can wait before each IDENTIFY.

    - A shard's first IDENTIFY waits until `sleep_durations[i]` after the /connect answer arrived.
    - Any later one (an invalid session, a reconnect that cannot resume), and the first one of a shard
      whose claim inherited resume data (its sleep of 0 was meant for a RESUME, which the library may not
      send), first books a slot with `POST /identify`; 404 there releases the claim as lost, 401 as retired.
    - Every IDENTIFY goes out `identify_delay` seconds after its slot. shardman books a bucket's slots 6 s
      apart, but a shard is late by whatever it still does after its slot (logging in, connecting, HELLO:
      a few hundred ms on a busy machine), and a late shard followed by a punctual one lands closer than
      Discord's 5 s. A fixed delay longer than that work makes every shard late by the same amount, which
      keeps the gaps.
    - Once the claim is released (`halted()`), no wait returns: the library must not go on.
    """

    def __init__(
        self,
        claim: Claim,
        shardman: ShardmanClient,
        *,
        release: Callable[[Release], None],
        halted: Callable[[], bool],
        identify_delay: float = 1.0,
    ) -> None:
        self.claim = claim
        self.shardman = shardman
        self.release = release
        self.halted = halted
        self.identify_delay = identify_delay
        #: Shards that have used their first slot.
        self.identified: set[int] = set()
        #: Slots booked with /identify and not used yet; kept across a library's retries (discord.py gives
        #: a reconnect 60 s and then tries again).
        self.booked: dict[int, float] = {}

    def has_first_slot(self, shard_id: int) -> bool:
        return shard_id not in self.identified and self.claim.resume_for(shard_id) is None

    def first_slot(self, shard_id: int) -> float:
        return self.claim.answered_at + self.claim.sleep_for(shard_id)

    async def wait_first_slot(self, shard_id: int) -> None:
        """For libraries whose sockets must not sit idle until the IDENTIFY: open them at the slot."""
        if self.has_first_slot(shard_id):
            await sleep_until(self.first_slot(shard_id))

    async def wait(self, shard_id: int) -> None:
        """Return when `shard_id` may send IDENTIFY."""
        if self.halted():
            await forever()
        if self.has_first_slot(shard_id):
            await sleep_until(self.first_slot(shard_id) + self.identify_delay)
        else:
            slot = self.booked.get(shard_id)
            if slot is None or slot + self.identify_delay <= time.monotonic():
                slot = time.monotonic() + await self._book(shard_id)
                self.booked[shard_id] = slot
            log.info("shard %s: IDENTIFY slot in %.2fs (from /identify)", shard_id, slot - time.monotonic())
            await sleep_until(slot + self.identify_delay)
        if self.halted():
            await forever()
        self.booked.pop(shard_id, None)
        self.identified.add(shard_id)
        log.info("shard %s: IDENTIFY", shard_id)

    async def _book(self, shard_id: int) -> float:
        try:
            return await self.shardman.identify(self.claim.session_id, shard_id)
        except SessionLost:
            self.release(Release.LOST)
        except Retired:
            self.release(Release.RETIRED)
        await forever()


async def sleep_until(deadline: float) -> None:
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(left)


async def forever() -> NoReturn:
    await asyncio.Event().wait()
    raise AssertionError("an Event nobody sets was set")
