"""The discord.py adapter's reports, against a discord.py client that is not connected.

Also run in each fork's venv with SHARDMAN_PY_LIBRARY=disnake / nextcord / discord (py-cord).
"""

from __future__ import annotations

import asyncio
import importlib
import os
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from conftest import SECRET, claim_json

from shardman_client import Claim, ShardmanClient
from shardman_client.discordpy import DiscordPyShards, _Library
from shardman_client.runner import ClaimContext

if TYPE_CHECKING:
    import discord
else:
    discord = importlib.import_module(os.environ.get("SHARDMAN_PY_LIBRARY", "discord"))


class HalfStartedBot(discord.AutoShardedClient):
    """Three guilds known on shard 0, one on shard 1; `cache_ready` plays discord.py's `is_ready()`."""

    cache_ready = False

    def is_ready(self) -> bool:
        return self.cache_ready

    @property
    def guilds(self) -> Any:
        return [SimpleNamespace(shard_id=shard) for shard in (0, 0, 1, 0)]


async def shards_of(bot: HalfStartedBot, monkeypatch: pytest.MonkeyPatch) -> DiscordPyShards:
    claim = Claim.from_json(claim_json(shard_ids=[0, 1], max_shards=2), requested_at=0.0, answered_at=0.0)
    context = ClaimContext(claim, ShardmanClient("http://127.0.0.1:9", SECRET))
    lib = _Library(bot)
    socket = SimpleNamespace(latency=0.05, session_id="d1", sequence=3, resume_gateway_url="wss://r")
    monkeypatch.setattr(lib, "shard_socket", lambda client, shard_id: socket)
    return DiscordPyShards(context, bot, lib, asyncio.get_running_loop().create_future())


async def test_guild_counts_are_reported_only_once_the_cache_is_complete(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bot = HalfStartedBot(intents=discord.Intents.default(), shard_ids=[0, 1], shard_count=2)
    shards = await shards_of(bot, monkeypatch)

    # Still receiving GUILD_CREATEs: no count, so shardman keeps showing the previous holder's.
    starting = shards.reports()
    assert [r.guild_count for r in starting] == [None, None]
    assert [r.latency for r in starting] == [0.05, 0.05]
    assert all(r.resume is not None for r in starting)

    bot.cache_ready = True
    assert [r.guild_count for r in shards.reports()] == [3, 1]


async def test_the_rest_base_points_every_route_of_the_library_at_api_base(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # async: the forks' clients take the running loop when made
    bot = HalfStartedBot(intents=discord.Intents.default(), shard_ids=[0], shard_count=1)
    lib = _Library(bot)
    route = lib.http.Route
    for attr in ("BASE", "API_BASE_URL"):  # discord.py, disnake, nextcord; py-cord
        if hasattr(route, attr):
            monkeypatch.setattr(route, attr, getattr(route, attr))  # put back afterwards
    lib.point_at("http://127.0.0.1:9/api/v10/", None)
    assert route("GET", "/gateway/bot").url == "http://127.0.0.1:9/api/v10/gateway/bot"


async def test_the_client_starts_without_disnakes_session_start_limit_check() -> None:
    bot = HalfStartedBot(intents=discord.Intents.default(), shard_ids=[1], shard_count=4)
    connected: list[dict[str, Any]] = []

    async def login(token: str) -> None:
        assert token == "token"

    async def connect(**options: Any) -> None:
        connected.append(options)

    bot.login = login  # type: ignore[method-assign]
    bot.connect = connect  # type: ignore[method-assign]
    await _Library(bot).start(bot, "token")
    # shardman keeps the fleet's session start budget; disnake would compare it with all 4 shards
    expected: dict[str, Any] = {"reconnect": True}
    if discord.__name__ == "disnake":
        expected["ignore_session_start_limit"] = True
    assert connected == [expected]
