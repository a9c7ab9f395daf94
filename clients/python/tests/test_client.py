"""The core client against a scripted shardman: answers, errors, retries and the lease view."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

import pytest
from conftest import SECRET, FakeShardman, claim_json

from shardman_client import (
    Backoff,
    BadSecret,
    Claim,
    LeaseView,
    NoShardsAvailable,
    ResumeData,
    Retired,
    SessionLost,
    ShardmanClient,
    ShardReport,
    Unavailable,
)
from shardman_client.usage import cpu_seconds, default_process_label, rss_bytes

FAST = Backoff(initial=0.05, cap=0.2, jitter=0.0)


def client(fake: FakeShardman, **kwargs: object) -> ShardmanClient:
    return ShardmanClient(fake.url, SECRET, backoff=FAST, **kwargs)  # type: ignore[arg-type]


async def test_connect_answers_a_typed_claim_of_the_whole_group(fake_shardman: FakeShardman) -> None:
    resume = {"session_id": "d1", "sequence": 42, "resume_gateway_url": "wss://r"}
    fake_shardman.script(
        "/connect",
        (
            200,
            claim_json(
                shard_ids=[2, 3],
                max_shards=4,
                sleep_durations=[0.0, 5.25],
                resumes=[resume, None],
                gateway_url="wss://g",
            ),
        ),
    )
    async with client(fake_shardman) as c:
        claim = await c.connect()
    assert claim.shard_ids == [2, 3]
    assert claim.shard_count == 4
    assert claim.session_id == "sess-1"
    assert (claim.generation, claim.state, claim.fence) == (1, "active", 7)
    assert claim.sleep_durations == [0.0, 5.25]
    assert claim.resumes == [ResumeData("d1", 42, "wss://r"), None]
    assert (claim.lease_seconds, claim.beat_interval, claim.gateway_url) == (6, 2.0, "wss://g")
    assert claim.requested_at <= claim.answered_at
    assert fake_shardman.requests("/connect")[0].headers["Authorization"] == SECRET


async def test_connect_waits_out_retry_after_on_503_then_claims(fake_shardman: FakeShardman) -> None:
    fake_shardman.script(
        "/connect", (503, {"detail": "Store Unavailable"}, {"Retry-After": "1"}), (200, claim_json())
    )
    async with client(fake_shardman) as c:
        claim = await c.connect()
    first, second = fake_shardman.requests("/connect")
    assert claim.session_id == "sess-1"
    assert second.at - first.at >= 0.95


async def test_connect_backs_off_exponentially_on_429_without_retry_after(
    fake_shardman: FakeShardman,
) -> None:
    fake_shardman.script(
        "/connect", (429, {"detail": "slow"}), (429, {"detail": "slow"}), (200, claim_json())
    )
    async with client(fake_shardman) as c:
        await c.connect()
    times = [s.at for s in fake_shardman.requests("/connect")]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.045  # initial 0.05
    assert times[2] - times[1] >= 0.095  # doubled


def test_backoff_is_capped_but_a_longer_retry_after_wins() -> None:
    backoff = Backoff(initial=1, cap=30, jitter=0)
    assert [backoff.delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.delay(10, retry_after=120) == 120


async def test_connect_raises_no_shards_available_on_401(fake_shardman: FakeShardman) -> None:
    fake_shardman.script("/connect", (401, {"detail": "No Shards Available"}))
    async with client(fake_shardman) as c:
        with pytest.raises(NoShardsAvailable):
            await c.connect()


async def test_claim_asks_shardman_to_wait_for_a_free_shard(fake_shardman: FakeShardman) -> None:
    fake_shardman.script("/connect", (200, claim_json()))
    async with client(fake_shardman) as c:
        await c.claim()
    assert fake_shardman.requests("/connect")[0].query["wait"] == "30"


async def test_claim_asks_again_at_once_after_a_wait_that_ran_out(fake_shardman: FakeShardman) -> None:
    fake_shardman.script("/connect", (401, {"detail": "No Shards Available"}), (200, claim_json()))
    fake_shardman.holds["/connect"] = 0.3  # shardman waited the whole wait
    async with client(fake_shardman, connect_wait=0.4) as c:
        claim = await c.claim()
    first, second = fake_shardman.requests("/connect")
    assert claim.session_id == "sess-1"
    assert second.at - first.at < 0.6


async def test_claim_asks_again_about_every_second_when_shardman_answers_401_without_waiting(
    fake_shardman: FakeShardman,
) -> None:
    fake_shardman.script("/connect", (401, {"detail": "No Shards Available"}), (200, claim_json()))
    async with client(fake_shardman) as c:
        claim = await c.claim()
    first, second = fake_shardman.requests("/connect")
    assert claim.session_id == "sess-1"
    assert 0.75 <= second.at - first.at <= 1.5


async def test_a_waiting_connect_outlasts_the_request_timeout(fake_shardman: FakeShardman) -> None:
    fake_shardman.script("/connect", (200, claim_json(waited=0.5)))
    fake_shardman.holds["/connect"] = 0.5
    async with client(fake_shardman, request_timeout=0.3) as c:
        claim = await c.connect(wait=1)
    assert fake_shardman.requests("/connect")[0].query["wait"] == "1"
    # The lease counts from the send time plus the wait shardman answered, not from the send time.
    assert claim.requested_at == pytest.approx(fake_shardman.requests("/connect")[0].at + 0.5, abs=0.1)


async def test_a_wrong_secret_raises_bad_secret_without_retrying(fake_shardman: FakeShardman) -> None:
    fake_shardman.script("/connect", (403, {"detail": "Invalid Token"}))
    async with client(fake_shardman) as c:
        with pytest.raises(BadSecret):
            await c.claim()
    assert len(fake_shardman.requests("/connect")) == 1


async def test_beat_sends_per_shard_reports_and_the_first_shard_flat(fake_shardman: FakeShardman) -> None:
    fake_shardman.script(
        "/beat", (200, {"shard_id": 0, "max_shards": 4, "generation": 2, "state": "standby", "fence": 9})
    )
    resume = ResumeData("d1", 5, "wss://r")
    async with client(fake_shardman) as c:
        before = time.monotonic()
        answer = await c.beat(
            "sess-1",
            [
                ShardReport(0, guild_count=3, latency=0.25, resume=resume, events=5),
                ShardReport(1, guild_count=0),
            ],
        )
    seen = fake_shardman.requests("/beat")[0]
    assert seen.headers["Prefer"] == "return=representation"
    assert_process_usage(seen.body)
    assert seen.body == {
        "session_id": "sess-1",
        "guild_count": 3,
        "latency": 0.25,
        "resume": {"session_id": "d1", "sequence": 5, "resume_gateway_url": "wss://r"},
        "events": 5,
        "shards": [
            {
                "shard_id": 0,
                "guild_count": 3,
                "latency": 0.25,
                "resume": {"session_id": "d1", "sequence": 5, "resume_gateway_url": "wss://r"},
                "events": 5,
            },
            {"shard_id": 1, "guild_count": 0},
        ],
        "ready": False,  # shard 1 has no Discord session yet
    }
    assert (answer.generation, answer.state, answer.shard_count, answer.fence) == (2, "standby", 4, 9)
    assert before <= answer.sent_at <= seen.at


async def test_beat_accepts_204_from_servers_without_representation(fake_shardman: FakeShardman) -> None:
    fake_shardman.script("/beat", (204, None))
    async with client(fake_shardman) as c:
        answer = await c.beat("sess-1", [ShardReport(0)])
    assert answer.state is None
    body = fake_shardman.requests("/beat")[0].body
    assert_process_usage(body)
    assert body == {
        "session_id": "sess-1",
        "shards": [{"shard_id": 0}],
        "ready": False,
    }


async def test_a_resigned_session_id_is_sent_from_the_next_request_on(fake_shardman: FakeShardman) -> None:
    fake_shardman.script("/beat", (204, None, {"Session-Id": "sess-1-resigned"}), (204, None))
    fake_shardman.script("/identify", (200, {"sleep_duration": 0.0}))
    fake_shardman.script("/disconnect", (204, None))
    async with client(fake_shardman) as c:
        await c.beat("sess-1")
        await c.beat("sess-1")
        await c.identify("sess-1")
        await c.disconnect("sess-1")
    sent = [s.body["session_id"] for s in fake_shardman.requests("/beat")]
    assert sent == ["sess-1", "sess-1-resigned"]
    assert fake_shardman.requests("/identify")[0].body["session_id"] == "sess-1-resigned"
    assert fake_shardman.requests("/disconnect")[0].body["session_id"] == "sess-1-resigned"


async def test_beat_raises_retired_on_401_and_session_lost_on_404(fake_shardman: FakeShardman) -> None:
    async with client(fake_shardman) as c:
        fake_shardman.script("/beat", (401, {"detail": "No Shards Available"}))
        with pytest.raises(Retired):
            await c.beat("sess-1")
        fake_shardman.script("/beat", (404, {"detail": "Session Not Found"}))
        with pytest.raises(SessionLost):
            await c.beat("sess-1")


async def test_beat_retries_503_only_until_its_deadline(fake_shardman: FakeShardman) -> None:
    fake_shardman.script("/beat", (503, {"detail": "Store Unavailable"}, {"Retry-After": "0.1"}))
    async with client(fake_shardman) as c:
        deadline = time.monotonic() + 0.5
        with pytest.raises(Unavailable) as raised:
            await c.beat("sess-1", retry_until=deadline)
    sent = fake_shardman.requests("/beat")
    assert raised.value.status == 503
    assert len(sent) >= 2
    assert all(s.at < deadline for s in sent)


async def test_identify_answers_the_wait_and_raises_for_lost_or_retired_sessions(
    fake_shardman: FakeShardman,
) -> None:
    async with client(fake_shardman) as c:
        fake_shardman.script("/identify", (200, {"sleep_duration": 5.25}))
        assert await c.identify("sess-1", 1) == 5.25
        assert fake_shardman.requests("/identify")[0].body == {"session_id": "sess-1", "shard_id": 1}
        fake_shardman.script("/identify", (404, {"detail": "Session Not Found"}))
        with pytest.raises(SessionLost):
            await c.identify("sess-1", 1)
        fake_shardman.script("/identify", (401, {"detail": "No Shards Available"}))
        with pytest.raises(Retired):
            await c.identify("sess-1", 1)


async def test_disconnect_gives_the_session_back(fake_shardman: FakeShardman) -> None:
    async with client(fake_shardman) as c:
        fake_shardman.script("/disconnect", (204, None))
        await c.disconnect("sess-1")
        assert fake_shardman.requests("/disconnect")[0].body == {"session_id": "sess-1"}
        fake_shardman.script("/disconnect", (404, {"detail": "Session Not Found"}))
        with pytest.raises(SessionLost):
            await c.disconnect("sess-1")


def make_claim(*, requested_at: float, sleeps: list[float], lease: float = 6) -> Claim:
    data = claim_json(shard_ids=list(range(len(sleeps))), sleep_durations=sleeps, lease_seconds=lease)
    data["resumes"] = [None] * len(sleeps)
    return Claim.from_json(data, requested_at=requested_at, answered_at=requested_at + 0.01)


def test_lease_view_covers_the_longest_identify_wait_until_the_first_beat() -> None:
    now = [100.0]
    lease = LeaseView(make_claim(requested_at=100.0, sleeps=[0.0, 10.5]), clock=lambda: now[0])
    assert lease.deadline == 100.0 + 10.5 + 6
    now[0] = 116.4
    assert not lease.lapsed()
    now[0] = 116.5
    assert lease.lapsed()


def test_lease_view_counts_from_the_send_time_of_the_last_acknowledged_beat() -> None:
    now = [100.0]
    lease = LeaseView(make_claim(requested_at=100.0, sleeps=[0.0]), clock=lambda: now[0])
    now[0] = 104.0
    lease.acknowledged(sent_at=103.0)
    assert lease.deadline == 109.0
    now[0] = 109.0
    assert lease.lapsed()
    lease.acknowledged(sent_at=108.9)  # a late answer cannot revive a lapsed lease
    assert lease.lapsed()


async def test_lapse_timer_notices_a_deadline_that_passed_while_the_loop_slept() -> None:
    claim = make_claim(requested_at=time.monotonic(), sleeps=[0.0], lease=0.3)
    lease = LeaseView(claim)
    started = time.monotonic()
    await asyncio.wait_for(lease.wait_lapsed(), timeout=2)
    assert 0.25 <= time.monotonic() - started <= 0.8


def assert_process_usage(body: dict[str, Any]) -> None:
    """Every beat carries the process's label, CPU time and resident memory: checked, then taken out."""
    assert body.pop("process") == default_process_label()
    cpu, rss = body.pop("cpu_seconds"), body.pop("rss_bytes")
    assert isinstance(cpu, float)
    assert 0 < cpu <= time.process_time()
    assert isinstance(rss, int)
    assert rss > 1024 * 1024, "a Python process holds more than a MiB"


async def test_connect_files_the_process_under_hostname_and_pid_unless_the_bot_names_it(
    fake_shardman: FakeShardman,
) -> None:
    fake_shardman.script("/connect", (200, claim_json()))
    async with client(fake_shardman) as c:
        await c.connect()
    async with ShardmanClient(fake_shardman.url, SECRET, process="worker-3") as c:
        await c.connect()
    default, named = fake_shardman.requests("/connect")
    assert default.query == {"process": f"{socket.gethostname()}:{os.getpid()}"}
    assert named.query == {"process": "worker-3"}


def test_the_default_process_label_fits_shardman_s_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "h" * 300)
    label = default_process_label()
    assert len(label) == 128
    assert label.endswith(f"h:{os.getpid()}")


def test_process_usage_reads_this_process_s_cpu_time_and_memory() -> None:
    before = cpu_seconds()
    sum(i * i for i in range(200_000))  # some CPU time
    assert cpu_seconds() > before
    resident = rss_bytes()
    assert resident is not None
    assert resident > 1024 * 1024
