"""Run a discord.py `AutoShardedClient` for the shard groups shardman hands out.

Works with discord.py 2.7 and, through the same surface, its forks disnake, nextcord and py-cord:
the adapter only uses `AutoShardedClient(shard_ids=, shard_count=)`, `before_identify_hook`,
`launch_shard`, `start`/`close`, `guilds`, and -- in `_Library`, the one place that reaches into the
library -- `Route`'s base URL, `DiscordWebSocket.DEFAULT_GATEWAY` and each shard's websocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import aiohttp

from .client import Retired, SessionLost, ShardmanClient, ShardmanError, Unavailable
from .lease import LeaseView
from .models import Claim, ResumeData, ShardReport

log = logging.getLogger("shardman_client.discordpy")

LAPSED = "lapsed"
LOST = "lost"
RETIRED = "retired"
SHUTDOWN = "shutdown"

#: `factory(shard_ids=[...], shard_count=N)` returns a new, not yet started AutoShardedClient.
ClientFactory = Callable[..., Any]


@dataclass(frozen=True)
class ClaimEvent:
    """A change of this process's claim: `claimed`, or `released` with a reason."""

    event: str
    shard_ids: list[int]
    shard_count: int
    generation: int | None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event": self.event,
            "shard_ids": self.shard_ids,
            "shard_count": self.shard_count,
            "generation": self.generation,
        }
        if self.reason is not None:
            out["reason"] = self.reason
        return out


async def run_bot(
    factory: ClientFactory,
    *,
    shardman: ShardmanClient,
    token: str,
    api_base: str | None = None,
    stop: asyncio.Event | None = None,
    on_event: Callable[[ClaimEvent], None] | None = None,
    reclaim_pause: float = 1.0,
    identify_delay: float = 1.0,
) -> str:
    """Claim, run the claimed shards, and claim again, until `stop` is set or the fleet retires us.

    Returns "shutdown" (after `stop` or the client's own `close()`) or "retired" (a beat answered
    401: this generation was resharded away; the process should exit). Raises what the library
    raises when it cannot run at all (a bad token, say), after giving the claim back.

    Every IDENTIFY goes out `identify_delay` seconds after its slot (the socket opens at the slot).
    shardman books a bucket's slots 6 s apart, but a shard is late by whatever it still does
    after its slot (logging in, connecting, HELLO: a few hundred ms on a busy machine), and a late
    shard followed by a punctual one lands closer than Discord's 5 s. A fixed delay longer than
    that work makes every shard late by the same amount, which keeps the gaps.
    """
    stop = stop or asyncio.Event()
    emit = on_event or (lambda event: None)
    while True:
        claim = await _claim_unless_stopped(shardman, stop)
        if claim is None:
            return SHUTDOWN
        emit(ClaimEvent("claimed", claim.shard_ids, claim.shard_count, claim.generation))
        log.info(
            "claimed shards %s of %s (generation %s, %s)",
            claim.shard_ids,
            claim.shard_count,
            claim.generation,
            claim.state,
        )
        try:
            client = factory(shard_ids=list(claim.shard_ids), shard_count=claim.shard_count)
        except BaseException:
            with contextlib.suppress(Exception):
                await shardman.disconnect(claim.session_id)
            emit(ClaimEvent("released", claim.shard_ids, claim.shard_count, claim.generation, "error"))
            raise
        run = _ClaimRun(
            claim,
            client,
            shardman=shardman,
            token=token,
            api_base=api_base,
            stop=stop,
            identify_delay=identify_delay,
        )
        try:
            reason = await run.run()
        except BaseException:
            emit(ClaimEvent("released", claim.shard_ids, claim.shard_count, claim.generation, "error"))
            raise
        emit(ClaimEvent("released", claim.shard_ids, claim.shard_count, claim.generation, reason))
        log.info("released shards %s: %s", claim.shard_ids, reason)
        if reason in (RETIRED, SHUTDOWN):
            return reason
        # a pause before claiming again, so a fleet that keeps losing claims cannot spin
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=reclaim_pause)


