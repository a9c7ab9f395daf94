"""A small stand-in Discord for this package's own tests: REST under /api/v10 and a JSON gateway.

It speaks what the shared contract asks of the harness's stand-in (HELLO, heartbeat ACK,
IDENTIFY -> READY or op 9 inside the bucket's 5 s, RESUME -> RESUMED or op 9) and records what
it saw, so tests judge from the gateway's side.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web


def control(op: int, d: Any = None) -> str:
    """A payload other than a dispatch: Discord sends `s` and `t` as null there too (nextcord reads both)."""
    return json.dumps({"op": op, "d": d, "s": None, "t": None})


APP_ID = "1100000000000000001"
USER = {
    "id": APP_ID,
    "username": "standin-bot",
    "discriminator": "0000",
    "global_name": None,
    "avatar": None,
    "bot": True,
    "flags": 0,
    "mfa_enabled": False,  # the bot's own user, as READY and /users/@me carry it (hikari requires it)
    "verified": True,
}
APPLICATION = {
    "id": APP_ID,
    "name": "standin-bot",
    "icon": None,
    "description": "",
    "bot_public": True,
    "bot_require_code_grant": False,
    "verify_key": "00" * 32,
    "owner": USER,
    "flags": 0,
    "summary": "",
}


def _json(body: Any, status: int = 200) -> web.Response:
    # exactly "application/json", as Discord sends it: discord.py decodes JSON only for that value
    headers = {"Content-Type": "application/json"}
    return web.Response(body=json.dumps(body).encode(), status=status, headers=headers)


@dataclass
class GatewayEvent:
    kind: str  # identify, too_early, ready, resume, resumed, close
    at: float
    shard: tuple[int, int] | None
    connection: int
    #: For `close`: the code the client closed with (None when the connection just dropped).
    code: int | None = None


@dataclass
class StandinDiscord:
    token: str
    max_concurrency: int = 1
    heartbeat_interval_ms: int = 2000
    events: list[GatewayEvent] = field(default_factory=list)
    sessions: dict[str, tuple[int, int]] = field(default_factory=dict)
    _last_identify: dict[int, float] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    port: int = 0
    live: dict[tuple[int, int], web.WebSocketResponse] = field(default_factory=dict)
    #: The last sequence number sent on each connection (by id of its socket).
    _sequences: dict[int, int] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def invalidate(self, shard: tuple[int, int]) -> None:
        """Invalidate the live session of a shard (op 9, not resumable), as Discord may at any time."""
        await self.live[shard].send_str(control(9, False))

    async def dispatch(self, shard: tuple[int, int], event: str, data: dict[str, Any]) -> None:
        """Send a dispatch to the live connection of a shard, moving its sequence on by one."""
        ws = self.live[shard]
        self._sequences[id(ws)] += 1
        await ws.send_str(json.dumps({"op": 0, "t": event, "s": self._sequences[id(ws)], "d": data}))

    def of(self, kind: str) -> list[GatewayEvent]:
        return [e for e in self.events if e.kind == kind]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v10/gateway", self._gateway)
        app.router.add_get("/api/v10/gateway/bot", self._gateway_bot)
        app.router.add_get("/api/v10/users/@me", self._me)
        app.router.add_get("/api/v10/oauth2/applications/@me", self._application)
        app.router.add_get("/{tail:.*}", self._websocket)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- REST ------------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {self.token}"

    def _unauthorized(self) -> web.Response:
        return _json({"message": "401: Unauthorized", "code": 0}, status=401)

    async def _gateway(self, request: web.Request) -> web.Response:
        return _json({"url": self.gateway_url})

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        return _json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000,
                    "reset_after": 86_400_000,
                    "max_concurrency": self.max_concurrency,
                },
            }
        )

    async def _me(self, request: web.Request) -> web.Response:
        return _json(USER) if self._authorized(request) else self._unauthorized()

    async def _application(self, request: web.Request) -> web.Response:
        return _json(APPLICATION) if self._authorized(request) else self._unauthorized()

    # -- gateway ---------------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return _json({"message": "404: Not Found", "code": 0}, status=404)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = next(self._ids)
        shard: tuple[int, int] | None = None
        self._sequences[id(ws)] = 0
        await ws.send_str(control(10, {"heartbeat_interval": self.heartbeat_interval_ms}))
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):  # hikari sends JSON as binary
                    continue
                frame = json.loads(msg.data)
                op, d = frame.get("op"), frame.get("d")
                if op == 1:
                    await ws.send_str(control(11))
                elif op == 2:
                    if d.get("token") != self.token:
                        await ws.close(code=4004)
                        break
                    number, count = d.get("shard") or (0, 1)
                    shard = (int(number), int(count))
                    bucket = shard[0] % self.max_concurrency
                    now = time.monotonic()
                    last = self._last_identify.get(bucket)
                    if last is not None and now - last < 5.0:
                        self.events.append(GatewayEvent("too_early", now, shard, conn))
                        await ws.send_str(control(9, False))
                        continue
                    self._last_identify[bucket] = now
                    self.events.append(GatewayEvent("identify", now, shard, conn))
                    session_id = f"s{conn}"
                    self.sessions[session_id] = shard
                    self._sequences[id(ws)] += 1
                    self.live[shard] = ws
                    await ws.send_str(json.dumps(self._ready(session_id, shard, self._sequences[id(ws)])))
                    self.events.append(GatewayEvent("ready", time.monotonic(), shard, conn))
                elif op == 6:
                    known = self.sessions.get(d.get("session_id"))
                    self.events.append(GatewayEvent("resume", time.monotonic(), known, conn))
                    if known is None or d.get("token") != self.token:
                        await ws.send_str(control(9, False))
                        continue
                    shard = known
                    self._sequences[id(ws)] += 1
                    seq = self._sequences[id(ws)]
                    await ws.send_str(json.dumps({"op": 0, "t": "RESUMED", "s": seq, "d": {}}))
                    self.events.append(GatewayEvent("resumed", time.monotonic(), shard, conn))
        finally:
            code = ws.close_code if ws.closed else None
            self.events.append(GatewayEvent("close", time.monotonic(), shard, conn, code))
            if shard is not None and self.live.get(shard) is ws:
                del self.live[shard]
            del self._sequences[id(ws)]
        return ws

    def _ready(self, session_id: str, shard: tuple[int, int], seq: int) -> dict[str, Any]:
        return {
            "op": 0,
            "t": "READY",
            "s": seq,
            "d": {
                "v": 10,
                "user": USER,
                "guilds": [],
                "session_id": session_id,
                "resume_gateway_url": f"{self.gateway_url}/resume",
                "shard": list(shard),
                "application": {"id": APP_ID, "flags": 0},
            },
        }


async def main() -> None:  # pragma: no cover - for trying bots by hand
    import os

    standin = StandinDiscord(token=os.environ.get("DISCORD_TOKEN", "t"))
    await standin.start()
    print(standin.api_base, flush=True)
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        await standin.stop()


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(main())
