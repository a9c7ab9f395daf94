"""Run a discord.py `AutoShardedClient` for the shard groups shardman hands out.

The adapter for `runner.run_claims`: it starts one client per claim, paces its IDENTIFYs through the
claim's `IdentifyPacer` (a permit before each, a confirm once READY answers it), reports each shard's
guilds (once the cache is complete), latency, resume data and dispatches (the client adds the
process's CPU time and memory), and closes the shards resumably.
Handover: a new process IDENTIFYs every shard it takes over, with a permit, and never RESUMEs
the previous holder's session. discord.py builds its cache and fires `ready` from READY and the
GUILD_CREATEs after it, which a RESUME does not replay: a client resumed into someone else's session
would run without guilds and never become ready, and filling its cache would take discord.py's
private state. Make-before-break (IDENTIFY while the old process still runs) needs two sessions of a
shard at once and shardman grants a shard to one holder, and two sessions see the same events with
different sequences, so "each event handled once" has no exact cut-over point. The old process still
ends its session in order (see the package README, "Rolling deploys"): a last beat with its resume data,
a resumable close (4000), `/disconnect`.

Works with discord.py 2.7 and, through the same surface, its forks disnake, nextcord and py-cord: it
only uses `AutoShardedClient(shard_ids=, shard_count=)`, `before_identify_hook`, `launch_shard`,
`start`/`close`, `guilds`, `is_ready`, and -- in `_Library`, the one place that reaches into the
library -- `Route`'s base URL, `DiscordWebSocket.DEFAULT_GATEWAY` and each shard's websocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, ClassVar

import aiohttp

from .client import ShardmanClient
from .events import RESUMABLE_CLOSE, ClaimEvent, Release
from .models import ResumeData, ShardReport
from .runner import ClaimContext, run_claims

log = logging.getLogger("shardman_client.discordpy")

#: How long after an IDENTIFY its READY is watched for, to confirm the permit: past shardman's 8.1 s
#: hold of an unconfirmed permit a confirm changes nothing.
READY_WATCH = 9.0
#: How often a socket's session is looked at while its READY is awaited.
READY_POLL = 0.02

__all__ = ["ClaimEvent", "ClientFactory", "Release", "run_bot"]

#: `factory(shard_ids=[...], shard_count=N)` returns a new, not yet started AutoShardedClient.
ClientFactory = Callable[..., Any]


async def run_bot(
    factory: ClientFactory,
    *,
    shardman: ShardmanClient,
    token: str,
    api_base: str | None = None,
    stop: asyncio.Event | None = None,
    on_event: Callable[[ClaimEvent], None] | None = None,
    reclaim_pause: float = 1.0,
) -> Release:
    """Claim, run the claimed shards as a discord.py client, and claim again (`runner.run_claims`).

    Returns `Release.SHUTDOWN` (after `stop` or the client's own `close()`) or `Release.RETIRED` (this
    generation was resharded away; the process should exit), both equal to their strings. Raises what
    the library raises when it cannot run at all (a bad token, say), after giving the claim back.
    Claims placed by load (`SHARDS_PER_PROCESS=auto`) run side by side, one client each; a claim handed
    over ends alone (see the package README, "Placement by load").
    """

    async def start(context: ClaimContext) -> DiscordPyShards:
        return await DiscordPyShards.start(factory, context, token=token, api_base=api_base)

    return await run_claims(
        start,
        shardman=shardman,
        stop=stop,
        on_event=on_event,
        reclaim_pause=reclaim_pause,
    )


class DiscordPyShards:
    """One claim's discord.py client: started by `start`, stopped by the runner."""

    def __init__(
        self, context: ClaimContext, client: Any, lib: _Library, running: asyncio.Future[Any]
    ) -> None:
        self.context = context
        self.client = client
        self.lib = lib
        self.running = running
        self._closing: set[asyncio.Future[Any]] = set()

    @classmethod
    async def start(
        cls, factory: ClientFactory, context: ClaimContext, *, token: str, api_base: str | None
    ) -> DiscordPyShards:
        claim = context.claim
        client = factory(shard_ids=list(claim.shard_ids), shard_count=claim.shard_count)
        lib = _Library(client)
        gateway_url = claim.gateway_url
        if gateway_url is None and api_base:
            gateway_url = await _rest_gateway(api_base)  # shardman without BOT_TOKEN has none
        lib.point_at(api_base, gateway_url)
        _install_hooks(client, lib, context)
        shards = cls(context, client, lib, asyncio.ensure_future(lib.start(client, token)))
        shards.running.add_done_callback(shards._library_ended)
        return shards

    def _library_ended(self, running: asyncio.Future[Any]) -> None:
        if running.cancelled():
            return  # the runner stopped it
        error = running.exception()
        if error is None:
            self.context.release(Release.SHUTDOWN)  # the bot's own client.close()
        else:
            self.context.release(Release.FAILED, error)

    def reports(self) -> list[ShardReport]:
        out = []
        # Guild counts only once discord.py's cache is complete (READY and every GUILD_CREATE of each
        # shard: `is_ready()`): a count from a shard still starting up would be short, and shardman
        # shows the previous holder's count until this one reports.
        cache_ready = self.client.is_ready()
        for shard_id in self.context.claim.shard_ids:
            ws = self.lib.shard_socket(self.client, shard_id)
            if ws is None:
                out.append(ShardReport(shard_id))
                continue
            latency = getattr(ws, "latency", None)
            guilds = sum(1 for g in self.client.guilds if g.shard_id == shard_id) if cache_ready else None
            out.append(
                ShardReport(
                    shard_id,
                    guild_count=guilds,
                    latency=latency if isinstance(latency, float) and math.isfinite(latency) else None,
                    resume=self.lib.resume_of(ws),
                    events=self.lib.dispatches_of(ws),
                )
            )
        return out

    def reconnect(self, shard_ids: list[int]) -> None:
        # discord.py RESUMEs a shard whose socket closed with a code it can handle (gateway.py
        # `poll_event`: 4000 raises ReconnectWebSocket with resume), as its own heartbeat thread does
        # for a silent connection.
        for shard_id in shard_ids:
            ws = self.lib.shard_socket(self.client, shard_id)
            if ws is not None:
                task = asyncio.ensure_future(ws.close(code=RESUMABLE_CLOSE))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def stop(self, reason: Release) -> None:
        self.lib.close_sockets_with(self.client, self.context.claim.shard_ids, reason.close_code)
        try:
            await self.client.close()
        finally:
            self.running.cancel()
            with contextlib.suppress(BaseException):  # its end was read by _library_ended
                await self.running


