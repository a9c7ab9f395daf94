//! shardman's answers: their types, and how each route's answer is decoded per status code, as
//! `clients/contract/answers.json` pins it for all three client packages. Pure functions of an
//! [`Answer`], so the contract vectors test them without a server; [`crate::Client`] sends the
//! requests and hands each answer to one of them.

use crate::error::Error;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::time::{Duration, Instant};

/// The routes of shardman's API: what a 401 or a 404 means depends on the route.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Route {
    Connect,
    Beat,
    Identify,
    IdentifyPermit,
    IdentifyConfirm,
    Disconnect,
}

/// An answer as it arrived.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    pub status: u16,
    /// The `Retry-After` header as sent.
    pub retry_after: Option<String>,
    pub body: String,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error a failed answer means on `route`; `None` for a success.
    pub fn error(&self, route: Route) -> Option<Error> {
        if self.ok() {
            return None;
        }
        Some(match self.status {
            401 if route == Route::Connect => Error::NoShardsAvailable,
            401 => Error::Retired,
            403 => Error::Forbidden,
            // On /connect a 404 is a wrong URL, not a lost session.
            404 if route != Route::Connect => Error::SessionLost,
            status @ (429 | 500..=599) => Error::Unavailable {
                status,
                retry_after: self.retry_after.as_deref().and_then(parse_retry_after),
            },
            status => Error::Unexpected {
                status,
                body: self.body.clone(),
            },
        })
    }

    fn check(&self, route: Route) -> Result<(), Error> {
        self.error(route).map_or(Ok(()), Err)
    }

    fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_str(&self.body).map_err(|e| Error::Unexpected {
            status: self.status,
            body: format!("{e}: {}", self.body),
        })
    }
}

/// `GET /connect`'s answer: the claim, timed by when the request was sent and the answer arrived.
pub fn decode_connect(
    answer: &Answer,
    requested_at: Instant,
    received_at: Instant,
) -> Result<Claim, Error> {
    answer.check(Route::Connect)?;
    Ok(answer
        .json::<ConnectAnswer>()?
        .into_claim(requested_at, received_at))
}

/// `POST /beat`'s answer: acknowledged, with the representation unless the server answered 204.
pub fn decode_beat(
    answer: &Answer,
    sent_at: Instant,
    received_at: Instant,
) -> Result<BeatAck, Error> {
    answer.check(Route::Beat)?;
    let representation = if answer.body.trim().is_empty() {
        None
    } else {
        Some(answer.json()?)
    };
    Ok(BeatAck {
        sent_at,
        received_at,
        answer: representation,
    })
}

/// `POST /identify`'s answer: how long to wait for the booked IDENTIFY slot.
pub fn decode_identify(answer: &Answer) -> Result<Duration, Error> {
    answer.check(Route::Identify)?;
    Ok(seconds(answer.json::<IdentifyAnswer>()?.sleep_duration))
}

/// `POST /identify/permit`'s answer: granted, or when to ask again.
pub fn decode_identify_permit(answer: &Answer) -> Result<Permit, Error> {
    answer.check(Route::IdentifyPermit)?;
    let permit = answer.json::<PermitAnswer>()?;
    Ok(Permit {
        granted: permit.permit,
        shard_id: permit.shard_id,
        retry_after: permit.retry_after.map(seconds),
    })
}

/// `POST /identify/confirm`'s answer: whether this confirm moved the bucket's opening (`false`:
/// confirmed already, or so late that another permit of the bucket was granted since).
pub fn decode_identify_confirm(answer: &Answer) -> Result<bool, Error> {
    answer.check(Route::IdentifyConfirm)?;
    Ok(answer.json::<ConfirmAnswer>()?.confirmed)
}

/// `POST /disconnect`'s answer.
pub fn decode_disconnect(answer: &Answer) -> Result<(), Error> {
    answer.check(Route::Disconnect)
}

/// `Retry-After` in seconds (shardman sends whole seconds; fractions are accepted too; an HTTP date,
/// the other RFC 9110 form, is not worth parsing here).
fn parse_retry_after(text: &str) -> Option<Duration> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

pub(crate) fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::ZERO)
}

/// Discord resume data, as a beat reports it and as `/connect` hands it to the next holder.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Resume {
    /// Discord's session id (from READY).
    pub session_id: String,
    /// The last sequence number received.
    pub sequence: u64,
    /// Where to RESUME (READY's `resume_gateway_url`).
    pub resume_gateway_url: String,
}

/// Whether a generation is serving (`active`) or waiting to take over in a reshard (`standby`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Active,
    Standby,
    /// A state this client does not know (a newer shardman).
    #[serde(other)]
    Unknown,
}

/// How shardman places shards on processes (`SHARDS_PER_PROCESS`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// A process holds one claim of a fixed group (also what an older shardman means).
    #[default]
    Groups,
    /// `SHARDS_PER_PROCESS=auto`: a claim is one shard, a process holds as many claims as it is
    /// given (keeping one waiting `/connect` open), and a beat may hand a claim over.
    Load,
}

