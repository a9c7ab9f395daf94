"""When each shard of a claim may IDENTIFY: by permits from shardman, asked right before each IDENTIFY."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import NoReturn

from .backoff import NO_SHARDS_AVAILABLE_RETRY, jittered
from .client import PERMIT_WAIT, ShardmanClient
from .errors import Retired, SessionLost, ShardmanError
from .events import Release
from .models import Claim

log = logging.getLogger("shardman_client.pacer")

#: A permit granted less than this long ago may be used without asking again. shardman holds the
#: bucket for 8.1 s after a grant; the rest covers the answer's travel and the IDENTIFY's own.
PERMIT_FRESH_FOR = 6.0
#: Seconds each permit request waits once the shard's socket is open: while the IDENTIFY hook waits,
#: the library reads nothing from the socket (discord.py drops it after 60 s without a read), so it
#: asks in short waits rather than one long one.
OPEN_SOCKET_PERMIT_WAIT = 5.0


class IdentifyPacer:
    """IDENTIFY pacing for one claim (claimed with `identify=permit`), for any bot library that can wait
    before each IDENTIFY and tell when one was sent.

    - `acquire(shard_id)`: ask `POST /identify/permit` until granted. For a library whose sockets must
      not sit idle until the IDENTIFY, call it before the socket opens.
    - `wait(shard_id)`, right before the IDENTIFY is written: goes at once with a permit granted less
      than `PERMIT_FRESH_FOR` ago (kept from `acquire`), else asks again in short waits.
    - `sent(shard_id)`, once the gateway answered the IDENTIFY with READY (not as soon as it is
      written: a confirm can overtake an IDENTIFY on its way to Discord): confirms it, so the bucket
      opens 5 s after it instead of 8.1 s after the grant.
    - Every IDENTIFY of a shard goes this way: the first, one after an invalid session, one after a
      reconnect that cannot resume, and one of a claim that inherited resume data the library cannot use.
    - 404 releases the claim as lost, 401 as retired. Once the claim is released (`halted()`), no wait
      returns: the library must not go on.
    """

    def __init__(
        self,
        claim: Claim,
        shardman: ShardmanClient,
        *,
        release: Callable[[Release], None],
        halted: Callable[[], bool],
    ) -> None:
        self.claim = claim
        self.shardman = shardman
        self.release = release
        self.halted = halted
        #: When each shard's unused permit was granted (`time.monotonic()` of the answer).
        self.permits: dict[int, float] = {}
        self._confirming: set[asyncio.Task[None]] = set()

    def has_fresh_permit(self, shard_id: int) -> bool:
        granted = self.permits.get(shard_id)
        return granted is not None and time.monotonic() - granted < PERMIT_FRESH_FOR

    async def acquire(self, shard_id: int, *, wait: float = PERMIT_WAIT) -> None:
        """Return once `shard_id` holds a fresh permit."""
        while not self.has_fresh_permit(shard_id):
            await self._unless_halted()
            asked_at = time.monotonic()
            try:
                permit = await self.shardman.identify_permit(self.claim.session_id, shard_id, wait=wait)
            except SessionLost:
                self.release(Release.LOST)
                await forever()
            except Retired:
                self.release(Release.RETIRED)
                await forever()
            await self._unless_halted()
            if permit.granted:
                self.permits[shard_id] = time.monotonic()
                log.info("shard %s: IDENTIFY permit after %.2fs", shard_id, self.permits[shard_id] - asked_at)
                return
            if time.monotonic() - asked_at < wait / 2:
                # Answered without waiting (a replica shutting down): not at once, so as not to spin.
                await asyncio.sleep(max(permit.retry_after or 0.0, jittered(NO_SHARDS_AVAILABLE_RETRY)))

    async def wait(self, shard_id: int) -> None:
        """Return when `shard_id` may send IDENTIFY (its permit is used up by it)."""
        await self.acquire(shard_id, wait=OPEN_SOCKET_PERMIT_WAIT)
        await self._unless_halted()
        del self.permits[shard_id]
        log.info("shard %s: IDENTIFY", shard_id)

    def sent(self, shard_id: int) -> None:
        """The shard's IDENTIFY reached the gateway (READY answered it): confirm it (in the background)."""
        task = asyncio.ensure_future(self._confirm(shard_id))
        self._confirming.add(task)
        task.add_done_callback(self._confirming.discard)

    async def _confirm(self, shard_id: int) -> None:
        try:
            await self.shardman.identify_confirm(self.claim.session_id, shard_id)
        except SessionLost:
            self.release(Release.LOST)
        except Retired:
            self.release(Release.RETIRED)
        except ShardmanError as exc:  # the grant's own hold frees the bucket 8.1 s after it
            log.warning("shard %s: IDENTIFY not confirmed: %s", shard_id, exc)

    async def _unless_halted(self) -> None:
        if self.halted():
            await forever()


async def forever() -> NoReturn:
    await asyncio.Event().wait()
    raise AssertionError("an Event nobody sets was set")