async def _claim_unless_stopped(shardman: ShardmanClient, stop: asyncio.Event) -> Claim | None:
    if stop.is_set():
        return None
    claiming = asyncio.ensure_future(shardman.claim())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({claiming, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if claiming.done():
        return claiming.result()  # a claim that raced the stop is given back by the run
    claiming.cancel()
    return None


class _Library:
    """Everything the adapter needs from the library's internals, in one place.

    - REST base: `http.Route.BASE` (discord.py, disnake, nextcord) or `Route.API_BASE_URL` (py-cord),
      the class attribute every Route's URL starts with; discord.py's own `_set_api_version` sets it
      the same way.
    - Gateway: discord.py 2.7 connects an AutoShardedClient with a given shard_count to
      `DiscordWebSocket.DEFAULT_GATEWAY` (shard.py `launch_shards`, and again after an invalid
      session); it has no parameter for it. The forks read the URL from REST `/gateway` instead,
      so for them the REST base is enough.
    - Each shard's websocket: `client._get_websocket(shard_id=)` (all four libraries), for its
      `session_id`, `sequence`, `latency` and resume URL.
    """

    #: Names of the resume URL on a shard's websocket: py-cord, disnake, nextcord, discord.py.
    RESUME_URL_ATTRS = ("resume_gateway_url", "resume_gateway", "resume_url", "gateway")

    _default_gateways: ClassVar[dict[str, Any]] = {}

    def __init__(self, client: Any) -> None:
        root = next(
            (k.__module__.split(".")[0] for k in type(client).__mro__ if k.__name__ == "AutoShardedClient"),
            None,
        )
        if root is None:
            raise TypeError(f"{type(client).__name__} is not an AutoShardedClient")
        self.name = root
        self.http: ModuleType = importlib.import_module(f"{root}.http")
        self.gateway: ModuleType = importlib.import_module(f"{root}.gateway")

    def point_at(self, api_base: str | None, gateway_url: str | None) -> None:
        route = self.http.Route
        if api_base:
            attr = "BASE" if hasattr(route, "BASE") else "API_BASE_URL"
            setattr(route, attr, api_base.rstrip("/"))
        ws_class = self.gateway.DiscordWebSocket
        if hasattr(ws_class, "DEFAULT_GATEWAY"):
            default = self._default_gateways.setdefault(self.name, ws_class.DEFAULT_GATEWAY)
            ws_class.DEFAULT_GATEWAY = type(default)(gateway_url) if gateway_url else default

    @staticmethod
    def shard_socket(client: Any, shard_id: int) -> Any | None:
        try:
            return client._get_websocket(shard_id=shard_id)
        except (KeyError, AttributeError):
            return None  # not launched yet

    def resume_of(self, ws: Any) -> ResumeData | None:
        session_id = getattr(ws, "session_id", None)
        sequence = getattr(ws, "sequence", None)
        url = next((getattr(ws, a) for a in self.RESUME_URL_ATTRS if getattr(ws, a, None)), None)
        if not session_id or sequence is None or url is None:
            return None
        return ResumeData(session_id=session_id, sequence=int(sequence), resume_gateway_url=str(url))


class _ClaimRun:
    """One claim's life: the client runs, beats go out, and the first ending wins."""

    def __init__(
        self,
        claim: Claim,
        client: Any,
        *,
        shardman: ShardmanClient,
        token: str,
        api_base: str | None,
        stop: asyncio.Event,
        identify_delay: float = 1.0,
    ) -> None:
        self.claim = claim
        self.client = client
        self.shardman = shardman
        self.token = token
        self.api_base = api_base
        self.stop = stop
        self.identify_delay = identify_delay
        self.lib = _Library(client)
        self.lease = LeaseView(claim)
        self.state = claim.state
        self.identified: set[int] = set()
        self.booked: dict[int, float] = {}
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def end(self, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)

    async def run(self) -> str:
        beating = asyncio.ensure_future(self._beat_loop())  # from the claim on
        watching = asyncio.ensure_future(self.lease.wait_lapsed())
        stopping = asyncio.ensure_future(self.stop.wait())
        gateway_url = self.claim.gateway_url
        if gateway_url is None and self.api_base:
            gateway_url = await _rest_gateway(self.api_base)  # shardman without BOT_TOKEN has none
        self.lib.point_at(self.api_base, gateway_url)
        self._install_hooks()
        starting = asyncio.ensure_future(self.client.start(self.token))
        try:
            await asyncio.wait(
                {starting, watching, stopping, self.ended}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped = stopping.done()
            for task in (beating, watching, stopping):
                task.cancel()
            # Whether the library ended by itself, before this run cancels it below.
            start_ended = starting.done() and not starting.cancelled()
            start_error = starting.exception() if start_ended else None
            # Stop the shards at once: whatever ended the claim, nobody may rely on them now.
            await self._stop_client(starting)

        if self.ended.done():
            reason = self.ended.result()
        elif self.lease.lapsed():
            reason = LAPSED
        elif stopped or (start_ended and start_error is None):
            reason = SHUTDOWN  # SIGTERM, or the bot's own client.close()
        else:
            await self._give_back()
            raise start_error or RuntimeError("the client stopped")
        if reason == SHUTDOWN:
            await self._give_back()
        return reason

    def _install_hooks(self) -> None:
        # Instance attributes on the client this run created: discord.py calls
        # `self.before_identify_hook(...)` (client.py `_call_before_identify_hook`) and
        # `self.launch_shard(...)` (shard.py `launch_shards`), so these override the class's.
        self.client.before_identify_hook = self._before_identify
        launch = self.client.launch_shard

        async def launch_shard(gateway: Any, shard_id: int, *, initial: bool = False) -> None:
            # Open the socket only when the slot comes: discord.py's heartbeat thread drops a socket
            # it has read nothing from for heartbeat_timeout (60 s, gateway.py KeepAliveHandler.run),
            # and nothing is read while the IDENTIFY hook sleeps.
            await self._wait_first_slot(shard_id)
            await launch(gateway, shard_id, initial=initial)

        self.client.launch_shard = launch_shard
        self.client.shard_connect_timeout = None  # the hook may rightly wait longer than 180 s

    async def _wait_first_slot(self, shard_id: int) -> None:
        if shard_id in self.identified or self.claim.resume_for(shard_id) is not None:
            return
        await _sleep_until(self._first_slot(shard_id))

    def _first_slot(self, shard_id: int) -> float:
        return self.claim.answered_at + self.claim.sleep_for(shard_id)

    async def _before_identify(self, shard_id: int | None, *, initial: bool = False) -> None:
        # `initial` is not used: discord.py sets it for the group's first shard only (shard.py
        # `launch_shards`), while every shard has its own first slot in `sleep_durations`.
        sid = self.claim.shard_ids[0] if shard_id is None else shard_id
        if self.lease.lapsed():
            await _forever()  # the run is being torn down
        first = sid not in self.identified and self.claim.resume_for(sid) is None
        if first:
            await _sleep_until(self._first_slot(sid) + self.identify_delay)
        else:
            # A re-IDENTIFY, or a claim that inherited resume data (its sleep_duration 0 was meant
            # for a RESUME, which this adapter does not send): book a real slot.
            slot = self.booked.get(sid)
            if slot is None or slot + self.identify_delay <= time.monotonic():
                try:
                    wait = await self.shardman.identify(self.claim.session_id, sid)
                except SessionLost:
                    self.end(LOST)
                    await _forever()
                except Retired:
                    self.end(RETIRED)
                    await _forever()
                slot = time.monotonic() + wait
                # kept while sleeping: discord.py gives a reconnect 60 s and then tries again
                self.booked[sid] = slot
            log.info("shard %s: IDENTIFY slot in %.2fs (from /identify)", sid, slot - time.monotonic())
            await _sleep_until(slot + self.identify_delay)
        if self.lease.lapsed():
            await _forever()
        self.booked.pop(sid, None)
        self.identified.add(sid)
        log.info("shard %s: IDENTIFY", sid)

    def reports(self) -> list[ShardReport]:
        try:
            return self._reports()
        except Exception:  # the library's internals moved: beat without the reports
            log.exception("reading the shards' state")
            return [ShardReport(sid) for sid in self.claim.shard_ids]

    def _reports(self) -> list[ShardReport]:
        out = []
        for sid in self.claim.shard_ids:
            ws = self.lib.shard_socket(self.client, sid)
            if ws is None:
                out.append(ShardReport(sid))
                continue
            latency = getattr(ws, "latency", None)
            out.append(
                ShardReport(
                    sid,
                    guild_count=sum(1 for g in self.client.guilds if g.shard_id == sid),
                    latency=latency if isinstance(latency, float) and math.isfinite(latency) else None,
                    resume=self.lib.resume_of(ws),
                )
            )
        return out

    async def _beat_loop(self) -> None:
        interval = self.claim.beat_interval
        while True:
            started = time.monotonic()
            if self.lease.lapsed():
                return  # never beat a lapsed session again; the lapse timer ends the run
            try:
                answer = await self.shardman.beat(
                    self.claim.session_id, self.reports(), retry_until=self.lease.deadline
                )
            except SessionLost:
                self.end(LOST)
                return
            except Retired:
                self.end(RETIRED)
                return
            except Unavailable as exc:
                log.warning("beat not acknowledged (%s); the lease view decides", exc)
            except ShardmanError as exc:
                log.error("beat refused: %s", exc)
            except Exception:
                log.exception("beat failed")  # a bug here must not stop the beats silently
            else:
                self.lease.acknowledged(answer.sent_at)
                if answer.state is not None and answer.state != self.state:
                    log.info("generation %s is now %s (was %s)", answer.generation, answer.state, self.state)
                    self.state = answer.state
            await asyncio.sleep(max(0.0, started + interval - time.monotonic()))

    async def _stop_client(self, starting: asyncio.Future[Any]) -> None:
        try:
            await asyncio.wait_for(self.client.close(), timeout=5.0)
        except Exception as exc:  # a close that fails still leaves us to cancel the rest
            log.warning("closing the client: %r", exc)
        starting.cancel()
        # the start task's own end was read by run() before this
        with contextlib.suppress(BaseException):
            await starting

    async def _give_back(self) -> None:
        if self.lease.lapsed():
            return
        try:
            await self.shardman.disconnect(self.claim.session_id)
        except Exception as exc:
            log.warning("disconnect: %s", exc)


async def _rest_gateway(api_base: str) -> str | None:
    """Discord's `GET /gateway` (no token needed), for claims that carry no `gateway_url`."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http,
            http.get(f"{api_base.rstrip('/')}/gateway") as response,
        ):
            if response.status == 200:
                return str((await response.json(content_type=None))["url"])
            log.warning("GET /gateway answered %s", response.status)
    except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, TypeError, ValueError) as exc:
        log.warning("GET /gateway: %r", exc)
    return None


async def _sleep_until(deadline: float) -> None:
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(left)


async def _forever() -> None:
    await asyncio.Event().wait()
