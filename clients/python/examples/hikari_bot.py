"""A hikari bot whose shards come from shardman. Configured only by the environment."""

import asyncio
import json
import logging
import os
import signal
import sys

import hikari

from shardman_client import ShardmanClient
from shardman_client.hikari import ClaimEvent, run_bot

API_BASE = os.environ.get("DISCORD_API_BASE")


def make_bot() -> hikari.GatewayBot:
    # banner and logs off: hikari writes both to stdout, which carries only the claim lines.
    bot = hikari.GatewayBot(
        os.environ["DISCORD_TOKEN"],
        banner=None,
        logs=None,
        intents=hikari.Intents.ALL_UNPRIVILEGED,
        rest_url=API_BASE,
    )

    async def on_shard_ready(event: hikari.ShardReadyEvent) -> None:
        logging.info("shard %s ready", event.shard.id)

    bot.subscribe(hikari.ShardReadyEvent, on_shard_ready)
    return bot


def print_event(event: ClaimEvent) -> None:
    print(json.dumps(event.to_json()), flush=True)  # stdout: one JSON line per claim change


async def main() -> int:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with ShardmanClient(os.environ["SHARDMAN_URL"], os.environ["SHARDMAN_SECRET"]) as shardman:
        await run_bot(
            make_bot,
            shardman=shardman,
            stop=stop,
            on_event=print_event,
            # A gateway asked without `compress` (the tests' stand-in Discord) sends plain JSON.
            compression=None if API_BASE else hikari.api.GatewayCompression.TRANSPORT_ZLIB_STREAM,
        )
    return 0  # shut down (SIGTERM/SIGINT) or retired (resharded away)


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.exit(asyncio.run(main()))
