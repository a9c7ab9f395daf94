"""The core client for shardman's HTTP API: connect, beat, identify, disconnect."""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from .models import BeatAnswer, Claim, ShardReport

log = logging.getLogger("shardman_client")


class ShardmanError(Exception):
    """An answer of shardman that the caller has to act on."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class NoShardsAvailable(ShardmanError):
    """401 on /connect: every shard (group) is held; ask again later."""


class Retired(ShardmanError):
    """401 on /beat or /identify: the session's generation was retired (resharded away); stop and exit."""


class SessionLost(ShardmanError):
    """404: shardman no longer knows the session (lease expired or released); stop its shards, claim anew."""


class BadSecret(ShardmanError):
    """403: shardman refused the secret. Retrying cannot help."""


class Unavailable(ShardmanError):
    """503/429 or a network error that outlasted the retries."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(status, detail)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff for 503/429/network errors; a longer Retry-After is always honoured."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.1

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        base = min(self.cap, self.initial * self.factor**attempt)
        base *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(base, retry_after or 0.0)


@dataclass(frozen=True)
class _Answer:
    status: int
    body: Any
    sent_at: float
    #: the `Session-Id` header: the session re-signed during a secret rotation
    resigned: str | None = None


class ShardmanClient:
    """Talks to one shardman URL with one secret. Use as `async with ShardmanClient(url, secret) as c:`."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        backoff: Backoff | None = None,
        request_timeout: float = 10.0,
        full_retry: float = 1.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._secret = secret
        self.backoff = backoff or Backoff()
        self.request_timeout = request_timeout
        #: seconds between /connect attempts while every shard is held (with 20% jitter)
        self.full_retry = full_retry
        self._session = session
        self._own_session = session is None
        # Session ids shardman re-signed during a secret rotation (README "Rotating the secret"),
        # by the id the caller knows: sent instead of it from then on.
        self._resigned: dict[str, str] = {}

    async def __aenter__(self) -> ShardmanClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- the API ---------------------------------------------------------------------------------

    async def connect(self) -> Claim:
        """One claim attempt (503/429 retried). Raises NoShardsAvailable when every shard is held."""
        answer = await self._request("GET", "/connect", retry_until=None)
        if answer.status == 200:
            return Claim.from_json(answer.body, requested_at=answer.sent_at, answered_at=time.monotonic())
        raise self._error(answer, on_401=NoShardsAvailable)

    async def claim(self) -> Claim:
        """Claim a shard group, asking again about every second while every shard is held."""
        while True:
            try:
                return await self.connect()
            except NoShardsAvailable:
                await asyncio.sleep(self.full_retry * random.uniform(0.8, 1.2))

    async def beat(
        self,
        session_id: str,
        reports: Sequence[ShardReport] = (),
        *,
        extra: Any = None,
        retry_until: float | None = None,
    ) -> BeatAnswer:
        """Beat for the session, with per-shard reports (the first one also in the flat fields).

        503/429/network errors are retried until `retry_until` (monotonic; give the lease deadline;
        default: `request_timeout` from now), then Unavailable is raised; no attempt is sent after
        it. The answer's `sent_at` is the acknowledged request's send time.
        """
        body: dict[str, Any] = {"session_id": self._resigned.get(session_id, session_id)}
        if reports:
            body.update(reports[0].fields())
            body["shards"] = [{"shard_id": r.shard_id, **r.fields()} for r in reports]
            # Connected to Discord once every shard has a session: only then may this holder
            # complete a reshard (shardman retires the old generation on it).
            body["ready"] = all(r.resume is not None for r in reports)
        if extra is not None:
            body["extra"] = extra
        answer = await self._request(
            "POST",
            "/beat",
            json=body,
            headers={"Prefer": "return=representation"},
            retry_until=retry_until if retry_until is not None else time.monotonic() + self.request_timeout,
        )
        if answer.resigned and answer.status in (200, 204):
            self._resigned[session_id] = answer.resigned
        if answer.status == 204:
            return BeatAnswer(sent_at=answer.sent_at)
        if answer.status == 200:
            data = answer.body if isinstance(answer.body, dict) else {}
            return BeatAnswer(
                sent_at=answer.sent_at,
                shard_id=data.get("shard_id"),
                shard_count=data.get("max_shards"),
                generation=data.get("generation"),
                state=data.get("state"),
                fence=data.get("fence"),
            )
        raise self._error(answer, on_401=Retired)

    async def identify(self, session_id: str, shard_id: int | None = None) -> float:
        """Book a new IDENTIFY slot for a shard of the session; answers the seconds to wait."""
        body: dict[str, Any] = {"session_id": self._resigned.get(session_id, session_id)}
        if shard_id is not None:
            body["shard_id"] = shard_id
        answer = await self._request("POST", "/identify", json=body, retry_until=None)
        if answer.status == 200:
            return float(answer.body["sleep_duration"])
        raise self._error(answer, on_401=Retired)

    async def disconnect(self, session_id: str, *, retry_for: float = 5.0) -> None:
        """Give the session's shards back. A session shardman no longer knows raises SessionLost."""
        sent = self._resigned.pop(session_id, session_id)
        answer = await self._request(
            "POST", "/disconnect", json={"session_id": sent}, retry_until=time.monotonic() + retry_for
        )
        if answer.status in (200, 204):
            return
        raise self._error(answer, on_401=Retired)

    # -- plumbing --------------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        retry_until: float | None,
    ) -> _Answer:
        """Send, retrying 503/429/network errors with backoff; `retry_until` None retries forever."""
        all_headers = {"Authorization": self._secret, "Accept": "application/json", **(headers or {})}
        attempt = 0
        while True:
            sent_at = time.monotonic()
            retry_after: float | None = None
            limit = self.request_timeout
            if retry_until is not None:  # an attempt does not outlive the caller's deadline by much
                limit = min(limit, max(0.5, retry_until - sent_at))
            timeout = aiohttp.ClientTimeout(total=limit)
            try:
                async with self._http().request(
                    method, self.url + path, json=json, headers=all_headers, timeout=timeout
                ) as response:
                    body = await _read_body(response)
                    if response.status not in (429, 503):
                        return _Answer(response.status, body, sent_at, response.headers.get("Session-Id"))
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                    failure = Unavailable(response.status, _detail(body), retry_after)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                failure = Unavailable(0, f"{type(exc).__name__}: {exc}")
            delay = self.backoff.delay(attempt, retry_after)
            if retry_until is not None and time.monotonic() + delay > retry_until:
                raise failure
            log.warning("shardman %s %s: %s; retrying in %.2fs", method, path, failure, delay)
            await asyncio.sleep(delay)
            if retry_until is not None and time.monotonic() >= retry_until:
                raise failure  # woken late (SIGSTOP, say): sending now would be past the caller's deadline
            attempt += 1

    @staticmethod
    def _error(answer: _Answer, *, on_401: type[ShardmanError]) -> ShardmanError:
        detail = _detail(answer.body)
        if answer.status == 401:
            return on_401(401, detail)
        if answer.status == 403:
            return BadSecret(403, detail)
        if answer.status == 404:
            return SessionLost(404, detail)
        return ShardmanError(answer.status, detail)


async def _read_body(response: aiohttp.ClientResponse) -> Any:
    text = await response.text()
    if not text:
        return None
    try:
        return jsonlib.loads(text)
    except ValueError:
        return text


def _detail(body: Any) -> str:
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)


def _retry_after(value: str | None) -> float | None:
    # shardman sends seconds; an HTTP date (the other RFC 9110 form) is not worth parsing here
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