/// The answer of `GET /connect`: the shard group this process now holds.
#[derive(Clone, Debug)]
pub struct Claim {
    /// The claimed shard ids (one per shard of the group; `[shard_id]` without groups).
    pub shard_ids: Vec<u32>,
    /// The shard count to identify with (shardman's `max_shards`).
    pub shard_count: u32,
    /// The shardman session; send it with every beat, identify and disconnect.
    pub session_id: String,
    /// The generation of the shard plan this claim belongs to.
    pub generation: u64,
    /// `standby` while a reshard is under way, else `active`.
    pub state: State,
    /// Per shard: how long after the answer its first IDENTIFY may be sent.
    pub sleep_durations: Vec<Duration>,
    /// Per shard: the previous holder's resume data, if it can be RESUMEd.
    pub resumes: Vec<Option<Resume>>,
    /// The lease length (`MAX_SECONDS`).
    pub lease: Duration,
    /// How often to beat.
    pub beat_interval: Duration,
    /// Discord's gateway URL as shardman read it (`null` without `BOT_TOKEN`).
    pub gateway_url: Option<String>,
    /// The fencing token of this grant.
    pub fence: u64,
    /// How shardman places shards: in fixed groups, or one shard a claim moved by load.
    pub placement: Placement,
    /// When the `/connect` request was sent, plus the `waited` it answered (a claim that waited):
    /// the lease view counts from here.
    pub requested_at: Instant,
    /// When its answer arrived (IDENTIFY slots, with `identify=slot`, count from here).
    pub received_at: Instant,
}

impl Claim {
    /// The longest wait for an IDENTIFY slot in this group (0 with permits).
    pub fn longest_sleep(&self) -> Duration {
        self.sleep_durations
            .iter()
            .copied()
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

/// `/connect`'s JSON, including the fields older shardman versions left out.
#[derive(Deserialize)]
struct ConnectAnswer {
    shard_id: u32,
    max_shards: u32,
    session_id: String,
    #[serde(default)]
    fence: u64,
    #[serde(default)]
    generation: u64,
    #[serde(default)]
    state: State,
    #[serde(default)]
    sleep_duration: f64,
    #[serde(default)]
    resume: Option<Resume>,
    shard_ids: Option<Vec<u32>>,
    sleep_durations: Option<Vec<f64>>,
    resumes: Option<Vec<Option<Resume>>>,
    lease_seconds: Option<f64>,
    beat_interval: Option<f64>,
    #[serde(default)]
    gateway_url: Option<String>,
    /// With `?wait=`: seconds the request waited before the claim that granted it.
    #[serde(default)]
    waited: Option<f64>,
    #[serde(default)]
    placement: Placement,
}

impl ConnectAnswer {
    fn into_claim(self, requested_at: Instant, received_at: Instant) -> Claim {
        // shardman's default MAX_SECONDS, for servers that do not say.
        let lease = self.lease_seconds.unwrap_or(60.0);
        let shard_ids = self.shard_ids.unwrap_or_else(|| vec![self.shard_id]);
        let sleeps = self
            .sleep_durations
            .unwrap_or_else(|| vec![self.sleep_duration]);
        let mut resumes = self.resumes.unwrap_or_else(|| vec![self.resume]);
        resumes.resize(shard_ids.len(), None);
        let mut sleep_durations: Vec<Duration> = sleeps.into_iter().map(seconds).collect();
        sleep_durations.resize(shard_ids.len(), Duration::ZERO);
        Claim {
            shard_ids,
            shard_count: self.max_shards,
            session_id: self.session_id,
            generation: self.generation,
            state: self.state,
            sleep_durations,
            resumes,
            lease: seconds(lease),
            beat_interval: seconds(self.beat_interval.unwrap_or(lease / 3.0)),
            gateway_url: self.gateway_url,
            fence: self.fence,
            placement: self.placement,
            // A claim that waited: its lease began no earlier than `waited` after the request.
            requested_at: requested_at + seconds(self.waited.unwrap_or(0.0)),
            received_at,
        }
    }
}

/// The answer of a beat sent with `Prefer: return=representation`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
pub struct BeatAnswer {
    /// The group's first shard id.
    pub shard_id: u32,
    /// The shard count of the session's generation.
    #[serde(rename = "max_shards")]
    pub shard_count: u32,
    /// The session's generation.
    #[serde(default)]
    pub generation: u64,
    /// `active` or `standby`.
    #[serde(default)]
    pub state: State,
    /// The fencing token.
    #[serde(default)]
    pub fence: u64,
    /// Placement moves this claim's shard to another process: hand it over (`Release::HandedOver`).
    #[serde(default)]
    pub hand_over: bool,
    /// Shards of the claim to reconnect (close resumably; the library RESUMEs them).
    #[serde(default)]
    pub reconnect: Vec<u32>,
}

/// An acknowledged beat.
#[derive(Clone, Debug)]
pub struct BeatAck {
    /// When the beat was sent: the lease view runs `lease` from here.
    pub sent_at: Instant,
    /// When its answer arrived: an answer arriving after the lease view's deadline cannot revive it.
    pub received_at: Instant,
    /// The representation (`None` from a server that answers 204).
    pub answer: Option<BeatAnswer>,
}

#[derive(Deserialize)]
struct IdentifyAnswer {
    sleep_duration: f64,
}

/// The answer of `POST /identify/permit`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Permit {
    /// Whether the shard may IDENTIFY now (then confirm right after it is sent).
    pub granted: bool,
    /// The shard the permit is for.
    pub shard_id: u32,
    /// Not granted: ask again after this long (the server's estimate, may be zero).
    pub retry_after: Option<Duration>,
}

#[derive(Deserialize)]
struct PermitAnswer {
    permit: bool,
    shard_id: u32,
    #[serde(default)]
    retry_after: Option<f64>,
}

#[derive(Deserialize)]
struct ConfirmAnswer {
    confirmed: bool,
}
