"""Why a claim ends, and the JSON lines that report claim changes (`clients/contract/claim_events.json`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from .models import Claim

#: Closing a gateway connection with this code keeps its Discord session resumable (1000 and 1001 end it).
RESUMABLE_CLOSE = 4000
#: Closing with this code ends the Discord session.
FINAL_CLOSE = 1000


class Release(str, enum.Enum):
    """Why a claim ended: the `reason` of a `released` line. The same list in every client package."""

    #: The process's own lease view ran out; that session id is never used again.
    LAPSED = "lapsed"
    #: A beat or /identify answered 404: shardman no longer knows the session.
    LOST = "lost"
    #: A beat or /identify answered 401: a reshard replaced the session's generation; exit.
    RETIRED = "retired"
    #: SIGTERM/SIGINT (the `stop` event), or the bot closed its client itself.
    SHUTDOWN = "shutdown"
    #: The bot library cannot run the shards (a bad token, say); the error is raised.
    FAILED = "failed"
    #: A beat answered `hand_over` (placement by load moves the claim's shard to another process): only
    #: this claim ends, given back as on shutdown; the process's other claims go on.
    HANDED_OVER = "handed_over"

    @property
    def claims_again(self) -> bool:
        return self in (Release.LAPSED, Release.LOST)

    @property
    def gives_back(self) -> bool:
        """Whether the claim is handed back: a last beat with the shards' resume data, then /disconnect."""
        return self in (Release.SHUTDOWN, Release.FAILED, Release.HANDED_OVER)

    @property
    def close_code(self) -> int:
        """How the shards close: a retired generation's sessions are over, every other one may be resumed."""
        return FINAL_CLOSE if self is Release.RETIRED else RESUMABLE_CLOSE

    @property
    def exit_code(self) -> int | None:
        """The example bot's exit code when the run ends this way (None: the process goes on)."""
        if self.claims_again or self is Release.HANDED_OVER:
            return None
        return 1 if self is Release.FAILED else 0


@dataclass(frozen=True)
class ClaimEvent:
    """A change of this process's claim: `claimed`, or `released` with a reason."""

    event: str
    shard_ids: list[int]
    shard_count: int
    generation: int | None
    state: str | None = None
    reason: Release | None = None

    @classmethod
    def claimed(cls, claim: Claim) -> ClaimEvent:
        return cls("claimed", list(claim.shard_ids), claim.shard_count, claim.generation, state=claim.state)

    @classmethod
    def released(cls, claim: Claim, reason: Release) -> ClaimEvent:
        return cls("released", list(claim.shard_ids), claim.shard_count, claim.generation, reason=reason)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event": self.event,
            "shard_ids": self.shard_ids,
            "shard_count": self.shard_count,
            "generation": self.generation,
        }
        if self.event == "claimed":
            out["state"] = self.state
        if self.reason is not None:
            out["reason"] = self.reason.value
        return out