def _install_hooks(client: Any, lib: _Library, context: ClaimContext) -> None:
    # Instance attributes on the client this claim created: discord.py calls
    # `self.before_identify_hook(...)` (client.py `_call_before_identify_hook`) and
    # `self.launch_shard(...)` (shard.py `launch_shards`), so these override the class's.
    pacer = context.pacer
    launch = client.launch_shard

    def shard_of(shard_id: int | None) -> int:
        return context.claim.shard_ids[0] if shard_id is None else shard_id

    async def before_identify_hook(shard_id: int | None, *, initial: bool = False) -> None:
        # Every IDENTIFY of every shard (`initial` is set for the group's first shard only) takes a
        # permit: the one `launch_shard` got while it is fresh, else a new one.
        await pacer.wait(shard_of(shard_id))

    async def launch_shard(gateway: Any, shard_id: int, *, initial: bool = False) -> None:
        # Wait for the permit before the socket opens: discord.py reads nothing from a socket while its
        # IDENTIFY hook waits, and its heartbeat thread drops a socket it has read nothing from for
        # heartbeat_timeout (60 s, gateway.py KeepAliveHandler.run).
        await pacer.acquire(shard_id)
        await launch(gateway, shard_id, initial=initial)

    client.before_identify_hook = before_identify_hook
    client.launch_shard = launch_shard
    client.shard_connect_timeout = None  # a socket that waits out a stale permit's renewal is not stuck
    lib.on_identify_sent(client, lambda shard_id: pacer.sent(shard_of(shard_id)))


