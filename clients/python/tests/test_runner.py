"""`run_claims` against a scripted shardman, with an adapter that records what it is asked to do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import SECRET, FakeShardman, Seen, claim_json

from shardman_client import (
    Backoff,
    ClaimContext,
    ClaimEvent,
    Release,
    ResumeData,
    ShardmanClient,
    ShardReport,
    run_claims,
)

NO_SHARDS = (401, {"detail": "No Shards Available"})


def load_claim(session_id: str, shard_id: int) -> dict[str, Any]:
    return claim_json(
        session_id=session_id,
        shard_id=shard_id,
        shard_ids=[shard_id],
        max_shards=4,
        placement="load",
        lease_seconds=6,
        beat_interval=0.2,
    )


@dataclass
class RecordedShards:
    """What the adapter did for one claim."""

    context: ClaimContext
    stopped: list[Release] = field(default_factory=list)
    reconnects: list[list[int]] = field(default_factory=list)

    def reports(self) -> list[ShardReport]:
        resume = ResumeData(f"discord-{self.context.claim.session_id}", 41, "wss://resume")
        return [ShardReport(s, resume=resume) for s in self.context.claim.shard_ids]

    async def stop(self, reason: Release) -> None:
        self.stopped.append(reason)

    def reconnect(self, shard_ids: list[int]) -> None:
        self.reconnects.append(shard_ids)


@dataclass
class Run:
    shards: dict[str, RecordedShards] = field(default_factory=dict)
    events: list[ClaimEvent] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, context: ClaimContext) -> RecordedShards:
        shards = self.shards[context.claim.session_id] = RecordedShards(context)
        return shards

    def lines(self) -> list[tuple[str, list[int], str | None]]:
        return [(e.event, e.shard_ids, e.reason.value if e.reason else None) for e in self.events]


def shardman_for(fake: FakeShardman) -> ShardmanClient:
    # a shardman that answers 401 at once stands for one that waited: asked again 0.1 s later
    return ShardmanClient(
        fake.url, SECRET, backoff=Backoff(initial=0.05, cap=0.2, jitter=0.0), connect_wait=0, full_retry=0.1
    )


def beats_of(fake: FakeShardman, session_id: str) -> list[Seen]:
    return [b for b in fake.requests("/beat") if b.body["session_id"] == session_id]


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def representation(shard_id: int, **fields: Any) -> dict[str, Any]:
    return {"shard_id": shard_id, "max_shards": 4, "generation": 1, "state": "active", "fence": 1, **fields}


async def test_placed_by_load_a_process_runs_every_claim_it_gets_and_hands_one_over_alone(
    fake_shardman: FakeShardman,
) -> None:
    fake_shardman.script("/connect", (200, load_claim("a", 0)), (200, load_claim("b", 1)), NO_SHARDS)
    hand_over_a = asyncio.Event()

    def beat(seen: Seen) -> tuple[int, Any]:
        shard = {"a": 0, "b": 1}[seen.body["session_id"]]
        return 200, representation(shard, hand_over=shard == 0 and hand_over_a.is_set())

    fake_shardman.answers["/beat"] = beat
    fake_shardman.script("/disconnect", (204, None))
    run = Run()
    async with shardman_for(fake_shardman) as shardman:
        running = asyncio.ensure_future(
            run_claims(run.start, shardman=shardman, stop=run.stop, on_event=run.events.append)
        )
        await until(lambda: len(beats_of(fake_shardman, "b")) >= 2, "both claims beating")
        assert len(beats_of(fake_shardman, "a")) >= 2  # the first claim runs on
        # a waiting claim stays open beside them
        await until(lambda: len(fake_shardman.requests("/connect")) >= 4, "claims asked again")

        hand_over_a.set()
        await until(lambda: len(fake_shardman.requests("/disconnect")) == 1, "a's give-back")
        assert run.shards["a"].stopped == [Release.HANDED_OVER]
        assert Release.HANDED_OVER.close_code == 4000  # resumable, for the target process's RESUME
        handed = len(beats_of(fake_shardman, "b"))
        await until(lambda: len(beats_of(fake_shardman, "b")) >= handed + 2, "b beating on")
        assert run.shards["b"].stopped == []
        assert not running.done()

        run.stop.set()
        assert await asyncio.wait_for(running, 5) is Release.SHUTDOWN

    # a's last beat carried its resume data (the sequence the target RESUMEs at), then /disconnect
    a_last = beats_of(fake_shardman, "a")[-1]
    a_disconnect, b_disconnect = fake_shardman.requests("/disconnect")
    assert a_disconnect.body == {"session_id": "a"}
    assert a_last.body["shards"][0]["resume"]["sequence"] == 41
    assert a_last.at < a_disconnect.at
    assert b_disconnect.body == {"session_id": "b"}
    assert run.shards["b"].stopped == [Release.SHUTDOWN]
    assert run.lines() == [
        ("claimed", [0], None),
        ("claimed", [1], None),
        ("released", [0], "handed_over"),
        ("released", [1], "shutdown"),
    ]


async def test_a_last_beat_that_fails_is_sent_again_before_the_disconnect(
    fake_shardman: FakeShardman,
) -> None:
    fake_shardman.script("/connect", (200, load_claim("a", 0)), NO_SHARDS)
    run = Run()
    last_beats: list[Seen] = []

    def beat(seen: Seen) -> tuple[int, Any]:
        if not run.stop.is_set():
            return 200, representation(0)
        last_beats.append(seen)
        return (503, {"detail": "Redis unavailable"}) if len(last_beats) == 1 else (200, representation(0))

    fake_shardman.answers["/beat"] = beat
    fake_shardman.script("/disconnect", (204, None))
    async with shardman_for(fake_shardman) as shardman:
        running = asyncio.ensure_future(run_claims(run.start, shardman=shardman, stop=run.stop))
        await until(lambda: len(beats_of(fake_shardman, "a")) >= 2, "the claim beating")
        run.stop.set()
        assert await asyncio.wait_for(running, 5) is Release.SHUTDOWN

    [disconnect] = fake_shardman.requests("/disconnect")
    assert len(last_beats) == 2, "the last beat is sent again after a 503"
    assert all(b.body["shards"][0]["resume"]["sequence"] == 41 for b in last_beats)
    assert last_beats[-1].at < disconnect.at


async def test_placed_by_load_a_claim_lost_or_retired_ends_alone(fake_shardman: FakeShardman) -> None:
    fake_shardman.script(
        "/connect", (200, load_claim("a", 0)), (200, load_claim("b", 1)), (200, load_claim("c", 2)), NO_SHARDS
    )
    gone = {"a": (404, {"detail": "Session Not Found"}), "b": (401, {"detail": "No Shards Available"})}

    def beat(seen: Seen) -> tuple[int, Any]:
        session = seen.body["session_id"]
        return gone.get(session) or (200, representation(2))

    fake_shardman.answers["/beat"] = beat
    fake_shardman.script("/disconnect", (204, None))
    run = Run()
    async with shardman_for(fake_shardman) as shardman:
        running = asyncio.ensure_future(
            run_claims(run.start, shardman=shardman, stop=run.stop, on_event=run.events.append)
        )
        await until(lambda: len(beats_of(fake_shardman, "c")) >= 3, "c beating")
        assert not running.done()
        assert run.shards["a"].stopped == [Release.LOST]
        assert run.shards["b"].stopped == [Release.RETIRED]
        run.stop.set()
        assert await asyncio.wait_for(running, 5) is Release.SHUTDOWN
    assert [d.body["session_id"] for d in fake_shardman.requests("/disconnect")] == ["c"]


async def test_with_groups_a_process_holds_one_claim_and_asks_for_none_meanwhile(
    fake_shardman: FakeShardman,
) -> None:
    fake_shardman.script("/connect", (200, claim_json(beat_interval=0.2)), NO_SHARDS)
    fake_shardman.script("/beat", (200, representation(0)))
    fake_shardman.script("/disconnect", (204, None))
    run = Run()
    async with shardman_for(fake_shardman) as shardman:
        running = asyncio.ensure_future(run_claims(run.start, shardman=shardman, stop=run.stop))
        await until(lambda: len(fake_shardman.requests("/beat")) >= 4, "beats")
        assert len(fake_shardman.requests("/connect")) == 1
        assert fake_shardman.requests("/connect")[0].query["identify"] == "permit"
        run.stop.set()
        assert await asyncio.wait_for(running, 5) is Release.SHUTDOWN


async def test_a_beat_naming_a_shard_to_reconnect_reconnects_it_once_per_lease(
    fake_shardman: FakeShardman,
) -> None:
    fake_shardman.script("/connect", (200, load_claim("a", 3)), NO_SHARDS)
    # every beat names shard 3 (and a shard that is not this claim's)
    fake_shardman.script("/beat", (200, representation(3, reconnect=[3, 7])))
    fake_shardman.script("/disconnect", (204, None))
    run = Run()
    async with shardman_for(fake_shardman) as shardman:
        running = asyncio.ensure_future(run_claims(run.start, shardman=shardman, stop=run.stop))
        await until(lambda: len(fake_shardman.requests("/beat")) >= 5, "beats")
        run.stop.set()
        assert await asyncio.wait_for(running, 5) is Release.SHUTDOWN
    assert run.shards["a"].reconnects == [[3]]


@pytest.mark.parametrize("placement", ["groups", "load"])
async def test_the_library_failing_ends_the_run_with_its_error(
    fake_shardman: FakeShardman, placement: str
) -> None:
    fake_shardman.script("/connect", (200, {**load_claim("a", 0), "placement": placement}), NO_SHARDS)
    fake_shardman.script("/beat", (204, None))
    fake_shardman.script("/disconnect", (204, None))

    async def start(context: ClaimContext) -> RecordedShards:
        raise RuntimeError("bad token")

    async with shardman_for(fake_shardman) as shardman:
        with pytest.raises(RuntimeError, match="bad token"):
            await asyncio.wait_for(run_claims(start, shardman=shardman), 5)
    assert [d.body["session_id"] for d in fake_shardman.requests("/disconnect")] == ["a"]
