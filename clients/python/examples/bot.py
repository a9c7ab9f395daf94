"""A discord.py (or fork) bot whose shards come from shardman. Configured only by the environment."""

import asyncio
import importlib
import json
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

from shardman_client import ShardmanClient
from shardman_client.discordpy import ClaimEvent, run_bot

if TYPE_CHECKING:
    import discord
else:  # discord.py, or a fork of it: SHARDMAN_PY_LIBRARY=disnake or nextcord (py-cord is `discord`)
    discord = importlib.import_module(os.environ.get("SHARDMAN_PY_LIBRARY", "discord"))


class Bot(discord.AutoShardedClient):
    def __init__(self, *, shard_ids: list[int], shard_count: int) -> None:
        super().__init__(intents=discord.Intents.default(), shard_ids=shard_ids, shard_count=shard_count)

    async def on_shard_ready(self, shard_id: int) -> None:
        logging.info("shard %s ready", shard_id)


def print_event(event: ClaimEvent) -> None:
    print(json.dumps(event.to_json()), flush=True)  # stdout: one JSON line per claim change


async def main() -> int:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with ShardmanClient(os.environ["SHARDMAN_URL"], os.environ["SHARDMAN_SECRET"]) as shardman:
        await run_bot(
            Bot,
            shardman=shardman,
            token=os.environ["DISCORD_TOKEN"],
            api_base=os.environ.get("DISCORD_API_BASE", "https://discord.com/api/v10"),
            stop=stop,
            on_event=print_event,
        )
    return 0  # shut down (SIGTERM/SIGINT) or retired (resharded away)


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.exit(asyncio.run(main()))
