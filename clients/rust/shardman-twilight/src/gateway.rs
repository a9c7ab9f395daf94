//! The twilight-gateway adapter: one `Shard` per claimed shard id, IDENTIFY paced by shardman,
//! resume data handed over in both directions, shards stopped the moment the claim ends.

use crate::queue::ShardmanQueue;
use shardman_client::{
    Claim, ClaimEnd, Client, Error, LeaseKeeper, LeaseView, Release, Reports, Resume, ShardReport,
    SharedLease, State, lock,
};
use std::collections::HashSet;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use twilight_gateway::{
    CloseFrame, ConfigBuilder, Event, EventTypeFlags, Intents, Message, Session, Shard, ShardId,
    ShardState,
};

/// How long a stopping shard waits for Discord to answer its close frame before it just drops
/// the connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Adjusts each shard's twilight config (presence, identify properties, ...) before it is built.
pub type Configure = Arc<
    dyn Fn(ShardId, ConfigBuilder<ShardmanQueue>) -> ConfigBuilder<ShardmanQueue> + Send + Sync,
>;

/// Runs twilight shards for the shard groups shardman hands out.
#[derive(Clone)]
pub struct Fleet {
    client: Client,
    token: String,
    intents: Intents,
    event_types: EventTypeFlags,
    api_base: String,
    configure: Option<Configure>,
    fallback_gateway: Arc<Mutex<Option<String>>>,
}

impl Fleet {
    /// A fleet that logs in with the bot `token` and `intents`.
    pub fn new(client: Client, token: String, intents: Intents) -> Self {
        Self {
            client,
            token,
            intents,
            event_types: EventTypeFlags::all(),
            api_base: "https://discord.com/api/v10".to_owned(),
            configure: None,
            fallback_gateway: Arc::default(),
        }
    }

    /// Which events [`Claimed::next`] deserializes and hands out (default: all).
    pub fn event_types(mut self, event_types: EventTypeFlags) -> Self {
        self.event_types = event_types;
        self
    }

    /// Discord's REST base (`DISCORD_API_BASE`), only used to read `/gateway` when shardman has
    /// no `gateway_url` to share.
    pub fn discord_api_base(mut self, api_base: String) -> Self {
        self.api_base = api_base.trim_end_matches('/').to_owned();
        self
    }

    /// Adjusts each shard's config before it is built.
    pub fn configure(
        mut self,
        configure: impl Fn(ShardId, ConfigBuilder<ShardmanQueue>) -> ConfigBuilder<ShardmanQueue>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.configure = Some(Arc::new(configure));
        self
    }

    /// The shardman client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Claims a shard group (waiting while none is free, see [`Client::claim`]) and starts its
    /// shards.
    pub async fn claim(&self) -> Result<Claimed, Error> {
        let claim = self.client.claim().await?;
        Ok(self.start(claim).await)
    }

    /// Starts the shards of a claim already made.
    pub async fn start(&self, claim: Claim) -> Claimed {
        let (deliveries_tx, deliveries) = mpsc::unbounded_channel();
        let group = self.launch(claim, 0, deliveries_tx).await;
        Claimed {
            intake: group.intake(),
            group,
            deliveries,
            released: None,
        }
    }

