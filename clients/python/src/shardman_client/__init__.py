"""shardman-client: claim Discord shards from shardman, beat, pace IDENTIFY, and run discord.py on them.

The core (`ShardmanClient`, `LeaseView`, the models and errors) needs only aiohttp; the discord.py
adapter lives in `shardman_client.discordpy` (install the `discord` extra).
"""

from .client import (
    Backoff,
    BadSecret,
    NoShardsAvailable,
    Retired,
    SessionLost,
    ShardmanClient,
    ShardmanError,
    Unavailable,
)
from .lease import LeaseView
from .models import BeatAnswer, Claim, ResumeData, ShardReport

__all__ = [
    "Backoff",
    "BadSecret",
    "BeatAnswer",
    "Claim",
    "LeaseView",
    "NoShardsAvailable",
    "ResumeData",
    "Retired",
    "SessionLost",
    "ShardReport",
    "ShardmanClient",
    "ShardmanError",
    "Unavailable",
]
