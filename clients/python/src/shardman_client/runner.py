"""Claim, run and release shards again and again, for any bot library (`discordpy.py` is one adapter).

An adapter is one function, `start(context) -> RunningShards`: it starts the claim's shards with its
library, paces their IDENTIFY through `context.pacer` (a permit right before each IDENTIFY, a confirm
right after it), and calls `context.release(...)` when the library
ends by itself. Everything else is here: the claim, the beats, the lease view, and the release.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from .backoff import beat_retry_delay
from .client import ShardmanClient
from .errors import Retired, SessionLost, ShardmanError, Unavailable
from .events import ClaimEvent, Release
from .lease import LeaseView
from .models import PLACEMENT_LOAD, Claim, ShardReport
from .pacer import IdentifyPacer

log = logging.getLogger("shardman_client.runner")

#: `/connect?identify=`: each IDENTIFY asks `/identify/permit` instead of sleeping to a booked slot.
IDENTIFY_BY_PERMIT = "permit"
#: How long stopping the shards may take before the runner goes on regardless (a gateway that never
#: answers the close).
STOP_TIMEOUT = 5.0
#: The last beat and the /disconnect of a claim given back each get this long.
GIVE_BACK_TIMEOUT = 2.0


class RunningShards(Protocol):
    """What an adapter hands back for one claim."""

    def reports(self) -> list[ShardReport]:
        """Each shard's report for the next beat; still answered after `stop` (the last beat reads it)."""
        ...

    async def stop(self, reason: Release) -> None:
        """Close every shard at once, with `reason.close_code`, and keep them off the gateway."""
        ...

    def reconnect(self, shard_ids: list[int]) -> None:
        """Reconnect these shards (shardman saw them fall silent), with a RESUME first."""
        ...


class ClaimContext:
    """One claim as an adapter sees it."""

    def __init__(self, claim: Claim, shardman: ShardmanClient) -> None:
        self.claim = claim
        self.shardman = shardman
        self.lease = LeaseView(claim)
        self.running: RunningShards | None = None
        #: What the library raised, when it ended the claim as `failed`.
        self.error: BaseException | None = None
        self._released: asyncio.Future[Release] = asyncio.get_running_loop().create_future()
        #: When each shard was last reconnected on a beat's `reconnect`.
        self.reconnected: dict[int, float] = {}
        self.pacer = IdentifyPacer(claim, shardman, release=self.release, halted=self.halted)

    def release(self, reason: Release, error: BaseException | None = None) -> None:
        """End the claim (the first reason wins); the runner stops the shards."""
        if not self._released.done():
            self.error = error
            self._released.set_result(reason)

    @property
    def released(self) -> Release | None:
        return self._released.result() if self._released.done() else None

    def halted(self) -> bool:
        """Whether the shards must not go on: the claim was released or the lease view lapsed."""
        return self._released.done() or self.lease.lapsed()

    async def wait_released(self) -> Release:
        return await asyncio.shield(self._released)

    def reconnect(self, shard_ids: list[int]) -> None:
        """Reconnect the shards a beat named, each at most once per lease: the later beats of a lease may
        still name a shard that is busy resuming."""
        now = time.monotonic()
        due = [
            s
            for s in shard_ids
            if s in self.claim.shard_ids
            and now - self.reconnected.get(s, -math.inf) >= self.lease.lease_seconds
        ]
        if not due or self.running is None:
            return
        log.info("reconnecting shards %s (shardman saw them fall silent)", due)
        self.reconnected.update(dict.fromkeys(due, now))
        try:
            self.running.reconnect(due)
        except Exception:  # the library's internals moved: the shards stay as they are
            log.exception("reconnecting shards %s", due)

    def reports(self) -> list[ShardReport]:
        if self.running is None:
            return [ShardReport(shard_id) for shard_id in self.claim.shard_ids]
        try:
            return self.running.reports()
        except Exception:  # the library's internals moved: beat without the reports
            log.exception("reading the shards' state")
            return [ShardReport(shard_id) for shard_id in self.claim.shard_ids]


StartShards = Callable[[ClaimContext], Awaitable[RunningShards]]


