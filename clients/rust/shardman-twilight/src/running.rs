//! Every claim a process is given, run side by side: one at a time with shard groups, as many as
//! placement hands out with `SHARDS_PER_PROCESS=auto` (README "Placing shards by load").

use crate::gateway::{Delivery, Fleet, Intake};
use shardman_client::{Claim, Error, Placement, Release};
use std::collections::HashMap;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use twilight_gateway::{Event, ShardId};

/// What [`Running::next`] hands out.
// As large as twilight's own `Event`, which twilight hands out unboxed too.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Notice {
    /// `/connect` granted a claim; its shards are starting.
    Claimed(Claim),
    /// An event of a shard of one of the claims.
    Event(ShardId, Event),
    /// A claim ended: its shards are closed, and it was given back where the reason says so.
    Released(Claim, Release),
}

/// Runs the claims shardman gives this process ([`crate::Fleet::run`]). With shard groups
/// (`placement: groups`) that is one claim at a time: the next is asked once the last one has
/// ended. With placement by load (`placement: load`, one shard a claim) it keeps one waiting
/// `GET /connect?wait=30` open at all times and runs every claim granted, each with its own lease,
/// beats and shards; a beat answering `hand_over` ends only that claim (`HandedOver`: closed
/// resumably, a last beat with the last sequence the bot got, `/disconnect`), and the others go on.
pub struct Running {
    fleet: Fleet,
    deliveries_tx: mpsc::UnboundedSender<Delivery>,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    /// The running claims, by key: how their deliveries are taken in.
    live: HashMap<u64, Intake>,
    /// One task per running claim: waits for its end, then closes it.
    finishing: JoinSet<(u64, Claim, Release)>,
    /// The claim being asked for.
    waiting: Option<JoinHandle<Result<Claim, Error>>>,
    /// How shardman placed the last claim (groups until one says otherwise).
    placement: Placement,
    next_key: u64,
}

/// What woke [`Running::next`].
enum Woke {
    Finished(u64, Claim, Release),
    Delivered(Delivery),
    Granted(Result<Claim, Error>),
}

impl Fleet {
    /// Runs every claim shardman gives this process (see [`Running`]). (Declared here, beside
    /// what it returns, so that `gateway` does not import `running`, which imports it.)
    pub fn run(&self) -> Running {
        Running::new(self.clone())
    }
}

impl Running {
    fn new(fleet: Fleet) -> Self {
        let (deliveries_tx, deliveries) = mpsc::unbounded_channel();
        Self {
            fleet,
            deliveries_tx,
            deliveries,
            live: HashMap::new(),
            finishing: JoinSet::new(),
            waiting: None,
            placement: Placement::Groups,
            next_key: 0,
        }
    }

    /// The next claim, event or release. An error is one that claiming again cannot fix (403, an
    /// unexpected answer, see [`shardman_client::Client::claim`]).
    pub async fn next(&mut self) -> Result<Notice, Error> {
        loop {
            let wants_claim = self.live.is_empty() || self.placement == Placement::Load;
            if self.waiting.is_none() && wants_claim {
                let client = self.fleet.client().clone();
                self.waiting = Some(tokio::spawn(async move { client.claim().await }));
            }
            let woke = {
                let Self {
                    finishing,
                    deliveries,
                    waiting,
                    ..
                } = self;
                tokio::select! {
                    biased;
                    Some(finished) = finishing.join_next() => match finished {
                        Ok((key, claim, release)) => Woke::Finished(key, claim, release),
                        Err(e) => std::panic::resume_unwind(e.into_panic()),
                    },
                    Some(delivery) = deliveries.recv() => Woke::Delivered(delivery),
                    granted = async { waiting.as_mut().expect("checked").await }, if waiting.is_some() => {
                        Woke::Granted(granted.expect("the claiming task does not panic"))
                    }
                }
            };
            match woke {
                Woke::Finished(key, claim, release) => {
                    self.live.remove(&key);
                    return Ok(Notice::Released(claim, release));
                }
                Woke::Delivered(delivery) => {
                    if let Some(intake) = self.live.get(&delivery.key)
                        && let Some((shard, event)) = intake.accept(delivery)
                    {
                        return Ok(Notice::Event(shard, event));
                    }
                }
                Woke::Granted(granted) => {
                    self.waiting = None;
                    let claim = granted?;
                    self.placement = claim.placement;
                    self.start(claim.clone()).await;
                    return Ok(Notice::Claimed(claim));
                }
            }
        }
    }

    async fn start(&mut self, claim: Claim) {
        let key = self.next_key;
        self.next_key += 1;
        let mut group = self
            .fleet
            .launch(claim, key, self.deliveries_tx.clone())
            .await;
        self.live.insert(key, group.intake());
        self.finishing.spawn(async move {
            let release = group.finish().await;
            (key, group.claim.clone(), release)
        });
    }

    /// The exit code of a process whose claim ended this way, `None` while it goes on. With
    /// groups, [`Release::exit_code`]. By load, a claim's end is the process's only when it
    /// cannot run shards at all (`Failed`): a retired claim leaves the process to the active
    /// generation's claims, and a handed-over, lapsed or lost one to its others and its waiting
    /// claim.
    pub fn exit_code(&self, release: Release) -> Option<u8> {
        match self.placement {
            Placement::Groups => release.exit_code(),
            Placement::Load => (release == Release::Failed)
                .then(|| release.exit_code())
                .flatten(),
        }
    }

    /// Graceful stop: stops asking for claims, then ends every running claim as `Shutdown` (closed
    /// resumably, a last beat with its resume data, `/disconnect`), all at once. Answers each
    /// claim with why it ended.
    pub async fn shutdown(&mut self) -> Vec<(Claim, Release)> {
        if let Some(waiting) = self.waiting.take() {
            waiting.abort();
        }
        for intake in self.live.values() {
            intake.release(Release::Shutdown);
        }
        let mut released = Vec::new();
        while let Some(finished) = self.finishing.join_next().await {
            match finished {
                Ok((key, claim, release)) => {
                    self.live.remove(&key);
                    released.push((claim, release));
                }
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        released
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(waiting) = &self.waiting {
            waiting.abort();
        }
    }
}
