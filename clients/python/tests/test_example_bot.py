"""examples/bot.py in a real process with real discord.py, against shardman and the stand-in Discord."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import PACKAGE, SECRET, TOKEN, FakeShardman, Seen, StartShardman, claim_json
from standin_discord import StandinDiscord

from shardman_client import ShardmanClient

BOT = PACKAGE / "examples" / "bot.py"


@dataclass
class Bot:
    process: asyncio.subprocess.Process
    log: Path
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    async def next_event(self, timeout: float = 20) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self.events.get(), timeout)
        except asyncio.TimeoutError:
            pytest.fail(f"no event from the bot within {timeout}s; its log:\n{self.log.read_text()[-4000:]}")

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    async def exit_code(self, timeout: float = 15) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)


@pytest.fixture
async def start_bot(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Bot]]]:
    bots: list[Bot] = []

    async def start(shardman_url: str, api_base: str, token: str = TOKEN) -> Bot:
        log = tmp_path / f"bot{len(bots)}.log"
        env = {
            **os.environ,
            "SHARDMAN_URL": shardman_url,
            "SHARDMAN_SECRET": SECRET,
            "DISCORD_TOKEN": token,
            "DISCORD_API_BASE": api_base,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(BOT), env=env, stdout=asyncio.subprocess.PIPE, stderr=log.open("w")
        )
        bot = Bot(process, log)

        async def read() -> None:
            assert process.stdout is not None
            async for line in process.stdout:
                bot.events.put_nowait(json.loads(line))  # stdout carries JSON lines only

        bot.reader = asyncio.ensure_future(read())  # type: ignore[attr-defined]
        bots.append(bot)
        return bot

    yield start
    for bot in bots:
        if bot.process.returncode is None:
            bot.process.kill()
            await bot.process.wait()


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


StartBot = Callable[..., Awaitable[Bot]]


async def test_a_group_bot_identifies_each_shard_in_its_own_slot_beats_and_shuts_down_on_sigterm(
    start_shardman: StartShardman, standin: StandinDiscord, start_bot: StartBot
) -> None:
    shardman = await start_shardman(
        MAX_SHARDS="2", SHARDS_PER_PROCESS="2", BOT_TOKEN=TOKEN, DISCORD_API_BASE=standin.api_base
    )
    bot = await start_bot(shardman.url, standin.api_base)
    assert await bot.next_event() == {
        "event": "claimed",
        "shard_ids": [0, 1],
        "shard_count": 2,
        "generation": 1,
        "state": "active",
    }
    await until(lambda: len(standin.of("ready")) == 2, 20, "both shards READY")
    first, second = standin.of("identify")
    assert [first.shard, second.shard] == [(0, 2), (1, 2)]
    assert second.at - first.at >= 5.0
    assert standin.of("too_early") == []

    async def latencies_reported() -> bool:
        return all(s["latency"] is not None for s in (await shardman.status())["shards"])

    deadline = time.monotonic() + 10
    while not await latencies_reported():
        assert time.monotonic() < deadline, "beats never reported both shards' latency"
        await asyncio.sleep(0.2)
    # The beats carry the process's figures, filed under the label the bot connected with.
    (process,) = (await shardman.status())["processes"]
    assert process["process"] == f"{socket.gethostname()}:{bot.process.pid}"
    assert process["shard_ids"] == [0, 1]
    assert process["rss_bytes"] > 1024 * 1024

    bot.signal(signal.SIGTERM)
    assert await bot.next_event() == {
        "event": "released",
        "shard_ids": [0, 1],
        "shard_count": 2,
        "generation": 1,
        "reason": "shutdown",
    }
    assert await bot.exit_code() == 0
    assert {(e.shard, e.code) for e in standin.of("close")} == {((0, 2), 4000), ((1, 2), 4000)}  # resumable
    assert (await shardman.status())["shards"] == []  # given back, not left to expire


async def test_a_bot_stopped_past_its_lease_leaves_the_gateway_within_a_second_of_waking_and_claims_again(
    start_shardman: StartShardman, standin: StandinDiscord, start_bot: StartBot
) -> None:
    shardman = await start_shardman(
        MAX_SHARDS="1", MAX_SECONDS="3", BOT_TOKEN=TOKEN, DISCORD_API_BASE=standin.api_base
    )
    bot = await start_bot(shardman.url, standin.api_base)
    assert (await bot.next_event())["event"] == "claimed"
    await until(lambda: len(standin.of("ready")) == 1, 15, "READY")

    bot.signal(signal.SIGSTOP)
    await asyncio.sleep(4.5)  # past the 3 s lease
    bot.signal(signal.SIGCONT)
    woke = time.monotonic()
    released = await bot.next_event(timeout=5)
    assert released["reason"] == "lapsed"
    await until(lambda: len(standin.of("close")) == 1, 2, "the gateway connection to close")
    left_after = standin.of("close")[0].at - woke
    print(f"gateway connection closed {left_after:.3f}s after SIGCONT")  # measured, shown with -s
    assert left_after < 1.5

    # the shard was free again, so the same process claims it anew and identifies once more
    assert (await bot.next_event())["event"] == "claimed"
    await until(lambda: len(standin.of("ready")) == 2, 15, "READY of the new claim")
    assert standin.of("too_early") == []
    bot.signal(signal.SIGTERM)
    assert (await bot.next_event())["reason"] == "shutdown"
    assert await bot.exit_code() == 0


async def test_a_bot_of_a_retired_generation_releases_and_exits_zero(
    start_shardman: StartShardman, standin: StandinDiscord, start_bot: StartBot
) -> None:
    shardman = await start_shardman(MAX_SHARDS="1", BOT_TOKEN=TOKEN, DISCORD_API_BASE=standin.api_base)
    bot = await start_bot(shardman.url, standin.api_base)
    assert (await bot.next_event())["generation"] == 1
    await until(lambda: len(standin.of("ready")) == 1, 15, "READY")

    status, plan = await shardman.post("/reshard", {"max_shards": 2})
    assert status == 202, plan
    async with ShardmanClient(shardman.url, SECRET) as c:
        new = [await c.connect(), await c.connect()]
        for claim in new:
            await c.beat(claim.session_id)  # the last one switches generation 2 to active

    released = await bot.next_event(timeout=10)
    assert released == {
        "event": "released",
        "shard_ids": [0],
        "shard_count": 1,
        "generation": 1,
        "reason": "retired",
    }
    assert await bot.exit_code() == 0
    assert (standin.of("close")[0].shard, standin.of("close")[0].code) == ((0, 1), 1000)  # the session ends


async def test_an_invalidated_session_identifies_again_only_with_a_permit_from_shardman(
    start_shardman: StartShardman, standin: StandinDiscord, start_bot: StartBot
) -> None:
    shardman = await start_shardman(MAX_SHARDS="1", BOT_TOKEN=TOKEN, DISCORD_API_BASE=standin.api_base)
    bot = await start_bot(shardman.url, standin.api_base)
    assert (await bot.next_event())["event"] == "claimed"
    await until(lambda: len(standin.of("ready")) == 1, 15, "READY")
    await standin.invalidate((0, 1))
    await until(lambda: len(standin.of("ready")) == 2, 15, "READY after the invalid session")
    first, second = standin.of("identify")
    assert second.at - first.at >= 5.0  # shardman's permit, not discord.py's own 5 s guess
    assert standin.of("too_early") == []
    assert bot.log.read_text().count("shard 0: IDENTIFY permit after") == 2
    bot.signal(signal.SIGTERM)
    assert (await bot.next_event())["reason"] == "shutdown"
    assert await bot.exit_code() == 0


async def test_a_beat_answered_404_releases_as_lost_and_claims_anew(
    fake_shardman: FakeShardman, standin: StandinDiscord, start_bot: StartBot
) -> None:
    fake_shardman.script(
        "/connect",
        (
            200,
            claim_json(
                session_id="first", gateway_url=standin.gateway_url, lease_seconds=30, beat_interval=0.5
            ),
        ),
        # a shardman without BOT_TOKEN answers no gateway_url: the bot asks Discord's REST /gateway
        (200, claim_json(session_id="second", gateway_url=None, generation=3, sleep_durations=[5.5])),
    )
    representation = {"shard_id": 0, "max_shards": 2, "generation": 1, "state": "active", "fence": 7}
    # 404 on the fifth beat, about 2 s in: after the first claim's IDENTIFY (1 s after its slot)
    beats = [(200, representation)] * 4 + [(404, {"detail": "Session Not Found"}), (204, None)]
    fake_shardman.script("/beat", *beats)
    fake_shardman.script("/disconnect", (204, None))
    fake_shardman.grant_permits()
    bot = await start_bot(fake_shardman.url, standin.api_base)
    assert (await bot.next_event())["event"] == "claimed"
    lost = await bot.next_event()
    assert lost["reason"] == "lost"
    claimed = await bot.next_event()
    assert (claimed["event"], claimed["generation"]) == ("claimed", 3)
    await until(lambda: len(standin.of("ready")) == 2, 15, "READY of the second claim")
    assert standin.of("too_early") == []
    bot.signal(signal.SIGTERM)
    assert (await bot.next_event())["reason"] == "shutdown"
    assert await bot.exit_code() == 0
    sent = [s.body["session_id"] for s in fake_shardman.requests("/beat")]
    assert sent[:5] == ["first"] * 5
    assert set(sent[5:]) == {"second"}  # the lost session id is never beaten again
    assert [s.body for s in fake_shardman.requests("/disconnect")] == [{"session_id": "second"}]


async def test_a_woken_process_never_beats_its_lapsed_session_again(
    fake_shardman: FakeShardman, standin: StandinDiscord, start_bot: StartBot
) -> None:
    fake_shardman.script(
        "/connect",
        (
            200,
            claim_json(session_id="old", gateway_url=standin.gateway_url, lease_seconds=2, beat_interval=0.3),
        ),
        (200, claim_json(session_id="new", gateway_url=standin.gateway_url, sleep_durations=[5.5])),
    )
    fake_shardman.script("/beat", (204, None))
    fake_shardman.script("/disconnect", (204, None))
    fake_shardman.grant_permits()
    bot = await start_bot(fake_shardman.url, standin.api_base)
    assert (await bot.next_event())["event"] == "claimed"
    await until(lambda: len(standin.of("ready")) == 1, 15, "READY")
    await until(lambda: len(fake_shardman.requests("/beat")) >= 2, 5, "beats")

    bot.signal(signal.SIGSTOP)
    await asyncio.sleep(3)
    woke = time.monotonic()
    bot.signal(signal.SIGCONT)
    assert (await bot.next_event(timeout=5))["reason"] == "lapsed"
    assert (await bot.next_event())["event"] == "claimed"
    await until(
        lambda: any(s.body["session_id"] == "new" for s in fake_shardman.requests("/beat")), 5, "a beat"
    )
    bot.signal(signal.SIGTERM)
    assert (await bot.next_event())["reason"] == "shutdown"
    assert await bot.exit_code() == 0
    old_beats = [s.at for s in fake_shardman.requests("/beat") if s.body["session_id"] == "old"]
    assert max(old_beats) < woke
    assert [s.body["session_id"] for s in fake_shardman.requests("/disconnect")] == ["new"]


async def test_a_standby_claim_runs_normally_and_logs_its_switch_to_active(
    fake_shardman: FakeShardman, standin: StandinDiscord, start_bot: StartBot
) -> None:
    fake_shardman.script(
        "/connect", (200, claim_json(gateway_url=standin.gateway_url, generation=2, state="standby"))
    )
    answer = {"shard_id": 0, "max_shards": 2, "generation": 2, "fence": 7}
    fake_shardman.script("/beat", (200, {**answer, "state": "standby"}), (200, {**answer, "state": "active"}))
    fake_shardman.script("/disconnect", (204, None))
    fake_shardman.grant_permits()
    bot = await start_bot(fake_shardman.url, standin.api_base)
    assert (await bot.next_event())["generation"] == 2
    await until(lambda: len(standin.of("ready")) == 1, 15, "READY")
    await until(lambda: "generation 2 is now active (was standby)" in bot.log.read_text(), 10, "the switch")
    bot.signal(signal.SIGTERM)
    assert (await bot.next_event())["reason"] == "shutdown"
    assert await bot.exit_code() == 0


async def test_sigterm_while_waiting_for_the_identify_permit_gives_the_claim_back_without_identifying(
    fake_shardman: FakeShardman, standin: StandinDiscord, start_bot: StartBot
) -> None:
    fake_shardman.script("/connect", (200, claim_json(gateway_url=standin.gateway_url, lease_seconds=6)))
    fake_shardman.script("/beat", (204, None))
    fake_shardman.script("/disconnect", (204, None))
    # the bucket stays busy: each permit request is held 6 s (more than half its wait) and refused
    fake_shardman.script("/identify/permit", (200, {"permit": False, "shard_id": 0, "retry_after": 1.0}))
    fake_shardman.holds["/identify/permit"] = 6.0
    bot = await start_bot(fake_shardman.url, standin.api_base)
    assert (await bot.next_event())["event"] == "claimed"
    await until(lambda: len(fake_shardman.requests("/beat")) >= 3, 10, "beats while waiting for a permit")
    assert len(fake_shardman.requests("/identify/permit")) >= 1
    assert fake_shardman.requests("/connect")[0].query["identify"] == "permit"
    bot.signal(signal.SIGTERM)
    assert (await bot.next_event())["reason"] == "shutdown"
    assert await bot.exit_code(timeout=5) == 0
    assert standin.of("identify") == []
    assert len(fake_shardman.requests("/disconnect")) == 1


async def test_a_spare_takes_over_the_shard_of_a_killed_holder_identifying_with_a_permit(
    start_shardman: StartShardman, standin: StandinDiscord, start_bot: StartBot
) -> None:
    shardman = await start_shardman(
        MAX_SHARDS="1", MAX_SECONDS="3", BOT_TOKEN=TOKEN, DISCORD_API_BASE=standin.api_base
    )
    holder = await start_bot(shardman.url, standin.api_base)
    assert (await holder.next_event())["event"] == "claimed"
    await until(lambda: len(standin.of("ready")) == 1, 15, "READY of the holder")
    spare = await start_bot(shardman.url, standin.api_base)
    await asyncio.sleep(2.5)  # the holder beats its resume data; the spare keeps asking
    assert spare.events.empty()

    holder.signal(signal.SIGKILL)
    killed = time.monotonic()
    assert (await spare.next_event())["event"] == "claimed"
    await until(lambda: len(standin.of("ready")) == 2, 15, "READY of the spare")
    print(f"kill -9 to the spare's READY: {standin.of('ready')[1].at - killed:.2f}s")  # shown with -s
    # shardman handed the spare the holder's resume data; discord.py cannot RESUME on start, so the
    # spare took a permit instead of identifying inside the bucket's 5 s
    assert "IDENTIFY permit after" in spare.log.read_text()
    assert standin.of("too_early") == []
    spare.signal(signal.SIGTERM)
    assert (await spare.next_event())["reason"] == "shutdown"


async def test_a_bot_with_a_bad_token_gives_its_claim_back_and_exits_non_zero(
    fake_shardman: FakeShardman, standin: StandinDiscord, start_bot: StartBot
) -> None:
    fake_shardman.script("/connect", (200, claim_json(gateway_url=standin.gateway_url)))
    fake_shardman.script("/beat", (204, None))
    fake_shardman.script("/disconnect", (204, None))
    fake_shardman.grant_permits()
    bot = await start_bot(fake_shardman.url, standin.api_base, token="wrong")
    assert (await bot.next_event())["event"] == "claimed"
    assert (await bot.next_event())["reason"] == "failed"
    assert await bot.exit_code() != 0
    assert "LoginFailure" in bot.log.read_text()
    assert [s.body for s in fake_shardman.requests("/disconnect")] == [{"session_id": "sess-1"}]
    assert fake_shardman.requests("/beat")[-1].at <= fake_shardman.requests("/disconnect")[0].at


async def test_sigterm_closes_the_shards_resumably_and_beats_their_last_resume_data_before_disconnecting(
    fake_shardman: FakeShardman, standin: StandinDiscord, start_bot: StartBot
) -> None:
    # One beat at the claim, the next only after 20 s: any beat with resume data is the last one.
    fake_shardman.script(
        "/connect",
        (
            200,
            claim_json(
                shard_ids=[0, 1],
                max_shards=2,
                sleep_durations=[0, 0],
                resumes=[None, None],
                gateway_url=standin.gateway_url,
                lease_seconds=60,
                beat_interval=20,
            ),
        ),
    )
    fake_shardman.script("/beat", (204, None))
    fake_shardman.script("/disconnect", (204, None))
    fake_shardman.grant_permits(buckets=2)
    standin.max_concurrency = 2
    bot = await start_bot(fake_shardman.url, standin.api_base)
    assert (await bot.next_event())["event"] == "claimed"
    await until(lambda: len(standin.of("ready")) == 2, 15, "both shards READY")
    await standin.dispatch((1, 2), "GUILD_UPDATE", {"id": "1"})  # shard 1 is at sequence 2 now
    await asyncio.sleep(0.5)
    bot.signal(signal.SIGTERM)
    assert (await bot.next_event())["reason"] == "shutdown"
    assert await bot.exit_code() == 0

    assert sorted((e.shard, e.code) for e in standin.of("close")) == [((0, 2), 4000), ((1, 2), 4000)]
    beats = fake_shardman.requests("/beat")
    assert len(beats) == 2, [b.body for b in beats]
    last = beats[-1]
    sessions = {shard: f"s{e.connection}" for e in standin.of("identify") if (shard := e.shard) is not None}
    resume_url = f"{standin.gateway_url}/resume"
    assert [s.get("resume") for s in last.body["shards"]] == [
        {"session_id": sessions[(0, 2)], "sequence": 1, "resume_gateway_url": resume_url},
        {"session_id": sessions[(1, 2)], "sequence": 2, "resume_gateway_url": resume_url},
    ]
    (disconnect,) = fake_shardman.requests("/disconnect")
    assert last.at < disconnect.at
    assert max(e.at for e in standin.of("close")) < last.at  # closed first, so the sequence is the last
    # each IDENTIFY was confirmed for its shard, and only once it had reached the gateway
    identified = {e.shard[0]: e.at for e in standin.of("identify") if e.shard is not None}
    confirms = {c.body["shard_id"]: c.at for c in fake_shardman.requests("/identify/confirm")}
    assert confirms.keys() == identified.keys() == {0, 1}
    assert all(identified[shard] <= confirms[shard] for shard in confirms)


async def test_placed_by_load_the_bot_runs_a_client_per_claim_resumes_a_silent_shard_and_hands_one_over(
    fake_shardman: FakeShardman, standin: StandinDiscord, start_bot: StartBot
) -> None:
    def load_claim(session_id: str, shard_id: int) -> dict[str, Any]:
        return claim_json(
            session_id=session_id,
            shard_id=shard_id,
            shard_ids=[shard_id],
            gateway_url=standin.gateway_url,
            placement="load",
            lease_seconds=30,
            beat_interval=0.5,
        )

    fake_shardman.script(
        "/connect",
        (200, load_claim("a", 0)),
        (200, load_claim("b", 1)),
        (401, {"detail": "No Shards Available"}),
    )
    moves = {"hand_over_a": False, "reconnect_b": False}

    def beat(seen: Seen) -> tuple[int, Any]:
        shard = {"a": 0, "b": 1}[seen.body["session_id"]]
        answer = {"shard_id": shard, "max_shards": 2, "generation": 1, "state": "active", "fence": 7}
        return 200, {
            **answer,
            "hand_over": shard == 0 and moves["hand_over_a"],
            "reconnect": [1] if shard == 1 and moves["reconnect_b"] else [],
        }

    fake_shardman.answers["/beat"] = beat
    fake_shardman.script("/disconnect", (204, None))
    fake_shardman.grant_permits(buckets=2)
    standin.max_concurrency = 2
    bot = await start_bot(fake_shardman.url, standin.api_base)
    assert [(await bot.next_event())["shard_ids"] for _ in range(2)] == [[0], [1]]
    await until(lambda: len(standin.of("ready")) == 2, 15, "both claims' shards READY")

    # shardman saw shard 1 fall silent: its socket closes resumably and discord.py RESUMEs it
    moves["reconnect_b"] = True
    await until(lambda: len(standin.of("resumed")) == 1, 10, "shard 1 RESUMEd")
    moves["reconnect_b"] = False
    assert standin.of("resumed")[0].shard == (1, 2)

    # placement moves shard 0: only its claim ends, given back with the sequence it last received
    moves["hand_over_a"] = True
    released = await bot.next_event()
    assert (released["shard_ids"], released["reason"]) == ([0], "handed_over")
    await until(lambda: len(fake_shardman.requests("/disconnect")) == 1, 5, "the handover's /disconnect")
    (a_closed,) = [e for e in standin.of("close") if e.shard == (0, 2)]
    assert a_closed.code == 4000
    a_beats = [b for b in fake_shardman.requests("/beat") if b.body["session_id"] == "a"]
    assert a_beats[-1].body["shards"][0]["resume"]["session_id"] == f"s{a_closed.connection}"
    assert a_beats[-1].at < fake_shardman.requests("/disconnect")[0].at
    # the other claim goes on, on its resumed connection
    resumed_b = standin.of("resumed")[0].connection
    assert all(e.connection != resumed_b for e in standin.of("close"))
    assert bot.process.returncode is None

    bot.signal(signal.SIGTERM)
    assert (await bot.next_event())["reason"] == "shutdown"
    assert await bot.exit_code() == 0
    assert [d.body for d in fake_shardman.requests("/disconnect")] == [
        {"session_id": "a"},
        {"session_id": "b"},
    ]
    assert standin.of("too_early") == []


async def test_placed_by_load_one_bot_runs_every_shard_real_shardman_gives_it_and_gives_them_back(
    start_shardman: StartShardman, standin: StandinDiscord, start_bot: StartBot
) -> None:
    shardman = await start_shardman(
        MAX_SHARDS="2", SHARDS_PER_PROCESS="auto", BOT_TOKEN=TOKEN, DISCORD_API_BASE=standin.api_base
    )
    bot = await start_bot(shardman.url, standin.api_base)
    claimed = [await bot.next_event() for _ in range(2)]
    assert sorted(tuple(e["shard_ids"]) for e in claimed) == [(0,), (1,)]  # one claim per shard
    await until(lambda: len(standin.of("ready")) == 2, 20, "both shards READY")
    first, second = standin.of("identify")
    assert second.at - first.at >= 5.0  # one bucket: the permits keep Discord's 5 s
    assert len((await shardman.status())["shards"]) == 2

    bot.signal(signal.SIGTERM)
    released = [await bot.next_event() for _ in range(2)]
    assert {e["reason"] for e in released} == {"shutdown"}
    assert await bot.exit_code() == 0
    assert sorted((e.shard, e.code) for e in standin.of("close")) == [((0, 2), 4000), ((1, 2), 4000)]
    assert (await shardman.status())["shards"] == []  # both given back
