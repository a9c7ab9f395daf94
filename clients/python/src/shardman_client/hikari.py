"""Run a hikari `GatewayBot` on the shards shardman hands out.

The adapter for `runner.run_claims`: per claim it starts one bot (made by the bot's own factory, with
its listeners) without `GatewayBot.start`, which would read `/gateway/bot`, pace its own start-up
windows and start every shard without session data. Instead it starts the claim's shards itself, as
`GatewayShardImpl`s that

- ask shardman for a permit before the socket of every connection that will IDENTIFY opens, and use
  it right before the IDENTIFY is written (`IdentifyPacer.acquire` / `wait`); a shard's `ShardReadyEvent`
  confirms it;
- RESUME the session a claim inherits (the previous holder's `session_id`, sequence and resume URL),
  so a handover or a kill -9 costs no IDENTIFY and loses or repeats no event; when Discord refuses the
  RESUME, hikari starts a new session, through a permit like any other IDENTIFY;
- close with code 4000 when the claim ends (hikari's own `close()` sends 1001, which ends the
  session), and never reconnect after it.

Each shard reports its heartbeat latency, resume data, dispatches (its sequence number) and, for a
shard this process IDENTIFYed, its guilds (READY's guilds, then joins and leaves). A resumed shard
reports no guild count: its READY went to the previous holder, whose count shardman keeps.

hikari's internals it relies on are all in `_Internals`; tested with hikari 2.7 (see the package README).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from typing import Any

import hikari
from hikari.api.shard import GatewayCompression
from hikari.impl.shard import GatewayShardImpl

from .client import ShardmanClient
from .events import RESUMABLE_CLOSE, ClaimEvent, Release
from .models import ResumeData, ShardReport
from .pacer import IdentifyPacer
from .runner import ClaimContext, run_claims

log = logging.getLogger("shardman_client.hikari")

__all__ = ["BotFactory", "ClaimEvent", "Release", "run_bot"]

#: `factory()` returns a new, not yet started `hikari.GatewayBot` with the bot's listeners.
BotFactory = Callable[[], hikari.GatewayBot]

#: Gateway opcode of IDENTIFY.
IDENTIFY_OP = 2


async def run_bot(
    factory: BotFactory,
    *,
    shardman: ShardmanClient,
    stop: asyncio.Event | None = None,
    on_event: Callable[[ClaimEvent], None] | None = None,
    reclaim_pause: float = 1.0,
    compression: GatewayCompression | None = GatewayCompression.TRANSPORT_ZLIB_STREAM,
) -> Release:
    """Claim, run the claimed shards on a bot from `factory`, and claim again (`runner.run_claims`).

    The bot's REST base is the factory's business (`GatewayBot(token, rest_url=...)`); the gateway URL
    is the claim's, else the REST API's `GET /gateway`. Returns `Release.SHUTDOWN` (after `stop` or the
    bot's own `close()`) or `Release.RETIRED` (resharded away; the process should exit). Raises what
    hikari raises when it cannot run the shards (a bad token, say), after giving the claim back.
    Claims placed by load (`SHARDS_PER_PROCESS=auto`) run side by side, one bot each. `compression`:
    the gateway transport's (None: plain JSON, as a gateway asked without `compress` sends it).
    """

    closing: set[asyncio.Task[None]] = set()

    async def start(context: ClaimContext) -> HikariShards:
        return await HikariShards.start(factory(), context, compression=compression, closing=closing)

    try:
        return await run_claims(
            start, shardman=shardman, stop=stop, on_event=on_event, reclaim_pause=reclaim_pause
        )
    finally:
        # The bots of claims given back finish closing (REST, voice) after the give-back.
        await asyncio.gather(*closing, return_exceptions=True)


class PacedShard(GatewayShardImpl):
    """A hikari shard whose IDENTIFYs wait for shardman's permit, and which stays down once halted."""

    def __init__(self, *, pacer: IdentifyPacer, halted: Callable[[], bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pacer = pacer
        self.halted = halted
        #: hikari's keep-alive task (it calls `_connect`), which `start` keeps to itself until READY.
        self.keep_alive: asyncio.Task[Any] | None = None

    async def _connect(self) -> tuple[asyncio.Task[None], ...]:
        self.keep_alive = asyncio.current_task()
        if self.halted():
            # hikari's keep-alive loop reconnects after any drop; a halted claim's shard must not. It
            # ends quietly on CancelledError, as on its own close().
            raise asyncio.CancelledError
        if _Internals.will_identify(self):
            # Wait for the permit before the socket opens, so that it does not sit open through a
            # long wait; a halted claim's wait never returns (`halt` cancels it).
            await self.pacer.acquire(self.id)
        tasks: tuple[asyncio.Task[None], ...] = await super()._connect()
        return tasks

    async def halt(self) -> None:
        """End hikari's keep-alive loop, also one still waiting for a permit or its READY."""
        task = self.keep_alive
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _send_json(self, data: Any, *, priority: bool = False) -> None:
        if data.get("op") == IDENTIFY_OP:
            await self.pacer.wait(self.id)  # the permit from `_connect`, or a new one if it went stale
        await super()._send_json(data, priority=priority)


class HikariShards:
    """One claim's bot and shards: started by `start`, stopped by the runner."""

    def __init__(
        self, context: ClaimContext, bot: hikari.GatewayBot, closing: set[asyncio.Task[None]]
    ) -> None:
        self.context = context
        self.bot = bot
        #: The bots still closing after their claims ended (`run_bot` awaits them before it returns).
        self.closing = closing
        self.shards: dict[int, PacedShard] = {}
        #: Guilds of each shard that this process IDENTIFYed (READY's, then joins and leaves).
        self.guilds: dict[int, set[int]] = {}
        self.halted = False
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(
        cls,
        bot: hikari.GatewayBot,
        context: ClaimContext,
        *,
        compression: GatewayCompression | None,
        closing: set[asyncio.Task[None]],
    ) -> HikariShards:
        self = cls(context, bot, closing)
        claim = context.claim
        bot.subscribe(hikari.ShardReadyEvent, self._on_ready)
        bot.subscribe(hikari.GuildJoinEvent, self._on_guild_join)
        bot.subscribe(hikari.GuildLeaveEvent, self._on_guild_leave)
        bot.subscribe(hikari.StoppingEvent, self._on_stopping)
        await _Internals.begin(bot)
        url = claim.gateway_url or await bot.rest.fetch_gateway_url()
        for shard_id in claim.shard_ids:
            shard = _Internals.make_shard(
                bot,
                shard_id=shard_id,
                shard_count=claim.shard_count,
                url=url,
                compression=compression,
                pacer=context.pacer,
                halted=self._halted,
            )
            resume = claim.resume_for(shard_id)
            if resume is not None:
                _Internals.set_resume(shard, resume)
            self.shards[shard_id] = shard
            _Internals.register(bot, shard)
        for shard in self.shards.values():
            self._spawn(self._run_shard(shard))
        return self

    def _halted(self) -> bool:
        return self.halted or self.context.halted()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_shard(self, shard: PacedShard) -> None:
        """Start the shard (READY or RESUMED) and watch it: a shard that ends by itself ends the claim."""
        try:
            await shard.start()
            await shard.join()
        except Exception as exc:  # a close code that forbids reconnecting (bad token, bad shard)
            if not self._halted():
                log.error("shard %s: %r", shard.id, exc)
                self.context.release(Release.FAILED, exc)
            return
        if not self._halted():
            self.context.release(Release.SHUTDOWN)  # closed by the bot's own close()

    async def _on_ready(self, event: hikari.ShardReadyEvent) -> None:
        self.guilds[event.shard.id] = {int(g) for g in event.unavailable_guilds}
        self.context.pacer.sent(event.shard.id)  # READY proves Discord has the IDENTIFY

    async def _on_guild_join(self, event: hikari.GuildJoinEvent) -> None:
        # Only a shard whose READY came here has a count: a resumed one's would start from nothing.
        if event.shard.id in self.guilds:
            self.guilds[event.shard.id].add(int(event.guild_id))

    async def _on_guild_leave(self, event: hikari.GuildLeaveEvent) -> None:
        self.guilds.get(event.shard.id, set()).discard(int(event.guild_id))

    async def _on_stopping(self, _: hikari.StoppingEvent) -> None:
        # The bot's own close(): hikari awaits this before it closes the shards with 1001.
        self.context.release(Release.SHUTDOWN)
        await self._close_sockets(RESUMABLE_CLOSE)

    def reports(self) -> list[ShardReport]:
        out = []
        for shard_id in self.context.claim.shard_ids:
            shard = self.shards.get(shard_id)
            if shard is None:
                out.append(ShardReport(shard_id))
                continue
            latency = shard.heartbeat_latency
            resume = _Internals.resume_of(shard)
            guilds = self.guilds.get(shard_id)
            out.append(
                ShardReport(
                    shard_id,
                    guild_count=None if guilds is None else len(guilds),
                    latency=latency if math.isfinite(latency) else None,
                    resume=resume,
                    events=_Internals.sequence_of(shard),
                )
            )
        return out

    def reconnect(self, shard_ids: list[int]) -> None:
        # A socket closed by this side makes hikari's keep-alive loop reconnect with a RESUME.
        for shard_id in shard_ids:
            shard = self.shards.get(shard_id)
            if shard is not None:
                self._spawn(_Internals.close_socket(shard, RESUMABLE_CLOSE))

    async def stop(self, reason: Release) -> None:
        await self._close_sockets(reason.close_code)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(shard.halt() for shard in self.shards.values()))
        # The sockets are closed and the sequences final: the last beat and /disconnect may go now,
        # while the bot closes the rest (shards, REST, voice: up to a second or more), so the next
        # holder does not wait for that.
        if _Internals.running(self.bot):
            closed = asyncio.ensure_future(self.bot.close())
            self.closing.add(closed)
            closed.add_done_callback(self._closed)
        # else the bot's own close() is under way, awaited by whoever called it

    def _closed(self, closed: asyncio.Task[None]) -> None:
        self.closing.discard(closed)
        if not closed.cancelled() and closed.exception() is not None:
            log.warning("closing the bot: %r", closed.exception())

    async def _close_sockets(self, code: int) -> None:
        self.halted = True  # first: a socket closed here must not come back
        await asyncio.gather(*(_Internals.close_socket(s, code) for s in self.shards.values()))


class _Internals:
    """Everything the adapter takes from hikari's internals (hikari 2.7), in one place.

    - `GatewayBot`: `_closed_event` / `_closing_event` (set as `start` sets them, so `close()`, `join()`
      and `is_alive` work), `_shards` (so `bot.shards`, `update_presence` and the like see the
      claim's shards), `_rest` / `_voice` (started as `start` starts them), `_token`, `_dumps` / `_loads`.
    - `GatewayShardImpl`: `_connect` (opens a socket, then IDENTIFYs or RESUMEs), `_send_json` (writes
      the IDENTIFY), `_session_id` / `_seq` / `_resume_gateway_url` (a RESUME when `_seq` is set), and
      `_ws.send_close(code=, message=)`, which closes the socket once (later calls do nothing).
    """

    @staticmethod
    async def begin(bot: hikari.GatewayBot) -> None:
        """What `GatewayBot.start` does before it starts shards, without `/gateway/bot` and its windows."""
        bot._closed_event = asyncio.Event()
        bot._closing_event = asyncio.Event()
        bot._rest.start()  # (the impls: `bot.rest` / `bot.voice` are typed as their interfaces)
        bot._voice.start()
        await bot.dispatch(bot.event_factory.deserialize_starting_event(), return_tasks=True)

    @staticmethod
    def running(bot: hikari.GatewayBot) -> bool:
        closing = bot._closing_event
        return bot._closed_event is not None and closing is not None and not closing.is_set()

    @staticmethod
    def make_shard(
        bot: hikari.GatewayBot,
        *,
        shard_id: int,
        shard_count: int,
        url: str,
        compression: GatewayCompression | None,
        pacer: IdentifyPacer,
        halted: Callable[[], bool],
    ) -> PacedShard:
        return PacedShard(
            pacer=pacer,
            halted=halted,
            compression=compression,
            http_settings=bot.http_settings,
            proxy_settings=bot.proxy_settings,
            event_manager=bot.event_manager,
            event_factory=bot.event_factory,
            intents=bot.intents,
            capabilities=bot.capabilities,
            dumps=bot._dumps,
            loads=bot._loads,
            shard_id=shard_id,
            shard_count=shard_count,
            token=bot._token,
            url=url,
        )

    @staticmethod
    def register(bot: hikari.GatewayBot, shard: PacedShard) -> None:
        bot._shards[shard.id] = shard

    @staticmethod
    def set_resume(shard: PacedShard, resume: ResumeData) -> None:
        shard._session_id = resume.session_id
        shard._seq = resume.sequence
        shard._resume_gateway_url = resume.resume_gateway_url

    @staticmethod
    def will_identify(shard: PacedShard) -> bool:
        """Whether the shard's next connection IDENTIFYs (`_connect`: no sequence) rather than RESUMEs."""
        return shard._seq is None

    @staticmethod
    def resume_of(shard: PacedShard) -> ResumeData | None:
        session_id, sequence, url = shard._session_id, shard._seq, shard._resume_gateway_url
        if not session_id or sequence is None or not url:
            return None
        return ResumeData(session_id=session_id, sequence=int(sequence), resume_gateway_url=url)

    @staticmethod
    def sequence_of(shard: PacedShard) -> int | None:
        sequence = shard._seq
        return sequence if isinstance(sequence, int) and sequence >= 0 else None

    @staticmethod
    async def close_socket(shard: PacedShard, code: int) -> None:
        ws = shard._ws
        if ws is not None:
            with contextlib.suppress(Exception):  # a socket that is gone already
                await ws.send_close(code=code, message=b"shardman: handed over")