    /// Starts the shards of `claim`, which deliver to `deliveries` as claim `key`.
    pub(crate) async fn launch(
        &self,
        claim: Claim,
        key: u64,
        deliveries: mpsc::UnboundedSender<Delivery>,
    ) -> Group {
        // What the bot has got of each shard's session so far: nothing but what it inherited.
        let reports: Vec<Arc<Mutex<ShardReport>>> = claim
            .shard_ids
            .iter()
            .zip(&claim.resumes)
            .map(|(&shard_id, resume)| {
                Arc::new(Mutex::new(ShardReport {
                    shard_id,
                    resume: resume.clone(),
                    ..ShardReport::default()
                }))
            })
            .collect();
        // Beating starts with the claim, before anything else can take time.
        let keeper = LeaseKeeper::start(self.client.clone(), &claim, collect_reports(&reports));
        let gateway_url = match &claim.gateway_url {
            Some(url) => Some(url.clone()),
            None => self.gateway_from_rest().await,
        };
        let queue = ShardmanQueue::for_claim(self.client.clone(), &claim, &keeper);
        let wanted = self.event_types
            | EventTypeFlags::READY
            | EventTypeFlags::GUILD_CREATE
            | EventTypeFlags::GUILD_DELETE;
        let mut shards = Vec::new();
        for (index, &number) in claim.shard_ids.iter().enumerate() {
            let Some(id) = ShardId::new_checked(number, claim.shard_count) else {
                tracing::error!(
                    number,
                    claim.shard_count,
                    "shardman handed out an invalid shard"
                );
                keeper.release(Release::Failed);
                continue;
            };
            let mut config =
                ConfigBuilder::new(self.token.clone(), self.intents).queue(queue.clone());
            if let Some(url) = &gateway_url {
                config = config.proxy_url(url.trim_end_matches('/').to_owned());
            }
            if let Some(Some(resume)) = claim.resumes.get(index) {
                tracing::info!(
                    shard = number,
                    "resuming the previous holder's Discord session"
                );
                config = config
                    .session(Session::new(resume.sequence, resume.session_id.clone()))
                    .resume_url(resume.resume_gateway_url.trim_end_matches('/').to_owned());
            }
            if let Some(configure) = &self.configure {
                config = configure(id, config);
            }
            let shard = Shard::with_config(id, config.build());
            shards.push(tokio::spawn(run_shard(ShardTask {
                shard,
                key,
                index,
                report: reports[index].clone(),
                wanted,
                forward: self.event_types,
                deliveries: deliveries.clone(),
                reconnects: keeper.reconnects(),
                end: keeper.end(),
                lease: keeper.lease(),
            })));
        }
        tracing::info!(
            shard_ids = ?claim.shard_ids,
            shard_count = claim.shard_count,
            generation = claim.generation,
            state = ?claim.state,
            "claimed"
        );
        Group {
            claim,
            keeper,
            shards,
            reports,
        }
    }

    /// `GET {DISCORD_API_BASE}/gateway` once per fleet, for shardman versions or setups that do
    /// not share a `gateway_url`; `None` (twilight's default URL) when that fails too.
    async fn gateway_from_rest(&self) -> Option<String> {
        if let Some(url) = lock(&self.fallback_gateway).clone() {
            return Some(url);
        }
        #[derive(serde::Deserialize)]
        struct Gateway {
            url: String,
        }
        let token = if self.token.starts_with("Bot ") {
            self.token.clone()
        } else {
            format!("Bot {}", self.token)
        };
        shardman_client::install_crypto_provider();
        let answer = reqwest::Client::new()
            .get(format!("{}/gateway", self.api_base))
            .header("authorization", token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match answer {
            Ok(response) => match response.json::<Gateway>().await {
                Ok(gateway) => {
                    *lock(&self.fallback_gateway) = Some(gateway.url.clone());
                    Some(gateway.url)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable /gateway answer; using twilight's default");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "no gateway_url from shardman and /gateway failed; using twilight's default");
                None
            }
        }
    }
}

fn collect_reports(reports: &[Arc<Mutex<ShardReport>>]) -> Reports {
    let reports = reports.to_vec();
    Arc::new(move || reports.iter().map(|r| lock(r).clone()).collect())
}

/// What [`Claimed::next`] hands out.
// As large as twilight's own `Event`, which twilight hands out unboxed too.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Step {
    /// An event of one of the claimed shards.
    Event(ShardId, Event),
    /// The claim ended; its shards are closed. Claim anew unless it was `Retired` or `Shutdown`.
    Released(Release),
}

/// What a shard task passes on to [`Claimed::next`] or [`crate::Running::next`], in the order the shard
/// received it.
pub(crate) struct Delivery {
    /// The claim's key in a [`crate::Running`].
    pub(crate) key: u64,
    shard: ShardId,
    /// The shard's place in the claim.
    index: usize,
    /// The event, unless the bot did not ask for its type.
    event: Option<Event>,
    /// The shard's session as of this message: once the bot has got the message, the resume data
    /// to hand over.
    resume: Option<Resume>,
}

/// A claim's shards, lease keeper and reports: what [`Claimed`] and [`crate::Running`] drive.
pub(crate) struct Group {
    pub(crate) claim: Claim,
    keeper: LeaseKeeper,
    shards: Vec<JoinHandle<()>>,
    reports: Vec<Arc<Mutex<ShardReport>>>,
}

/// What a claim's deliveries are taken in with: its reports and its end.
pub(crate) struct Intake {
    reports: Vec<Arc<Mutex<ShardReport>>>,
    end: ClaimEnd,
}

impl Intake {
    /// A delivery's event for the bot, counting it in the resume data the claim hands over; none
    /// once the claim has ended (its last beat may have gone out: the next holder gets it
    /// replayed). Checked under the report's lock, which the last beat's reports are read under.
    pub(crate) fn accept(&self, delivery: Delivery) -> Option<(ShardId, Event)> {
        let mut report = lock(&self.reports[delivery.index]);
        if self.end.released().is_some() {
            return None;
        }
        if delivery.resume.is_some() {
            report.resume = delivery.resume;
        }
        delivery.event.map(|event| (delivery.shard, event))
    }

