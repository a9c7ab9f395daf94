"""This package against the shared contract vectors of clients/contract (the JS and Rust packages load
the same files), so the three cannot drift apart."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import PACKAGE

from shardman_client import (
    Answer,
    BadSecret,
    BeatAnswer,
    Claim,
    ClaimEvent,
    LeaseView,
    NoShardsAvailable,
    Permit,
    Release,
    Retired,
    Route,
    SessionLost,
    ShardmanError,
    Unavailable,
)
from shardman_client.answers import (
    decode_beat,
    decode_confirm,
    decode_connect,
    decode_disconnect,
    decode_identify,
    decode_permit,
)
from shardman_client.backoff import CONNECT_WAIT, Backoff, beat_retry_delay, no_shards_available_delay
from shardman_client.lease import LAPSE_CHECK_EVERY

CONTRACT = PACKAGE.parent / "contract"


def vectors(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONTRACT / name).read_text())
    return data


ANSWERS = vectors("answers.json")
BACKOFF = vectors("backoff.json")
LEASE = vectors("lease.json")
EVENTS = vectors("claim_events.json")

DECODERS = {
    Route.CONNECT: decode_connect,
    Route.BEAT: decode_beat,
    Route.IDENTIFY: decode_identify,
    Route.IDENTIFY_PERMIT: decode_permit,
    Route.IDENTIFY_CONFIRM: decode_confirm,
    Route.DISCONNECT: decode_disconnect,
}
ERROR_KINDS: dict[str, type[ShardmanError]] = {
    "no_shards_available": NoShardsAvailable,
    "retired": Retired,
    "session_lost": SessionLost,
    "bad_secret": BadSecret,
    "unavailable": Unavailable,
    "unexpected": ShardmanError,
}


def claim_fields(claim: Claim) -> dict[str, Any]:
    return {
        "session_id": claim.session_id,
        "shard_ids": claim.shard_ids,
        "shard_count": claim.shard_count,
        "generation": claim.generation,
        "state": claim.state,
        "fence": claim.fence,
        "sleep_durations": claim.sleep_durations,
        "resumes": [None if r is None else r.to_json() for r in claim.resumes],
        "lease_seconds": claim.lease_seconds,
        "beat_interval": claim.beat_interval,
        "gateway_url": claim.gateway_url,
        "placement": claim.placement,
        # `Answer` was sent at 0.
        "lease_counts_from": claim.requested_at,
    }


@pytest.mark.parametrize("case", ANSWERS["cases"], ids=lambda case: case["name"])
def test_answers_decode_as_the_contract_says(case: dict[str, Any]) -> None:
    answer = Answer(case["status"], case["body"], case.get("retry_after"))
    decode = DECODERS[Route(case["route"])]
    expect = case["expect"]
    if "error" in expect:
        with pytest.raises(ShardmanError) as raised:
            decode(answer)
        assert type(raised.value) is ERROR_KINDS[expect["error"]]
        assert raised.value.status == case["status"]
        if "retry_after" in expect:
            assert isinstance(raised.value, Unavailable)
            assert raised.value.retry_after == expect["retry_after"]
        return
    decoded = decode(answer)
    if "claim" in expect:
        assert isinstance(decoded, Claim)
        fields = claim_fields(decoded)
        assert {key: fields[key] for key in expect["claim"]} == expect["claim"]
    elif "beat" in expect:
        assert isinstance(decoded, BeatAnswer)
        got: dict[str, Any] = {
            "shard_id": decoded.shard_id,
            "shard_count": decoded.shard_count,
            "generation": decoded.generation,
            "state": decoded.state,
            "fence": decoded.fence,
            "hand_over": decoded.hand_over,
            "reconnect": decoded.reconnect,
        }
        if expect["beat"] is None:  # an acknowledgment only: nothing known, no move, nothing to reconnect
            assert got == {**dict.fromkeys(got), "hand_over": False, "reconnect": []}
        else:
            assert {key: got[key] for key in expect["beat"]} == expect["beat"]
    elif "sleep_duration" in expect:
        assert decoded == expect["sleep_duration"]
    elif "permit" in expect:
        assert isinstance(decoded, Permit)
        permit = {
            "granted": decoded.granted,
            "shard_id": decoded.shard_id,
            "retry_after": decoded.retry_after,
        }
        assert permit == expect["permit"]
    elif "confirmed" in expect:
        assert decoded is expect["confirmed"]
    else:
        assert expect == {"ok": True}
        assert decoded is None


def assert_bounds(wait: Any, least: float, most: float) -> None:
    """`wait(unit)` at the extremes of the draw is the contract's bounds, and in between stays within."""
    assert wait(0.0) == pytest.approx(least)
    assert wait(1.0) == pytest.approx(most)
    for unit in (0.1, 0.5, 0.9):
        assert least - 1e-9 <= wait(unit) <= most + 1e-9


