"""The HTTP client for shardman's API: connect, beat, identify, disconnect, with retries."""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from .answers import (
    Answer,
    decode_beat,
    decode_confirm,
    decode_connect,
    decode_disconnect,
    decode_identify,
    decode_permit,
)
from .backoff import CONNECT_WAIT, NO_SHARDS_AVAILABLE_RETRY, Backoff, jittered
from .errors import NoShardsAvailable, Unavailable
from .models import BeatAnswer, Claim, Permit, ShardReport
from .usage import cpu_seconds, default_process_label, rss_bytes

log = logging.getLogger("shardman_client")

T = TypeVar("T")

#: Seconds `identify_permit` asks the replica to wait for the shard's bucket by default (0 to 30).
PERMIT_WAIT = 10.0
#: How long a confirm is retried (429/5xx, network): after that the grant's own hold (8.1 s) frees
#: the bucket, so a later confirm would change nothing.
CONFIRM_RETRY_FOR = 5.0

#: No attempt of a request with a deadline is given less than this, however close the deadline.
SHORTEST_ATTEMPT = 0.5


class ShardmanClient:
    """Talks to one shardman URL with one secret. Use as `async with ShardmanClient(url, secret) as c:`."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        backoff: Backoff | None = None,
        request_timeout: float = 10.0,
        full_retry: float = NO_SHARDS_AVAILABLE_RETRY,
        connect_wait: float = CONNECT_WAIT,
        session: aiohttp.ClientSession | None = None,
        process: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        #: the label `/connect` files this process's sessions under in shardman's `/status` (at most 128
        #: printable characters); `<hostname>:<pid>` unless the bot names it
        self.process = process or default_process_label()
        self._secret = secret
        self.backoff = backoff or Backoff()
        self.request_timeout = request_timeout
        #: seconds between /connect attempts while every shard is held and shardman does not wait
        #: (jittered like every wait)
        self.full_retry = full_retry
        #: seconds `claim` asks /connect to wait for a shard to become free (0: ask without waiting)
        self.connect_wait = connect_wait
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

    async def connect(self, *, wait: float | None = None, identify: str | None = None) -> Claim:
        """One claim attempt (429/5xx retried). Raises NoShardsAvailable when every shard is held (with
        `wait`: still held after waiting up to `wait` seconds for one). `identify="permit"` claims
        without a booked IDENTIFY slot (every sleep 0): each IDENTIFY then asks `identify_permit`."""
        params = {"process": self.process}
        if identify is not None:
            params["identify"] = identify
        if not wait:
            return await self._call("GET", "/connect", decode_connect, params=params, retry_until=None)
        return await self._call(
            "GET",
            "/connect",
            decode_connect,
            params={**params, "wait": f"{wait:g}"},
            retry_until=None,
            timeout=wait + self.request_timeout,
        )

    async def claim(self, *, identify: str | None = None) -> Claim:
        """Claim a shard group, waiting for one while every shard is held: shardman answers as soon as
        one is free, first come first served. A 401 that came back before half the wait (a shardman
        without `wait`, a replica shutting down) is asked again about a second later."""
        while True:
            sent_at = time.monotonic()
            try:
                return await self.connect(wait=self.connect_wait, identify=identify)
            except NoShardsAvailable:
                waited_out = self.connect_wait > 0 and time.monotonic() - sent_at >= self.connect_wait / 2
                if not waited_out:
                    await asyncio.sleep(jittered(self.full_retry))

    async def beat(
        self,
        session_id: str,
        reports: Sequence[ShardReport] = (),
        *,
        extra: Any = None,
        timeout: float | None = None,
        retry_until: float | None = None,
    ) -> BeatAnswer:
        """Beat for the session, with per-shard reports (the first one also in the flat fields), this
        process's CPU time and resident memory, and its label.

        Sent once (within `timeout`, default `request_timeout`) unless `retry_until` (monotonic) is
        given: then 429/5xx/network errors are retried until it, and no attempt is sent after it.
        Failures raise Unavailable. The answer's `sent_at` is the acknowledged request's send time.
        """
        body: dict[str, Any] = {"session_id": self._resigned.get(session_id, session_id)}
        if reports:
            body.update(reports[0].fields())
            body["shards"] = [{"shard_id": r.shard_id, **r.fields()} for r in reports]
            # Connected to Discord once every shard has a session: only then may this holder complete a
            # reshard (shardman retires the old generation on it).
            body["ready"] = all(r.resume is not None for r in reports)
        # Kept by shardman only where a lease has none (one re-established after a Redis data loss).
        body["process"] = self.process
        body["cpu_seconds"] = cpu_seconds()
        resident = rss_bytes()
        if resident is not None:
            body["rss_bytes"] = resident
        if extra is not None:
            body["extra"] = extra

        def decode(answer: Answer) -> BeatAnswer:
            acknowledged = decode_beat(answer)
            if answer.session_id:  # re-signed during a secret rotation: sent from now on
                self._resigned[session_id] = answer.session_id
            return acknowledged

        return await self._call(
            "POST",
            "/beat",
            decode,
            json=body,
            headers={"Prefer": "return=representation"},
            retry_until=retry_until,
            send_once=retry_until is None,
            timeout=timeout,
        )

    async def identify(self, session_id: str, shard_id: int | None = None) -> float:
        """Book a new IDENTIFY slot for a shard of the session; answers the seconds to wait."""
        body = self._session_body(session_id, shard_id)
        return await self._call("POST", "/identify", decode_identify, json=body, retry_until=None)

    async def identify_permit(
        self, session_id: str, shard_id: int | None = None, *, wait: float = PERMIT_WAIT
    ) -> Permit:
        """Ask to IDENTIFY the shard now; the replica waits up to `wait` seconds for its bucket to open.
        429/5xx are retried (cancel to give up); 404 raises SessionLost, 401 Retired."""
        body = self._session_body(session_id, shard_id)
        body["wait"] = wait
        return await self._call(
            "POST",
            "/identify/permit",
            decode_permit,
            json=body,
            retry_until=None,
            timeout=wait + self.request_timeout,
        )

    async def identify_confirm(
        self, session_id: str, shard_id: int | None = None, *, retry_for: float = CONFIRM_RETRY_FOR
    ) -> bool:
        """Tell shardman Discord answered the permitted IDENTIFY with READY, so the bucket opens 5 s
        from now rather than 8.1 s after the grant. False: confirmed already, or too late to move anything."""
        return await self._call(
            "POST",
            "/identify/confirm",
            decode_confirm,
            json=self._session_body(session_id, shard_id),
            retry_until=time.monotonic() + retry_for,
        )

    async def disconnect(self, session_id: str, *, retry_for: float = 5.0) -> None:
        """Give the session's shards back. A session shardman no longer knows raises SessionLost."""
        sent = self._resigned.pop(session_id, session_id)
        await self._call(
            "POST",
            "/disconnect",
            decode_disconnect,
            json={"session_id": sent},
            retry_until=time.monotonic() + retry_for,
        )

    # -- plumbing --------------------------------------------------------------------------------

    def _session_body(self, session_id: str, shard_id: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"session_id": self._resigned.get(session_id, session_id)}
        if shard_id is not None:
            body["shard_id"] = shard_id
        return body

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        decode: Callable[[Answer], T],
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        retry_until: float | None,
        send_once: bool = False,
        timeout: float | None = None,
    ) -> T:
        """Send and decode, retrying Unavailable with backoff; `retry_until` None retries forever."""
        all_headers = {"Authorization": self._secret, "Accept": "application/json", **(headers or {})}
        attempt = 0
        while True:
            sent_at = time.monotonic()
            limit = timeout or self.request_timeout
            if retry_until is not None:  # an attempt does not outlive the caller's deadline by much
                limit = min(limit, max(SHORTEST_ATTEMPT, retry_until - sent_at))
            try:
                async with self._http().request(
                    method,
                    self.url + path,
                    json=json,
                    params=params,
                    headers=all_headers,
                    timeout=aiohttp.ClientTimeout(total=limit),
                ) as response:
                    body = _parse_body(await response.text())
                    answer = Answer(
                        response.status,
                        body,
                        response.headers.get("Retry-After"),
                        sent_at,
                        time.monotonic(),
                        session_id=response.headers.get("Session-Id"),
                    )
                return decode(answer)
            except Unavailable as unavailable:
                failure = unavailable
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                failure = Unavailable(0, f"{type(exc).__name__}: {exc}")
            if send_once:
                raise failure
            delay = self.backoff.delay(attempt, failure.retry_after)
            if retry_until is not None and time.monotonic() + delay > retry_until:
                raise failure
            log.warning("shardman %s %s: %s; retrying in %.2fs", method, path, failure, delay)
            await asyncio.sleep(delay)
            if retry_until is not None and time.monotonic() >= retry_until:
                raise failure  # woken late (SIGSTOP, say): sending now would be past the caller's deadline
            attempt += 1


def _parse_body(text: str) -> Any:
    if not text:
        return None
    try:
        return jsonlib.loads(text)
    except ValueError:
        return text