    /// Ends the claim for `release` unless it has ended already.
    pub(crate) fn release(&self, release: Release) {
        self.end.release(release);
    }
}

impl Group {
    /// Takes in the claim's deliveries.
    pub(crate) fn intake(&self) -> Intake {
        Intake {
            reports: self.reports.clone(),
            end: self.keeper.end(),
        }
    }

    fn reports(&self) -> Vec<ShardReport> {
        self.reports.iter().map(|r| lock(r).clone()).collect()
    }

    /// Once the claim has ended: waits for its shards to close, then gives it back where the
    /// reason says so (`Shutdown`, `Failed`, `HandedOver`: a last beat, `/disconnect`).
    pub(crate) async fn finish(&mut self) -> Release {
        self.keeper.ended().await;
        for shard in &mut self.shards {
            if let Err(e) = shard.await
                && e.is_panic()
            {
                tracing::error!(error = %e, "a shard task panicked");
            }
        }
        self.shards.clear();
        self.keeper.close(self.reports()).await
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for shard in &self.shards {
            shard.abort();
        }
    }
}

/// A claimed shard group whose shards run, beat and pace their IDENTIFY.
pub struct Claimed {
    group: Group,
    intake: Intake,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    released: Option<Release>,
}

impl Claimed {
    /// The `/connect` answer.
    pub fn claim(&self) -> &Claim {
        &self.group.claim
    }

    /// The lease view now.
    pub fn lease(&self) -> LeaseView {
        self.group.keeper.view()
    }

    /// `active` or `standby`, as the last beat answered it.
    pub fn state(&self) -> State {
        self.group.keeper.state()
    }

    /// What the next beat reports per shard.
    pub fn reports(&self) -> Vec<ShardReport> {
        self.group.reports()
    }

    /// The next event of any shard, or the end of the claim (after its shards were closed).
    ///
    /// The resume data beaten and handed over is that of the last message the bot got here (or
    /// skipped, not having asked for its type): what a shard received after it, once the claim
    /// ended, Discord replays to the next holder rather than this bot dropping it.
    pub async fn next(&mut self) -> Step {
        if let Some(release) = self.released {
            return Step::Released(release);
        }
        loop {
            tokio::select! {
                biased;
                _ = self.group.keeper.ended() => break,
                delivery = self.deliveries.recv() => {
                    // None: every shard task has ended, which they do only once the claim has.
                    let Some(delivery) = delivery else { break };
                    if let Some((shard, event)) = self.intake.accept(delivery) {
                        return Step::Event(shard, event);
                    }
                }
            }
        }
        let release = self.group.finish().await;
        self.released = Some(release);
        Step::Released(release)
    }

