"""The errors of shardman's answers, one class per thing a bot must do differently."""

from __future__ import annotations


class ShardmanError(Exception):
    """An answer of shardman that the caller has to act on; this class itself: an unexpected one."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class NoShardsAvailable(ShardmanError):
    """401 on /connect: every shard (group) is held; ask again later."""


class Retired(ShardmanError):
    """401 on /beat or /identify: the session's generation was retired (resharded away); stop and exit."""


class SessionLost(ShardmanError):
    """404 on a session route: shardman no longer knows the session (expired or released); claim anew."""


class BadSecret(ShardmanError):
    """403: shardman refused the secret. Retrying cannot help."""


class Unavailable(ShardmanError):
    """429, a 5xx or a network error (status 0) that outlasted the retries."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(status, detail)
        self.retry_after = retry_after
