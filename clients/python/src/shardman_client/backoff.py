"""Waits between retries, as `clients/contract/backoff.json` pins them for all three packages."""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Every wait is spread by this much either way, so a fleet that failed together retries apart.
JITTER = 0.2
#: `/connect` answered 401 "No Shards Available": ask again after about this long.
NO_SHARDS_AVAILABLE_RETRY = 1.0


def jittered(seconds: float, *, unit: float | None = None) -> float:
    """`seconds` spread by JITTER; `unit` is the uniform draw in [0, 1] (random when None)."""
    draw = random.random() if unit is None else unit
    return seconds * (1 - JITTER + 2 * JITTER * draw)


@dataclass(frozen=True)
class Backoff:
    """Exponential waits for 503/429/5xx and network errors; a longer Retry-After is always honoured."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = JITTER

    def delay(self, attempt: int, retry_after: float | None = None, *, unit: float | None = None) -> float:
        """The wait before retry `attempt` (from 0); `unit` as in `jittered`."""
        draw = random.random() if unit is None else unit
        nominal = self.initial * self.factor ** min(attempt, 64)  # past 64 every wait is the cap anyway
        wait = min(self.cap, nominal * (1 - self.jitter + 2 * self.jitter * draw))
        return max(wait, retry_after or 0.0)


def beat_retry_delay(
    failures: int, retry_after: float | None, beat_interval: float, *, unit: float | None = None
) -> float:
    """The wait before the next beat after `failures` failed ones in a row (from 0): the backoff capped
    at `beat_interval`, Retry-After included, because the lease view, not the server, decides when to
    give up."""
    return min(beat_interval, Backoff(cap=beat_interval).delay(failures, retry_after, unit=unit))


def no_shards_available_delay(*, unit: float | None = None) -> float:
    return jittered(NO_SHARDS_AVAILABLE_RETRY, unit=unit)