    /// Graceful stop: closes the shards (keeping their Discord sessions resumable), beats their
    /// last resume data and disconnects. Answers why the claim ended (`Shutdown`, or what had
    /// ended it before).
    pub async fn shutdown(&mut self) -> Release {
        if let Some(release) = self.released {
            return release;
        }
        self.group.keeper.release(Release::Shutdown);
        let release = self.group.finish().await;
        self.released = Some(release);
        release
    }
}

struct ShardTask {
    shard: Shard<ShardmanQueue>,
    key: u64,
    index: usize,
    report: Arc<Mutex<ShardReport>>,
    wanted: EventTypeFlags,
    forward: EventTypeFlags,
    deliveries: mpsc::UnboundedSender<Delivery>,
    /// Shard ids the beats ask to reconnect.
    reconnects: broadcast::Receiver<u32>,
    end: ClaimEnd,
    lease: SharedLease,
}

async fn run_shard(mut task: ShardTask) {
    let id = task.shard.id();
    let mut guilds = HashSet::new();
    let mut last_resume = None;
    loop {
        let message = tokio::select! {
            biased;
            _ = task.end.wait() => break,
            shard = next_reconnect(&mut task.reconnects) => {
                if shard == id.number() {
                    tracing::info!(shard, "reconnecting: closing resumably, twilight RESUMEs");
                    task.shard.close(CloseFrame::RESUME);
                }
                continue;
            }
            message = next_message_within(&mut task.shard, &task.lease) => message,
        };
        let message = match message {
            Within::Message(message) => message,
            Within::Lapsed => {
                // The lapse timer says so too in a moment; the shard is not polled again either way.
                task.end.release(Release::Lapsed);
                break;
            }
            Within::Ended => {
                // twilight gives up only on close codes that forbid reconnecting.
                tracing::error!(shard = id.number(), "Discord closed the shard for good");
                task.end.release(Release::Failed);
                return;
            }
        };
        let event = match message {
            Ok(Message::Close(frame)) => Some(Event::GatewayClose(frame)),
            Ok(Message::Text(json)) => match twilight_gateway::parse(json, task.wanted) {
                Ok(event) => event.map(Event::from),
                Err(e) => {
                    tracing::debug!(shard = id.number(), error = %e, "undecodable event");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(shard = id.number(), error = %e, "gateway error");
                None
            }
        };
        if let Some(event) = &event {
            count_guilds(&mut guilds, event);
            if let Event::Ready(ready) = event {
                tracing::info!(shard = id.number(), session = %ready.session_id, "READY");
            }
        }
        update_report(&task.shard, &task.report, &guilds);
        let event = event.filter(|event| task.forward.contains(EventTypeFlags::from(event.kind())));
        let resume = session_resume(&task.shard);
        if event.is_some() || resume != last_resume {
            last_resume.clone_from(&resume);
            // The receiver is gone only when the claim is being dropped.
            let _ = task.deliveries.send(Delivery {
                key: task.key,
                shard: id,
                index: task.index,
                event,
                resume,
            });
        }
    }
    let release = task.end.released();
    stop_shard(&mut task.shard, release).await;
    update_report(&task.shard, &task.report, &guilds);
}

/// The next shard id a beat asks to reconnect (never, once none can come: the shard's loop must
/// not spin on a closed channel).
async fn next_reconnect(reconnects: &mut broadcast::Receiver<u32>) -> u32 {
    loop {
        match reconnects.recv().await {
            Ok(shard) => return shard,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "missed reconnect requests");
            }
            Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
        }
    }
}

enum Within {
    Message(Result<Message, twilight_gateway::error::ReceiveMessageError>),
    /// The lease view has lapsed: the shard must not do anything more (no heartbeat, no RESUME
    /// after a process wakes from SIGSTOP).
    Lapsed,
    /// The shard closed for good.
    Ended,
}