@pytest.mark.parametrize("case", BACKOFF["requests"]["cases"])
def test_request_retries_wait_as_the_contract_says(case: dict[str, Any]) -> None:
    backoff = Backoff()
    assert (backoff.initial, backoff.factor, backoff.cap, backoff.jitter) == (
        BACKOFF["initial_seconds"],
        BACKOFF["factor"],
        BACKOFF["cap_seconds"],
        BACKOFF["jitter"],
    )
    assert_bounds(
        lambda unit: backoff.delay(case["attempt"], case["retry_after"], unit=unit),
        case["least"],
        case["most"],
    )


@pytest.mark.parametrize("case", BACKOFF["beats"]["cases"])
def test_beats_after_a_failure_wait_as_the_contract_says(case: dict[str, Any]) -> None:
    assert_bounds(
        lambda unit: beat_retry_delay(
            case["failures"], case["retry_after"], case["beat_interval"], unit=unit
        ),
        case["least"],
        case["most"],
    )


def test_no_shards_available_is_asked_again_as_the_contract_says() -> None:
    bounds = BACKOFF["no_shards_available"]
    assert bounds["connect_wait_seconds"] == CONNECT_WAIT
    assert_bounds(lambda unit: no_shards_available_delay(unit=unit), bounds["least"], bounds["most"])


@pytest.mark.parametrize("case", LEASE["cases"], ids=lambda case: case["name"])
def test_the_lease_view_follows_the_contract(case: dict[str, Any]) -> None:
    spec = case["claim"]
    claim = Claim.from_json(
        {
            "shard_id": 0,
            "max_shards": len(spec["sleep_durations"]),
            "session_id": "s",
            "shard_ids": list(range(len(spec["sleep_durations"]))),
            "sleep_durations": spec["sleep_durations"],
            "lease_seconds": spec["lease_seconds"],
        },
        requested_at=spec["requested_at"],
        answered_at=spec["requested_at"],
    )
    now = [float(spec["requested_at"])]
    lease = LeaseView(claim, clock=lambda: now[0])
    for step in case["steps"]:
        now[0] = step["at"]
        if "acknowledge" in step:
            lease.acknowledged(step["acknowledge"]["sent_at"])
        if "deadline" in step:
            assert lease.deadline == pytest.approx(step["deadline"]), step
        if "lapsed" in step:
            assert lease.lapsed() == step["lapsed"], step


def test_the_lapse_is_checked_as_often_as_the_contract_says() -> None:
    assert LEASE["lapse_check_every_seconds"] == LAPSE_CHECK_EVERY


def test_the_release_reasons_are_the_contracts_list_and_do_what_it_says() -> None:
    assert [reason.value for reason in Release] == [r["reason"] for r in EVENTS["reasons"]]
    for spec in EVENTS["reasons"]:
        reason = Release(spec["reason"])
        assert reason.claims_again == spec["claims_again"], reason
        assert reason.gives_back == spec["gives_back"], reason
        assert reason.close_code == spec["close_code"], reason
        assert reason.exit_code == spec["exit_code"], reason


@pytest.mark.parametrize("case", EVENTS["cases"])
def test_claim_event_lines_are_the_contracts(case: dict[str, Any]) -> None:
    claim = decode_connect(Answer(200, case["connect_answer"]))
    assert json.loads(json.dumps(ClaimEvent.claimed(claim).to_json())) == case["claimed"]
    for reason in Release:
        line = json.loads(json.dumps(ClaimEvent.released(claim, reason).to_json()))
        assert line == {**case["released"], "reason": reason.value}
