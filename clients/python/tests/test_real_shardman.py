"""The core client against the real shardman binary (embedded store)."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import SECRET, StartShardman

from shardman_client import (
    BadSecret,
    LeaseView,
    NoShardsAvailable,
    ResumeData,
    Retired,
    SessionLost,
    ShardmanClient,
    ShardReport,
)


async def test_a_group_is_claimed_beaten_reidentified_and_given_back(start_shardman: StartShardman) -> None:
    shardman = await start_shardman(MAX_SHARDS="2", SHARDS_PER_PROCESS="2", MAX_SECONDS="6")
    async with ShardmanClient(shardman.url, SECRET) as c:
        claim = await c.connect()
        assert claim.shard_ids == [0, 1]
        assert claim.shard_count == 2
        assert claim.state == "active"
        assert claim.lease_seconds == 6
        assert claim.beat_interval == 2.0
        assert claim.sleep_durations[0] == 0.0
        assert claim.sleep_durations[1] >= 5.0  # one bucket: the second shard waits its own slot

        resume = ResumeData("discord-session", 17, "ws://resume.example")
        answer = await c.beat(
            claim.session_id,
            [ShardReport(0, guild_count=3, latency=0.05, resume=resume), ShardReport(1, guild_count=4)],
        )
        assert (answer.generation, answer.state, answer.shard_count) == (claim.generation, "active", 2)
        lease = LeaseView(claim)
        lease.acknowledged(answer.sent_at)
        assert lease.remaining() == pytest.approx(6, abs=0.5)

        status = await shardman.status()
        assert {s["shard_id"]: s["guild_count"] for s in status["shards"]} == {0: 3, 1: 4}

        wait = await c.identify(claim.session_id, 1)
        assert wait > 0

        with pytest.raises(NoShardsAvailable):
            await c.connect()

        await c.disconnect(claim.session_id)
        assert (await shardman.status())["shards"] == []
        with pytest.raises(SessionLost):
            await c.beat(claim.session_id)


async def test_permits_pace_a_bucket_from_the_confirm_of_its_last_identify(
    start_shardman: StartShardman,
) -> None:
    shardman = await start_shardman(MAX_SHARDS="2", SHARDS_PER_PROCESS="2")  # one bucket
    async with ShardmanClient(shardman.url, SECRET) as c:
        claim = await c.connect(identify="permit")
        assert claim.sleep_durations == [0.0, 0.0]  # no slot booked
        assert claim.placement == "groups"

        first = await c.identify_permit(claim.session_id, 0, wait=0)
        assert (first.granted, first.shard_id) == (True, 0)
        refused = await c.identify_permit(claim.session_id, 1, wait=0)
        assert (refused.granted, refused.shard_id) == (False, 1)
        assert refused.retry_after is not None

        assert await c.identify_confirm(claim.session_id, 0) is True
        confirmed_at = time.monotonic()
        assert await c.identify_confirm(claim.session_id, 0) is False  # confirmed already
        second = await c.identify_permit(claim.session_id, 1, wait=10)
        assert second.granted
        assert time.monotonic() - confirmed_at >= 5.0  # Discord's 5 s, counted from the confirm

        await c.disconnect(claim.session_id)
        with pytest.raises(SessionLost):
            await c.identify_permit(claim.session_id, 0, wait=0)


async def test_a_claim_placed_by_load_is_one_shard_and_says_so(start_shardman: StartShardman) -> None:
    shardman = await start_shardman(MAX_SHARDS="2", SHARDS_PER_PROCESS="auto")
    async with ShardmanClient(shardman.url, SECRET) as c:
        claim = await c.connect(identify="permit")
        assert (claim.shard_ids, claim.placement) == ([0], "load")
        answer = await c.beat(claim.session_id, [ShardReport(0)])
        assert (answer.hand_over, answer.reconnect) == (False, [])


async def test_a_wrong_secret_is_refused(start_shardman: StartShardman) -> None:
    shardman = await start_shardman()
    async with ShardmanClient(shardman.url, "not-the-secret") as c:
        with pytest.raises(BadSecret):
            await c.connect()


async def test_the_old_generation_is_retired_once_a_reshard_completes(start_shardman: StartShardman) -> None:
    shardman = await start_shardman(MAX_SHARDS="1")
    async with ShardmanClient(shardman.url, SECRET) as c:
        old = await c.connect()
        await c.beat(old.session_id)
        status, plan = await shardman.post("/reshard", {"max_shards": 2})
        assert status == 202, plan
        new = [await c.connect(), await c.connect()]
        assert [n.state for n in new] == ["standby", "standby"]
        assert sorted(s for n in new for s in n.shard_ids) == [0, 1]
        answers = [await c.beat(n.session_id) for n in new]
        assert answers[-1].state == "active"  # the beat that completes the generation switches it
        started = time.monotonic()
        with pytest.raises(Retired):
            await c.beat(old.session_id)
        assert time.monotonic() - started < 2  # an answer, not a retry loop


async def test_a_claim_waits_for_a_shard_given_back_and_gets_its_resume_data(
    start_shardman: StartShardman,
) -> None:
    shardman = await start_shardman(MAX_SHARDS="1")
    async with ShardmanClient(shardman.url, SECRET) as holder, ShardmanClient(shardman.url, SECRET) as waiter:
        held = await holder.connect()
        resume = ResumeData("discord-session", 17, "ws://resume.example")
        await holder.beat(held.session_id, [ShardReport(0, resume=resume)])
        started = time.monotonic()
        with pytest.raises(NoShardsAvailable):
            await waiter.connect(wait=0.5)
        assert time.monotonic() - started >= 0.5  # shardman waited before its 401

        waiting = asyncio.ensure_future(waiter.claim())
        await asyncio.sleep(0.5)
        assert not waiting.done()

        released_at = time.monotonic()
        await holder.disconnect(held.session_id)
        claim = await asyncio.wait_for(waiting, timeout=5)

        assert time.monotonic() - released_at < 1  # answered on the release, not on a retry
        assert claim.shard_ids == [0]
        assert claim.resumes == [resume]