/// The shard's next message, but only while the lease view holds: checked at every poll, so a
/// process woken past its deadline never lets the shard act before the lapse timer runs. After
/// every poll, an IDENTIFY Discord answered confirms its permit.
async fn next_message_within(shard: &mut Shard<ShardmanQueue>, lease: &SharedLease) -> Within {
    poll_fn(|cx| {
        if lease.is_lapsed(Instant::now()) {
            return Poll::Ready(Within::Lapsed);
        }
        let polled = futures_core::Stream::poll_next(Pin::new(&mut *shard), cx);
        if identify_answered(shard) {
            shard
                .config()
                .queue()
                .identify_answered(shard.id().number());
        }
        polled.map(|message| message.map_or(Within::Ended, Within::Message))
    })
    .await
}

/// Whether Discord has answered the shard's IDENTIFY (READY): only then is its permit confirmed.
/// twilight would show the IDENTIFY written earlier (its per-connection command rate limiter takes
/// a permit in the very poll that writes it), but a confirm sent at that point reaches shardman
/// before the IDENTIFY reaches a busy gateway often enough that the next IDENTIFY of the bucket,
/// paced from the confirm, came less than 5 s after it (seen: 4.9 s, the stand-in Discord on a
/// loaded machine, about one cold start in three). READY proves Discord has the IDENTIFY.
fn identify_answered(shard: &Shard<ShardmanQueue>) -> bool {
    shard.state() == ShardState::Active
}

async fn next_message(
    shard: &mut Shard<ShardmanQueue>,
) -> Option<Result<Message, twilight_gateway::error::ReceiveMessageError>> {
    poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *shard), cx)).await
}

/// Closes the connection at once. Keeps the Discord session resumable (close code 4000) so the
/// next holder can RESUME it with the data beaten last, unless the generation was retired. What
/// arrives before Discord's close answer is read but not handed to the bot, and so not counted in
/// the resume data: Discord replays it to the next holder.
async fn stop_shard(shard: &mut Shard<ShardmanQueue>, release: Option<Release>) {
    if matches!(
        shard.state(),
        ShardState::Disconnected { .. } | ShardState::FatallyClosed
    ) {
        return;
    }
    let code = release.unwrap_or(Release::Shutdown).close_code();
    shard.close(CloseFrame::new(code, "shardman: released"));
    let drained = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(message) = next_message(shard).await {
            if matches!(message, Ok(Message::Close(_))) {
                break;
            }
        }
    });
    if drained.await.is_err() {
        tracing::debug!(
            shard = shard.id().number(),
            "no close answer; dropping the connection"
        );
    }
    tracing::info!(shard = shard.id().number(), "shard closed");
}

fn count_guilds(guilds: &mut HashSet<u64>, event: &Event) {
    match event {
        Event::Ready(ready) => {
            guilds.clear();
            guilds.extend(ready.guilds.iter().map(|g| g.id.get()));
        }
        Event::GuildCreate(guild) => {
            guilds.insert(guild.id().get());
        }
        // `unavailable` set means an outage, not that the bot left the guild.
        Event::GuildDelete(guild) if guild.unavailable != Some(true) => {
            guilds.remove(&guild.id.get());
        }
        _ => {}
    }
}

/// The shard's Discord session as resume data, once it has one.
fn session_resume(shard: &Shard<ShardmanQueue>) -> Option<Resume> {
    match (shard.session(), shard.resume_url()) {
        (Some(session), Some(url)) => Some(Resume {
            session_id: session.id().to_owned(),
            sequence: session.sequence(),
            resume_gateway_url: url.to_owned(),
        }),
        _ => None,
    }
}

/// The guild count, latency and dispatch count of the next beat (its resume data is what the bot
/// has got, which [`Claimed::next`] sets).
fn update_report(shard: &Shard<ShardmanQueue>, report: &Mutex<ShardReport>, guilds: &HashSet<u64>) {
    let mut report = lock(report);
    if shard.state() == ShardState::Active || !guilds.is_empty() {
        report.guild_count = Some(guilds.len() as u64);
    }
    if let Some(latency) = shard.latency().recent().first() {
        report.latency = Some(latency.as_secs_f64());
    }
    // The dispatches the shard's session has received: its sequence, one per dispatch.
    report.events = shard.session().map(|session| session.sequence());
}
