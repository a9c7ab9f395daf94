"""The hikari adapter with real hikari (in .venv-hikari), a scripted shardman and the stand-in Discord."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from conftest import FakeShardman, claim_json
from standin_discord import StandinDiscord
from test_runner import beats_of, shardman_for

hikari = pytest.importorskip("hikari")  # only .venv-hikari has hikari: see requirements-hikari.txt

from shardman_client import ClaimEvent, Release, ResumeData  # noqa: E402
from shardman_client.hikari import run_bot  # noqa: E402

#: hikari reads the bot id from a token's first part (base64) and refuses a token without one.
TOKEN = "MTEwMDAwMDAwMDAwMDAwMDAwMQ.stand-in.token"


@pytest.fixture
async def standin() -> AsyncIterator[StandinDiscord]:
    discord = StandinDiscord(token=TOKEN)
    await discord.start()
    yield discord
    await discord.stop()


def make_bot(standin: StandinDiscord, token: str = TOKEN) -> Callable[[], Any]:
    def factory() -> Any:
        return hikari.GatewayBot(token, banner=None, logs=None, rest_url=standin.api_base)

    return factory


def beat_answer(**fields: Any) -> tuple[int, dict[str, Any]]:
    return (200, {"shard_id": 0, "max_shards": 2, "generation": 1, "state": "active", **fields})


def serve_one_claim(fake: FakeShardman) -> None:
    """shardman as a one-shard bot meets it: permits granted, one claim of shard 0, beats answered,
    the claim taken back."""
    fake.grant_permits()
    fake.script("/connect", (200, claim_json()))
    fake.script("/beat", beat_answer())
    fake.script("/disconnect", (204, None))


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def closing_itself_when_ready(standin: StandinDiscord) -> Callable[[], Any]:
    """A bot that calls its own `close()` once its shard is READY."""

    def factory() -> Any:
        bot = make_bot(standin)()
        closing: list[asyncio.Task[None]] = []

        async def close_when_ready(_: Any) -> None:
            closing.append(asyncio.ensure_future(bot.close()))

        bot.subscribe(hikari.ShardReadyEvent, close_when_ready)
        return bot

    return factory


class Running:
    """`run_bot` in the background, with its claim lines."""

    def __init__(
        self,
        fake: FakeShardman,
        standin: StandinDiscord,
        token: str = TOKEN,
        factory: Callable[[], Any] | None = None,
    ) -> None:
        self.stop = asyncio.Event()
        self.events: list[ClaimEvent] = []
        self.shardman = shardman_for(fake)
        self.task = asyncio.ensure_future(
            run_bot(
                factory or make_bot(standin, token),
                shardman=self.shardman,
                stop=self.stop,
                on_event=self.events.append,
                compression=None,
            )
        )

    async def end(self) -> Release:
        self.stop.set()
        try:
            return await asyncio.wait_for(self.task, 15)
        finally:
            await self.shardman.close()


async def test_each_identify_waits_for_its_permit_is_confirmed_on_ready_and_a_sigterm_hands_over(
    fake_shardman: FakeShardman, standin: StandinDiscord
) -> None:
    standin.max_concurrency = 2
    fake_shardman.grant_permits(buckets=2)
    fake_shardman.script(
        "/connect", (200, claim_json(shard_ids=[0, 1], sleep_durations=[0, 0], resumes=[None, None]))
    )
    fake_shardman.script("/beat", beat_answer())
    fake_shardman.script("/disconnect", (204, None))
    run = Running(fake_shardman, standin)
    await until(lambda: len(standin.of("ready")) == 2, 20, "both shards READY")
    await until(lambda: len(fake_shardman.requests("/identify/confirm")) == 2, 5, "both IDENTIFYs confirmed")
    assert standin.of("too_early") == []
    permits = fake_shardman.requests("/identify/permit")
    for identify in standin.of("identify"):
        assert identify.shard is not None
        shard_id = identify.shard[0]
        asked = [p for p in permits if p.body["shard_id"] == shard_id]
        assert len(asked) == 1
        assert asked[0].at < identify.at, f"shard {shard_id} IDENTIFYed before its permit"
        confirms = fake_shardman.requests("/identify/confirm")
        (confirm,) = [c for c in confirms if c.body["shard_id"] == shard_id]
        (ready,) = [r for r in standin.of("ready") if r.shard == identify.shard]
        assert confirm.at >= ready.at, "confirmed before READY"

    assert await run.end() is Release.SHUTDOWN
    assert [(e.event, e.reason) for e in run.events] == [("claimed", None), ("released", Release.SHUTDOWN)]
    # Both sockets closed resumably (hikari's own close sends 1001), and stayed closed.
    closes = standin.of("close")
    assert [c.code for c in closes if c.shard is not None] == [4000, 4000]
    assert len(standin.of("identify")) == 2
    assert standin.of("resume") == []
    # The last beat hands each shard's resume data to shardman, then /disconnect.
    last = beats_of(fake_shardman, "sess-1")[-1].body
    resumes = {r["shard_id"]: r["resume"] for r in last["shards"]}
    assert sorted(resumes) == [0, 1]
    assert all(r["session_id"] in standin.sessions and r["sequence"] == 1 for r in resumes.values())
    assert [s["guild_count"] for s in last["shards"]] == [0, 0]  # READY's guilds (the stand-in has none)
    assert fake_shardman.requests("/disconnect")[-1].at > beats_of(fake_shardman, "sess-1")[-1].at


async def test_a_claim_with_resume_data_resumes_without_a_permit_and_a_beat_reconnect_resumes_again(
    fake_shardman: FakeShardman, standin: StandinDiscord
) -> None:
    # A session of shard 0 the previous holder left behind (resumable: closed with 4000).
    serve_one_claim(fake_shardman)
    first = Running(fake_shardman, standin)
    await until(lambda: len(standin.of("ready")) == 1, 20, "shard 0 READY")
    await first.end()
    (session_id,) = standin.sessions
    handed = ResumeData(session_id, 1, f"{standin.gateway_url}/resume").to_json()

    fake_shardman.seen.clear()
    fake_shardman.script("/connect", (200, claim_json(session_id="sess-2", resume=handed, resumes=[handed])))
    # The second beat names shard 0: shardman saw it fall silent.
    fake_shardman.script("/beat", beat_answer(), beat_answer(reconnect=[0]), beat_answer())
    second = Running(fake_shardman, standin)
    await until(lambda: len(standin.of("resumed")) == 1, 10, "shard 0 RESUMED")
    await until(lambda: len(standin.of("resumed")) == 2, 10, "shard 0 RESUMED again on the beat's reconnect")
    assert await second.end() is Release.SHUTDOWN
    assert len(standin.of("identify")) == 1, "a shard handed over with its session was IDENTIFYed anew"
    assert fake_shardman.requests("/identify/permit") == []
    assert [e.shard for e in standin.of("resume")] == [(0, 2), (0, 2)]
    # Its READY went to the first holder: no guild count (shardman keeps that holder's).
    assert all("guild_count" not in s for b in beats_of(fake_shardman, "sess-2") for s in b.body["shards"])


async def test_a_lost_session_stops_the_shards_at_once_and_claims_again(
    fake_shardman: FakeShardman, standin: StandinDiscord
) -> None:
    fake_shardman.grant_permits()
    fake_shardman.script("/connect", (200, claim_json()), (401, {"detail": "No Shards Available"}))
    fake_shardman.script("/beat", beat_answer(), (404, {"detail": "Not Found"}))
    run = Running(fake_shardman, standin)
    await until(lambda: any(e.event == "released" for e in run.events), 20, "the claim released")
    assert run.events[-1].reason is Release.LOST
    await until(lambda: standin.live == {}, 3, "shard 0 off the gateway")
    assert [c.code for c in standin.of("close")] == [4000]
    await until(lambda: len(fake_shardman.requests("/connect")) >= 2, 3, "a new claim asked for")
    await run.end()
    assert len(standin.of("identify")) == 1  # and it did not come back


async def test_a_token_the_gateway_refuses_fails_the_claim_and_raises(
    fake_shardman: FakeShardman, standin: StandinDiscord
) -> None:
    serve_one_claim(fake_shardman)
    run = Running(fake_shardman, standin, token="MTEwMDAwMDAwMDAwMDAwMDAwMQ.wrong.token")
    with pytest.raises(hikari.GatewayServerClosedConnectionError):
        await asyncio.wait_for(asyncio.shield(run.task), 20)
    assert [(e.event, e.reason) for e in run.events] == [("claimed", None), ("released", Release.FAILED)]
    assert fake_shardman.requests("/disconnect")  # given back
    await run.shardman.close()


async def test_the_bots_own_close_ends_the_run_and_hands_the_session_over_resumably(
    fake_shardman: FakeShardman, standin: StandinDiscord
) -> None:
    serve_one_claim(fake_shardman)
    run = Running(fake_shardman, standin, factory=closing_itself_when_ready(standin))
    assert await asyncio.wait_for(asyncio.shield(run.task), 15) is Release.SHUTDOWN
    await run.shardman.close()
    assert [(e.event, e.reason) for e in run.events] == [("claimed", None), ("released", Release.SHUTDOWN)]
    assert [c.code for c in standin.of("close")] == [4000]  # not hikari's 1001
    last = beats_of(fake_shardman, "sess-1")[-1].body
    assert last["shards"][0]["resume"]["session_id"] in standin.sessions
    assert fake_shardman.requests("/disconnect")


async def test_a_claim_is_given_back_while_its_bot_is_still_closing_and_the_run_waits_for_the_close(
    fake_shardman: FakeShardman, standin: StandinDiscord
) -> None:
    serve_one_claim(fake_shardman)
    stopped: list[float] = []

    def slow_to_close() -> Any:
        bot = make_bot(standin)()

        async def linger(_: Any) -> None:  # hikari awaits StoppingEvent listeners in close()
            await asyncio.sleep(1.0)

        async def record(_: Any) -> None:
            stopped.append(time.monotonic())

        bot.subscribe(hikari.StoppingEvent, linger)
        bot.subscribe(hikari.StoppedEvent, record)
        return bot

    run = Running(fake_shardman, standin, factory=slow_to_close)
    await until(lambda: len(standin.of("ready")) == 1, 15, "shard 0 READY")
    assert await run.end() is Release.SHUTDOWN
    # The next holder's RESUME waits for /disconnect, not for the rest of hikari's close.
    (disconnect,) = fake_shardman.requests("/disconnect")
    assert len(stopped) == 1, "run_bot returns once the bot has closed"
    assert disconnect.at < stopped[0] - 0.5


async def test_a_session_discord_refuses_to_resume_is_identified_anew_with_a_permit(
    fake_shardman: FakeShardman, standin: StandinDiscord
) -> None:
    fake_shardman.grant_permits()
    gone = ResumeData("ended-long-ago", 7, f"{standin.gateway_url}/resume").to_json()
    fake_shardman.script("/connect", (200, claim_json(resume=gone, resumes=[gone])))
    fake_shardman.script("/beat", beat_answer())
    fake_shardman.script("/disconnect", (204, None))
    run = Running(fake_shardman, standin)
    await until(lambda: len(standin.of("ready")) == 1, 15, "shard 0 READY after the refused RESUME")
    (resume,) = standin.of("resume")
    (permit,) = fake_shardman.requests("/identify/permit")
    (identify,) = standin.of("identify")
    assert resume.at < permit.at < identify.at
    assert await run.end() is Release.SHUTDOWN
