//! twilight's IDENTIFY [`Queue`], paced by shardman through the core's [`IdentifyPacer`].

use shardman_client::{Claim, ClaimEnd, Client, IdentifyPacer, LeaseKeeper, lock};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use twilight_gateway::queue::Queue;

/// A twilight [`Queue`] backed by shardman: twilight asks it for a permit before every IDENTIFY,
/// and it grants one at the shard's slot ([`IdentifyPacer`]: the first from the `/connect`
/// answer, later ones booked with `POST /identify`, whose 404 or 401 ends the claim).
#[derive(Clone, Debug)]
pub struct ShardmanQueue {
    inner: Arc<QueueInner>,
}

#[derive(Debug)]
struct QueueInner {
    pacer: IdentifyPacer,
    end: ClaimEnd,
    /// Senders of IDENTIFY permits that will never be granted (the claim ended): kept, because a
    /// dropped sender makes twilight ask the queue again at once.
    parked: Mutex<Vec<oneshot::Sender<()>>>,
}

impl ShardmanQueue {
    /// The queue of `keeper`'s claim; also for driving a claim without twilight (tests, other
    /// gateway libraries).
    pub fn for_claim(client: Client, claim: &Claim, keeper: &LeaseKeeper) -> Self {
        Self {
            inner: Arc::new(QueueInner {
                pacer: IdentifyPacer::new(client, claim, keeper),
                end: keeper.end(),
                parked: Mutex::default(),
            }),
        }
    }
}

impl Queue for ShardmanQueue {
    fn enqueue(&self, shard: u32) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.grant(shard, tx).await });
        rx
    }
}

impl QueueInner {
    async fn grant(self: Arc<Self>, shard: u32, tx: oneshot::Sender<()>) {
        let mut permit = Some(tx);
        self.end
            .run_until_end(self.wait_and_grant(shard, &mut permit))
            .await;
        if let Some(tx) = permit {
            lock(&self.parked).push(tx);
        }
    }

    async fn wait_and_grant(&self, shard: u32, permit: &mut Option<oneshot::Sender<()>>) {
        let Some(slot) = self.pacer.slot(shard).await else {
            return; // the claim ended
        };
        tracing::debug!(shard, wait = ?slot.at.saturating_duration_since(std::time::Instant::now()), "waiting for the IDENTIFY slot");
        tokio::time::sleep_until(slot.at.into()).await;
        if let Some(tx) = permit.take()
            && tx.send(()).is_err()
        {
            // The shard lost its connection before the slot: the slot is still unused.
            self.pacer.unused(shard, slot);
        }
    }
}
