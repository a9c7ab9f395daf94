"""IDENTIFY by permits (`IdentifyPacer`) against a scripted shardman."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import SECRET, FakeShardman, claim_json

from shardman_client import Backoff, Claim, IdentifyPacer, Release, ShardmanClient
from shardman_client import pacer as pacer_module

GRANTED = {"permit": True, "shard_id": 1}
NOT_YET = {"permit": False, "shard_id": 1, "retry_after": 0.2}


def pacer_for(shardman: ShardmanClient, released: list[Release]) -> IdentifyPacer:
    claim = Claim.from_json(
        claim_json(session_id="sess-1", shard_ids=[0, 1], sleep_durations=[0, 0], resumes=[None, None]),
        requested_at=0.0,
        answered_at=0.0,
    )
    return IdentifyPacer(claim, shardman, release=released.append, halted=lambda: bool(released))


def client(fake: FakeShardman) -> ShardmanClient:
    return ShardmanClient(fake.url, SECRET, backoff=Backoff(initial=0.05, cap=0.2, jitter=0.0))


async def test_a_shard_asks_for_its_permit_until_granted_waiting_at_shardman(
    fake_shardman: FakeShardman,
) -> None:
    # each refusal comes after the replica waited (more than half of the asked wait): asked again at once
    fake_shardman.holds["/identify/permit"] = 0.3
    fake_shardman.script("/identify/permit", (200, NOT_YET), (200, NOT_YET), (200, GRANTED))
    async with client(fake_shardman) as shardman:
        pacer = pacer_for(shardman, [])
        started = time.monotonic()
        await pacer.acquire(1, wait=0.5)
        took = time.monotonic() - started
    asks = fake_shardman.requests("/identify/permit")
    assert [a.body for a in asks] == [{"session_id": "sess-1", "shard_id": 1, "wait": 0.5}] * 3
    assert took < 0.9 + 0.4  # three held answers, no sleep of its own between them
    assert pacer.has_fresh_permit(1)


async def test_a_refusal_that_did_not_wait_is_asked_again_later_not_at_once(
    fake_shardman: FakeShardman,
) -> None:
    fake_shardman.script("/identify/permit", (200, {**NOT_YET, "retry_after": 0}), (200, GRANTED))
    async with client(fake_shardman) as shardman:
        await pacer_for(shardman, []).acquire(1, wait=10)
    first, second = fake_shardman.requests("/identify/permit")
    assert second.at - first.at >= 0.8  # about a second (±20 %), as a /connect that did not wait


async def test_the_identify_goes_at_once_on_a_fresh_permit_and_asks_again_on_a_stale_one(
    fake_shardman: FakeShardman, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_shardman.script("/identify/permit", (200, GRANTED))
    async with client(fake_shardman) as shardman:
        pacer = pacer_for(shardman, [])
        await pacer.acquire(1)
        await pacer.wait(1)  # the permit `acquire` got: no new ask
        assert len(fake_shardman.requests("/identify/permit")) == 1
        assert not pacer.has_fresh_permit(1)  # used up by that IDENTIFY

        await pacer.acquire(1)
        monkeypatch.setattr(pacer_module, "PERMIT_FRESH_FOR", 0.1)
        await asyncio.sleep(0.2)  # the server's hold may be over: not safe to use
        await pacer.wait(1)
        asks = fake_shardman.requests("/identify/permit")
        assert len(asks) == 3
        assert asks[-1].body["wait"] == pacer_module.OPEN_SOCKET_PERMIT_WAIT


@pytest.mark.parametrize(("status", "reason"), [(404, Release.LOST), (401, Release.RETIRED)])
async def test_a_permit_for_a_gone_or_retired_session_releases_the_claim_and_never_returns(
    fake_shardman: FakeShardman, status: int, reason: Release
) -> None:
    fake_shardman.script("/identify/permit", (status, {"detail": "x"}))
    released: list[Release] = []
    async with client(fake_shardman) as shardman:
        waiting = asyncio.ensure_future(pacer_for(shardman, released).wait(1))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        waiting.cancel()
    assert released == [reason]


async def test_a_sent_identify_is_confirmed_for_its_shard(fake_shardman: FakeShardman) -> None:
    fake_shardman.script("/identify/confirm", (200, {"confirmed": True}))
    async with client(fake_shardman) as shardman:
        pacer_for(shardman, []).sent(1)
        deadline = time.monotonic() + 2
        while not fake_shardman.requests("/identify/confirm"):
            assert time.monotonic() < deadline, "no confirm"
            await asyncio.sleep(0.02)
    assert [c.body for c in fake_shardman.requests("/identify/confirm")] == [
        {"session_id": "sess-1", "shard_id": 1}
    ]


async def test_a_confirm_for_a_gone_session_releases_the_claim(fake_shardman: FakeShardman) -> None:
    fake_shardman.script("/identify/confirm", (404, {"detail": "Session Not Found"}))
    released: list[Release] = []
    async with client(fake_shardman) as shardman:
        pacer_for(shardman, released).sent(1)
        deadline = time.monotonic() + 2
        while not released:
            assert time.monotonic() < deadline, "not released"
            await asyncio.sleep(0.02)
    assert released == [Release.LOST]