async def run_claims(
    start: StartShards,
    *,
    shardman: ShardmanClient,
    stop: asyncio.Event | None = None,
    on_event: Callable[[ClaimEvent], None] | None = None,
    reclaim_pause: float = 1.0,
) -> Release:
    """Claim, run the claimed shards with `start`, and claim again, until a reason ends the run.

    Returns `Release.SHUTDOWN` (after `stop` is set or the library closed by itself), `RETIRED` (this
    generation was resharded away; the process should exit) or `FAILED` (the library could not run the
    shards without raising). When the library raised, the error is raised after giving the claim back.
    After `lapsed` and `lost` it claims again, `reclaim_pause` later, so a fleet that keeps losing
    claims cannot spin.

    A claim placed by load (`placement: load`, `SHARDS_PER_PROCESS=auto`) switches to many claims at
    once (`_run_placed_by_load`): a waiting claim always open, each claim run by itself.
    """
    stop = stop or asyncio.Event()
    emit = on_event or (lambda event: None)
    while True:
        claim = await _claim_unless_stopped(shardman, stop)
        if claim is None:
            return Release.SHUTDOWN
        if claim.placement == PLACEMENT_LOAD:
            return await _run_placed_by_load(claim, start, shardman, stop, emit)
        reason = await _run_claim(claim, start, shardman, stop, emit)
        # (handed_over is not sent for groups; should it come, the process claims again.)
        if not (reason.claims_again or reason is Release.HANDED_OVER):
            return reason
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=reclaim_pause)


async def _run_claim(
    claim: Claim,
    start: StartShards,
    shardman: ShardmanClient,
    stop: asyncio.Event,
    emit: Callable[[ClaimEvent], None],
) -> Release:
    """One claim from its `claimed` line to its `released` one; raises the library's error, if any."""
    emit(ClaimEvent.claimed(claim))
    log.info(
        "claimed shards %s of %s (generation %s, %s)",
        claim.shard_ids,
        claim.shard_count,
        claim.generation,
        claim.state,
    )
    context = ClaimContext(claim, shardman)
    reason = await _hold(context, start, stop)
    emit(ClaimEvent.released(claim, reason))
    log.info("released shards %s: %s", claim.shard_ids, reason.value)
    if context.error is not None:
        raise context.error
    return reason


async def _run_placed_by_load(
    first: Claim,
    start: StartShards,
    shardman: ShardmanClient,
    stop: asyncio.Event,
    emit: Callable[[ClaimEvent], None],
) -> Release:
    """Placement by load: shardman gives this process as many one-shard claims as it should run, so one
    `/connect?wait=` stays open at all times and every claim it answers runs alongside the others.

    A claim ends by itself (handed over, lapsed, lost, retired: the process goes on with the rest and
    keeps waiting for more); `stop`, the library closing itself, or its error end them all.
    """
    ending = asyncio.Event()  # stop, or a claim that ends the process
    forward_stop = asyncio.ensure_future(stop.wait())
    forward_stop.add_done_callback(lambda _: ending.set())
    running: set[asyncio.Task[Release]] = set()
    error: BaseException | None = None

    def run(claim: Claim) -> None:
        running.add(asyncio.ensure_future(_run_claim(claim, start, shardman, ending, emit)))

    run(first)
    waiting = asyncio.ensure_future(_claim_unless_stopped(shardman, ending))
    try:
        while running or not waiting.done():
            watched = running if waiting.done() else {*running, waiting}
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            for task in done & running:
                running.discard(task)
                if task.exception() is not None:
                    error = error or task.exception()
                    ending.set()
                elif task.result() is Release.SHUTDOWN:  # the bot closed its client: the process ends
                    ending.set()
            if waiting in done:
                claim = waiting.result()  # BadSecret and the like end the process
                if claim is not None:
                    run(claim)
                    waiting = asyncio.ensure_future(_claim_unless_stopped(shardman, ending))
    finally:
        forward_stop.cancel()
        waiting.cancel()
        ending.set()  # each claim gives itself back
        if running:
            await asyncio.wait(running)
    if error is not None:
        raise error
    return Release.SHUTDOWN


