"""Typed answers and reports of shardman's HTTP API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ResumeData:
    """Discord resume data of one shard: what a RESUME needs."""

    session_id: str
    sequence: int
    resume_gateway_url: str

    @classmethod
    def from_json(cls, data: Any) -> ResumeData | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                session_id=str(data["session_id"]),
                sequence=int(data["sequence"]),
                resume_gateway_url=str(data["resume_gateway_url"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "sequence": self.sequence,
            "resume_gateway_url": self.resume_gateway_url,
        }


#: A claim's `placement`: a fixed group per process, or shards placed one by one by load.
PLACEMENT_GROUPS = "groups"
PLACEMENT_LOAD = "load"


@dataclass(frozen=True)
class Claim:
    """The answer of `GET /connect`: one shard group held by this process."""

    session_id: str
    shard_ids: list[int]
    shard_count: int
    generation: int | None
    state: str | None
    sleep_durations: list[float]
    resumes: list[ResumeData | None]
    lease_seconds: float
    beat_interval: float
    gateway_url: str | None
    fence: int | None
    #: How shardman places shards: `groups` (a claim is a fixed group; one claim per process) or `load`
    #: (`SHARDS_PER_PROCESS=auto`: a claim is one shard, a process holds as many as placement gives it
    #: and hands one over when a beat answers `hand_over`). `groups` from a shardman that does not say.
    placement: str = "groups"
    #: `time.monotonic()` when the /connect request was sent, plus the `waited` it answered (a claim
    #: that waited): the lease view counts from it.
    requested_at: float = field(default=0.0, compare=False)
    #: `time.monotonic()` when the answer arrived: the IDENTIFY waits count from it.
    answered_at: float = field(default=0.0, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any], *, requested_at: float, answered_at: float) -> Claim:
        shard_ids = [int(s) for s in data.get("shard_ids") or [data["shard_id"]]]
        sleeps = data.get("sleep_durations")
        if sleeps is None:
            sleeps = [float(data.get("sleep_duration") or 0.0)] * len(shard_ids)
        resumes = data.get("resumes")
        if resumes is None:
            resumes = [data.get("resume")] + [None] * (len(shard_ids) - 1)
        lease_seconds = float(data.get("lease_seconds") or 60)
        return cls(
            session_id=str(data["session_id"]),
            shard_ids=shard_ids,
            shard_count=int(data["max_shards"]),
            generation=_opt_int(data.get("generation")),
            state=data.get("state"),
            sleep_durations=[float(s) for s in sleeps],
            resumes=[ResumeData.from_json(r) for r in resumes],
            lease_seconds=lease_seconds,
            beat_interval=float(data.get("beat_interval") or lease_seconds / 3),
            gateway_url=data.get("gateway_url"),
            fence=_opt_int(data.get("fence")),
            placement=str(data.get("placement") or PLACEMENT_GROUPS),
            # The lease began no earlier than `waited` after the request was sent.
            requested_at=requested_at + float(data.get("waited") or 0.0),
            answered_at=answered_at,
        )

    def sleep_for(self, shard_id: int) -> float:
        """The wait before this shard's first IDENTIFY, from `answered_at`."""
        return self.sleep_durations[self.shard_ids.index(shard_id)]

    def resume_for(self, shard_id: int) -> ResumeData | None:
        return self.resumes[self.shard_ids.index(shard_id)]


@dataclass(frozen=True)
class ShardReport:
    """What one beat reports for one shard; `None` fields are left out (shardman keeps the old value)."""

    shard_id: int
    guild_count: int | None = None
    latency: float | None = None
    resume: ResumeData | None = None
    #: Gateway dispatches the shard's current Discord session has received so far: its sequence number,
    #: which Discord raises by one with every dispatch (shardman turns it into events per second).
    events: int | None = None

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.guild_count is not None:
            out["guild_count"] = self.guild_count
        if self.latency is not None:
            out["latency"] = self.latency
        if self.resume is not None:
            out["resume"] = self.resume.to_json()
        if self.events is not None:
            out["events"] = self.events
        return out


@dataclass(frozen=True)
class BeatAnswer:
    """The answer of an acknowledged `POST /beat` (`Prefer: return=representation`)."""

    #: `time.monotonic()` when the acknowledged request was sent.
    sent_at: float
    shard_id: int | None = None
    shard_count: int | None = None
    generation: int | None = None
    state: str | None = None
    fence: int | None = None
    #: Placement moves this claim's shard to another process: hand it over (as on shutdown).
    hand_over: bool = False
    #: Shards of this claim to reconnect (RESUME first): shardman saw them fall silent.
    reconnect: list[int] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Any, *, sent_at: float) -> BeatAnswer:
        """From the answer's body: the representation, or nothing (204, an old server)."""
        if not isinstance(data, dict):
            return cls(sent_at=sent_at)
        return cls(
            sent_at=sent_at,
            shard_id=_opt_int(data.get("shard_id")),
            shard_count=_opt_int(data.get("max_shards")),
            generation=_opt_int(data.get("generation")),
            state=data.get("state"),
            fence=_opt_int(data.get("fence")),
            hand_over=bool(data.get("hand_over") or False),
            reconnect=[int(s) for s in data.get("reconnect") or []],
        )


@dataclass(frozen=True)
class Permit:
    """The answer of `POST /identify/permit`: whether the shard may IDENTIFY now."""

    granted: bool
    shard_id: int
    #: Not granted within the wait: the replica's estimate of the seconds until the bucket opens.
    retry_after: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Permit:
        granted = bool(data["permit"])
        retry_after = data.get("retry_after")
        return cls(
            granted=granted,
            shard_id=int(data["shard_id"]),
            retry_after=None if granted or retry_after is None else float(retry_after),
        )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
