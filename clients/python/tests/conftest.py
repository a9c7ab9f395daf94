from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standin_discord import StandinDiscord

PACKAGE = Path(__file__).resolve().parent.parent
SECRET = "test-secret"
TOKEN = "test-token"


def claim_json(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "shard_id": 0,
        "max_shards": 2,
        "session_id": "sess-1",
        "fence": 7,
        "generation": 1,
        "state": "active",
        "sleep_duration": 0.0,
        "resume": None,
        "shard_ids": [0],
        "sleep_durations": [0.0],
        "resumes": [None],
        "lease_seconds": 6,
        "beat_interval": 2.0,
        "gateway_url": None,
    }
    body.update(overrides)
    return body


@dataclass
class Seen:
    method: str
    path: str
    at: float
    headers: dict[str, str]
    body: Any
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeShardman:
    """shardman played by a script: each route answers its queued replies in turn, the last one forever."""

    replies: dict[str, list[tuple[int, Any, dict[str, str]]]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    #: per path: seconds each answer is held back (a shardman that waits before answering)
    holds: dict[str, float] = field(default_factory=dict)
    #: `grant_permits`: when each bucket (`shard_id % permit_buckets`) may be granted its next permit
    permit_buckets: int = 1
    next_permit: dict[int, float] = field(default_factory=dict)
    pace_permits: bool = False
    #: per path: answers computed from the request (None: the scripted replies answer)
    answers: dict[str, Callable[[Seen], tuple[int, Any] | None]] = field(default_factory=dict)

    def script(self, path: str, *replies: tuple[int, Any] | tuple[int, Any, dict[str, str]]) -> None:
        self.replies[path] = [(r[0], r[1], r[2] if len(r) > 2 else {}) for r in replies]

    def grant_permits(self, *, buckets: int = 1) -> None:
        """Permits paced as shardman paces them, for tests about something else: a bucket's next
        permit is held back until 5.1 s after the previous grant. (shardman counts 5 s from the
        confirm, sent on READY, after the IDENTIFY reached Discord; this fake counts from the grant,
        before the IDENTIFY left, so it keeps 0.1 s for the IDENTIFY's own way.) Every confirm is
        taken."""
        self.pace_permits, self.permit_buckets = True, buckets
        self.script("/identify/permit", (200, {"permit": True, "shard_id": 0}))
        self.script("/identify/confirm", (200, {"confirmed": True}))

    def requests(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        text = await request.text()
        body: Any = json.loads(text) if text else None
        headers, query = dict(request.headers), dict(request.query)
        # This request's own record: others arrive while it is held, so seen[-1] may be theirs.
        seen = Seen(request.method, request.path, time.monotonic(), headers, body, query)
        self.seen.append(seen)
        await asyncio.sleep(self.holds.get(request.path, 0.0))
        if self.pace_permits and request.path == "/identify/permit":
            bucket = int(body.get("shard_id") or 0) % self.permit_buckets
            granted_at = max(time.monotonic(), self.next_permit.get(bucket, 0.0))
            self.next_permit[bucket] = granted_at + 5.1
            await asyncio.sleep(granted_at - time.monotonic())
        computed = self.answers[request.path](seen) if request.path in self.answers else None
        if computed is not None:
            return web.json_response(computed[1], status=computed[0])
        queue = self.replies.get(request.path)
        if not queue:
            return web.json_response({"detail": "Not Found"}, status=404)
        status, reply, headers = queue.pop(0) if len(queue) > 1 else queue[0]
        if reply is None:
            return web.Response(status=status, headers=headers)
        return web.json_response(reply, status=status, headers=headers)


@pytest.fixture
async def fake_shardman() -> AsyncIterator[FakeShardman]:
    fake = FakeShardman()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def standin() -> AsyncIterator[StandinDiscord]:
    discord = StandinDiscord(token=TOKEN)
    await discord.start()
    yield discord
    await discord.stop()


REPO = PACKAGE.parent.parent


def shardman_bin() -> Path:
    """SHARDMAN_BIN, else the checkout's target/debug/shardman, built with cargo when it is missing."""
    explicit = os.environ.get("SHARDMAN_BIN")
    if explicit:
        if not Path(explicit).exists():
            pytest.fail(f"SHARDMAN_BIN={explicit} does not exist")
        return Path(explicit)
    path = REPO / "target" / "debug" / "shardman"
    if not path.exists() and shutil.which("cargo") and (REPO / "Cargo.toml").exists():
        # the same debug build `cargo test` makes later, so a clean clone builds it only once
        subprocess.run(["cargo", "build", "--bin", "shardman"], cwd=REPO, check=True)
    if not path.exists():
        pytest.skip(f"no shardman binary at {path} (build it with `cargo build`, or set SHARDMAN_BIN)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RealShardman:
    url: str
    process: asyncio.subprocess.Process

    async def status(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/status", headers={"Authorization": SECRET}) as r,
        ):
            return await r.json()  # type: ignore[no-any-return]

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.url}{path}", json=body, headers={"Authorization": SECRET}) as r,
        ):
            return r.status, await r.json(content_type=None)


StartShardman = Callable[..., Any]


@pytest.fixture
async def start_shardman() -> AsyncIterator[StartShardman]:
    """Start the real shardman binary (embedded store) on a free port with the given settings."""
    started: list[asyncio.subprocess.Process] = []
    binary = shardman_bin()  # in setup, which the per-test timeout does not cover

    async def start(**env: str) -> RealShardman:
        port = free_port()
        full_env = {
            **os.environ,
            "SECRET": SECRET,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "MAX_SHARDS": "2",
            "MAX_SECONDS": "6",
            "RUST_LOG": "warn",
            **env,
        }
        full_env.pop("REDIS_URL", None)
        process = await asyncio.create_subprocess_exec(
            str(binary),
            env=full_env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{url}/readyz") as r:
                        if r.status == 200:
                            return RealShardman(url, process)
                await asyncio.sleep(0.1)
        raise RuntimeError("shardman did not become ready")

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()  # its graceful shutdown takes seconds and proves nothing here
            await process.wait()
