"""Decoding shardman's answers, per route and status, as `clients/contract/answers.json` pins it.

Pure functions of an `Answer` (status, body, Retry-After), so the contract vectors test them
without a server; `ShardmanClient` sends the requests and hands each answer to one of them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from .errors import BadSecret, NoShardsAvailable, Retired, SessionLost, ShardmanError, Unavailable
from .models import BeatAnswer, Claim, Permit


class Route(str, enum.Enum):
    CONNECT = "connect"
    BEAT = "beat"
    IDENTIFY = "identify"
    IDENTIFY_PERMIT = "identify_permit"
    IDENTIFY_CONFIRM = "identify_confirm"
    DISCONNECT = "disconnect"


@dataclass(frozen=True)
class Answer:
    status: int
    #: The JSON body, the text when it is not JSON, None when empty.
    body: Any
    #: The Retry-After header as sent.
    retry_after: str | None = None
    #: `time.monotonic()` when the request was sent and when its answer arrived.
    sent_at: float = 0.0
    answered_at: float = 0.0
    #: The Session-Id header: the session re-signed during a secret rotation (README "Rotating the
    #: secret"), to be sent instead of the one the request carried.
    session_id: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def decode_connect(answer: Answer) -> Claim:
    if not answer.ok:
        raise answer_error(Route.CONNECT, answer)
    return Claim.from_json(answer.body, requested_at=answer.sent_at, answered_at=answer.answered_at)


def decode_beat(answer: Answer) -> BeatAnswer:
    if not answer.ok:
        raise answer_error(Route.BEAT, answer)
    return BeatAnswer.from_json(answer.body, sent_at=answer.sent_at)


def decode_identify(answer: Answer) -> float:
    """The seconds to wait for the booked IDENTIFY slot."""
    if not answer.ok:
        raise answer_error(Route.IDENTIFY, answer)
    return float(answer.body["sleep_duration"])


def decode_permit(answer: Answer) -> Permit:
    if not answer.ok:
        raise answer_error(Route.IDENTIFY_PERMIT, answer)
    return Permit.from_json(answer.body)


def decode_confirm(answer: Answer) -> bool:
    """Whether the confirm moved the bucket's opening (false: confirmed already, or too late)."""
    if not answer.ok:
        raise answer_error(Route.IDENTIFY_CONFIRM, answer)
    return bool(answer.body["confirmed"])


def decode_disconnect(answer: Answer) -> None:
    if not answer.ok:
        raise answer_error(Route.DISCONNECT, answer)


def answer_error(route: Route, answer: Answer) -> ShardmanError:
    """The error a failed answer means on `route`."""
    detail = _detail(answer.body)
    status = answer.status
    if status == 401:
        return NoShardsAvailable(401, detail) if route is Route.CONNECT else Retired(401, detail)
    if status == 403:
        return BadSecret(403, detail)
    if status == 404 and route is not Route.CONNECT:  # on /connect a 404 is a wrong URL
        return SessionLost(404, detail)
    if status == 429 or status >= 500:
        return Unavailable(status, detail, parse_retry_after(answer.retry_after))
    return ShardmanError(status, detail)


def parse_retry_after(value: str | None) -> float | None:
    # shardman sends seconds; an HTTP date (the other RFC 9110 form) is not worth parsing here
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _detail(body: Any) -> str:
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)