class _Library:
    """Everything the adapter needs from the library's internals, in one place.

    - Start: `client.start(token)`, and disnake's without its session start limit check (`start`).

    - REST base: `http.Route.BASE` (discord.py, disnake, nextcord) or `Route.API_BASE_URL` (py-cord),
      the class attribute every Route's URL starts with; discord.py's own `_set_api_version` sets it
      the same way.
    - Gateway: discord.py 2.7 connects an AutoShardedClient with a given shard_count to
      `DiscordWebSocket.DEFAULT_GATEWAY` (shard.py `launch_shards`, and again after an invalid
      session); it has no parameter for it. The forks read the URL from REST `/gateway` instead,
      so for them the REST base is enough.
    - Each shard's websocket: `client._get_websocket(shard_id=)` (all four libraries), for its
      `session_id`, `sequence`, `latency` and resume URL, and its `close(code=)`.
    """

    #: Names of the resume URL on a shard's websocket: py-cord, disnake, nextcord, discord.py.
    RESUME_URL_ATTRS = ("resume_gateway_url", "resume_gateway", "resume_url", "gateway")

    _default_gateways: ClassVar[dict[str, Any]] = {}

    def __init__(self, client: Any) -> None:
        #: The READY watches under way (kept so that they are not garbage-collected).
        self._watching: set[asyncio.Task[None]] = set()
        root = next(
            (k.__module__.split(".")[0] for k in type(client).__mro__ if k.__name__ == "AutoShardedClient"),
            None,
        )
        if root is None:
            raise TypeError(f"{type(client).__name__} is not an AutoShardedClient")
        self.name = root
        self.http: ModuleType = importlib.import_module(f"{root}.http")
        self.gateway: ModuleType = importlib.import_module(f"{root}.gateway")

    @staticmethod
    def start(client: Any, token: str) -> Awaitable[None]:
        """`client.start(token)`; disnake's also without its session start limit check.

        disnake refuses to start when Discord's remaining session starts are fewer than the whole
        shard count (shard.py `launch_shards`), even for a process that runs one shard of it;
        shardman keeps that budget for the fleet (a permit answers 429 when it is spent).
        """
        if "ignore_session_start_limit" in inspect.signature(client.start).parameters:
            return client.start(token, ignore_session_start_limit=True)  # type: ignore[no-any-return]
        return client.start(token)  # type: ignore[no-any-return]

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

    @staticmethod
    def dispatches_of(ws: Any) -> int | None:
        """The dispatches the shard's session has received: its sequence number, one per dispatch."""
        sequence = getattr(ws, "sequence", None)
        return sequence if isinstance(sequence, int) and sequence >= 0 else None

    def on_identify_sent(self, client: Any, sent: Callable[[int | None], None]) -> None:
        """Call `sent(shard_id)` once the gateway has answered an IDENTIFY of the client with READY.

        READY, not the moment the IDENTIFY was written: a confirm sent then can reach shardman before
        the IDENTIFY reaches Discord (seen with the JS adapter on a loaded machine: the bucket's next
        IDENTIFY came 4.79 s after it), while READY proves Discord has it. discord.py has no hook
        after the IDENTIFY (only `before_identify_hook`, before it). Each new shard socket is made by
        `DiscordWebSocket.from_client`, which hands it to the client's
        `ConnectionState._update_references(ws)` before it calls `ws.identify()` (gateway.py), and the
        socket's `session_id` is None until its READY sets it. So the client's state wraps each new
        socket's `identify` and then watches for the session. Without that method (a fork that lacks
        it), or without a READY (op 9), nothing is confirmed, which is still safe: shardman opens the
        bucket 8.1 s after each grant then.
        """
        state = getattr(client, "_connection", None)
        update = getattr(state, "_update_references", None)
        if update is None:
            log.warning("%s: cannot tell when an IDENTIFY is sent; permits are not confirmed", self.name)
            return

        def update_references(ws: Any) -> None:
            update(ws)
            identify = ws.identify

            async def identify_then_confirm(*args: Any, **kwargs: Any) -> None:
                await identify(*args, **kwargs)
                task = asyncio.ensure_future(confirm_on_ready(ws))
                self._watching.add(task)
                task.add_done_callback(self._watching.discard)

            async def confirm_on_ready(ws: Any) -> None:
                deadline = asyncio.get_running_loop().time() + READY_WATCH
                while getattr(ws, "session_id", None) is None:
                    if asyncio.get_running_loop().time() > deadline or getattr(ws, "open", True) is False:
                        return
                    await asyncio.sleep(READY_POLL)
                sent(getattr(ws, "shard_id", None))

            ws.identify = identify_then_confirm

        state._update_references = update_references  # type: ignore[union-attr]

    def close_sockets_with(self, client: Any, shard_ids: list[int], code: int) -> None:
        """Make the client's own `close()` close each shard's socket with `code`.

        discord.py's `AutoShardedClient.close()` closes every shard with 1000 (shard.py `Shard.close`:
        `ws.close(code=1000)`), and Discord ends a session closed with 1000 or 1001, so the next holder
        could not RESUME it. `close()` marks the client closed before it closes the shards, so a shard
        whose socket closes does not reconnect (shard.py `_handle_disconnect`).
        """
        for shard_id in shard_ids:
            ws = self.shard_socket(client, shard_id)
            if ws is None:
                continue
            close = ws.close

            async def close_with_code(*_: Any, _close: Any = close, **__: Any) -> None:
                await _close(code=code)

            ws.close = close_with_code


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
