"""shardman-client: claim Discord shards from shardman, beat, pace IDENTIFY, and run a bot library on them.

The core needs only aiohttp: `ShardmanClient` (the HTTP API), `LeaseView`, `Backoff`, `IdentifyPacer`,
the models and errors, and `run_claims` (the claim -> run -> release loop any adapter plugs into). The
discord.py adapter lives in `shardman_client.discordpy` (install the `discord` extra), the hikari one in
`shardman_client.hikari` (the `hikari` extra).
"""

from .answers import Answer, Route
from .backoff import Backoff
from .client import ShardmanClient
from .errors import BadSecret, NoShardsAvailable, Retired, SessionLost, ShardmanError, Unavailable
from .events import ClaimEvent, Release
from .lease import LeaseView
from .models import BeatAnswer, Claim, Permit, ResumeData, ShardReport
from .pacer import IdentifyPacer
from .runner import ClaimContext, RunningShards, StartShards, run_claims

__all__ = [
    "Answer",
    "Backoff",
    "BadSecret",
    "BeatAnswer",
    "Claim",
    "ClaimContext",
    "ClaimEvent",
    "IdentifyPacer",
    "LeaseView",
    "NoShardsAvailable",
    "Permit",
    "Release",
    "ResumeData",
    "Retired",
    "Route",
    "RunningShards",
    "SessionLost",
    "ShardReport",
    "ShardmanClient",
    "ShardmanError",
    "StartShards",
    "Unavailable",
    "run_claims",
]