async def _claim_unless_stopped(shardman: ShardmanClient, stop: asyncio.Event) -> Claim | None:
    if stop.is_set():
        return None
    # Every IDENTIFY asks its permit right before it goes (IdentifyPacer), so no slot is booked here.
    claiming = asyncio.ensure_future(shardman.claim(identify=IDENTIFY_BY_PERMIT))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({claiming, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if claiming.done():
        return claiming.result()  # a claim that raced the stop is given back by _hold
    claiming.cancel()
    return None


async def _hold(context: ClaimContext, start: StartShards, stop: asyncio.Event) -> Release:
    """One claim's life: beats from the claim on, the shards run, and the first ending wins."""
    beating = asyncio.ensure_future(_beat_loop(context))
    watching = asyncio.ensure_future(_watch(context, stop))
    try:
        try:
            context.running = await start(context)
        except Exception as exc:
            context.release(Release.FAILED, exc)
        reason = await context.wait_released()
    finally:
        for task in (beating, watching):
            task.cancel()
        # Stop the shards at once: whatever ended the claim, nobody may rely on them now.
        if context.running is not None:
            await _stop_shards(context.running, context.released or Release.SHUTDOWN)
    if reason.gives_back and not context.lease.lapsed():
        await _give_back(context)
    return reason


async def _watch(context: ClaimContext, stop: asyncio.Event) -> None:
    lapsing = asyncio.ensure_future(context.lease.wait_lapsed())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({lapsing, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        lapsing.cancel()
        stopping.cancel()
    context.release(Release.LAPSED if context.lease.lapsed() else Release.SHUTDOWN)


async def _beat_loop(context: ClaimContext) -> None:
    """Beat every `beat_interval` from the claim on; a failed beat is followed sooner (backoff capped at
    the interval); the lease view, not the failures, decides when the claim is gone."""
    claim, lease, shardman = context.claim, context.lease, context.shardman
    state = claim.state
    failures = 0
    while True:
        if lease.lapsed():
            return  # never beat a lapsed session again; the watcher releases the claim
        started = time.monotonic()
        wait = claim.beat_interval
        try:
            answer = await shardman.beat(
                claim.session_id,
                context.reports(),
                timeout=min(shardman.request_timeout, max(0.5, lease.remaining())),
            )
        except SessionLost:
            context.release(Release.LOST)
            return
        except Retired:
            context.release(Release.RETIRED)
            return
        except Exception as exc:  # also a bug here: it must not stop the beats silently
            retry_after = exc.retry_after if isinstance(exc, Unavailable) else None
            wait = beat_retry_delay(failures, retry_after, claim.beat_interval)
            failures += 1
            if isinstance(exc, Unavailable):
                log.warning("beat not acknowledged (%s); next in %.2fs, the lease view decides", exc, wait)
            elif isinstance(exc, ShardmanError):
                log.error("beat refused: %s", exc)
            else:
                log.exception("beat failed")
            await asyncio.sleep(wait)
            continue
        lease.acknowledged(answer.sent_at)
        failures = 0
        if answer.hand_over:  # placement moves the shard: give it back as on shutdown
            context.release(Release.HANDED_OVER)
            return
        if answer.reconnect:
            context.reconnect(answer.reconnect)
        if answer.state is not None and answer.state != state:
            log.info("generation %s is now %s (was %s)", answer.generation, answer.state, state)
            state = answer.state
        await asyncio.sleep(max(0.0, started + wait - time.monotonic()))


async def _stop_shards(running: RunningShards, reason: Release) -> None:
    try:
        await asyncio.wait_for(running.stop(reason), timeout=STOP_TIMEOUT)
    except Exception as exc:  # a stop that fails or hangs still lets the claim end
        log.warning("stopping the shards: %r", exc)


async def _give_back(context: ClaimContext) -> None:
    """A last beat with the shards' resume data (shardman hands it to the next holder), then /disconnect."""
    shardman, session_id = context.shardman, context.claim.session_id
    try:
        # Retried: a last beat lost to a connection error would leave the next holder the previous
        # beat's sequence, and events handled twice.
        retry_until = time.monotonic() + GIVE_BACK_TIMEOUT
        await shardman.beat(session_id, context.reports(), retry_until=retry_until)
    except Exception as exc:
        log.warning("last beat: %s", exc)
    try:
        await shardman.disconnect(session_id, retry_for=GIVE_BACK_TIMEOUT)
    except SessionLost:
        pass  # gone already: nothing to give back
    except Exception as exc:
        log.warning("disconnect: %s", exc)
