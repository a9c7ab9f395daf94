//! twilight's IDENTIFY [`Queue`], paced by shardman's permits through the core's
//! [`IdentifyPacer`].

use shardman_client::{Claim, ClaimEnd, Client, IdentifyPacer, LeaseKeeper, lock};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use twilight_gateway::queue::Queue;

/// A twilight [`Queue`] backed by shardman: twilight asks it before every IDENTIFY, once the
/// shard's connection is open (after HELLO), and it asks `POST /identify/permit` until the shard's
/// bucket is open, then lets the shard IDENTIFY (a 404 or 401 ends the claim instead). The adapter
/// tells it when Discord answered the IDENTIFY ([`ShardmanQueue::identify_answered`]), which
/// confirms the permit.
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

    /// Discord has answered `shard`'s IDENTIFY (READY): confirms its permit, if one awaits
    /// confirming (in the background; calls without one do nothing).
    pub fn identify_answered(&self, shard: u32) {
        if let Some(confirm) = self.inner.pacer.confirm(shard) {
            tokio::spawn(confirm);
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
            .run_until_end(self.ask_and_grant(shard, &mut permit))
            .await;
        if let Some(tx) = permit
            && !tx.is_closed()
        {
            lock(&self.parked).push(tx);
        }
    }

    async fn ask_and_grant(&self, shard: u32, permit: &mut Option<oneshot::Sender<()>>) {
        let Some(tx) = permit.as_mut() else { return };
        let granted = tokio::select! {
            // The shard lost its connection while waiting: it asks again on its next one, so
            // this request stops rather than take a permit nobody uses.
            () = tx.closed() => return,
            granted = self.pacer.permit(shard) => granted,
        };
        if !granted {
            return; // the claim ended
        }
        if let Some(tx) = permit.take()
            && tx.send(()).is_err()
        {
            self.pacer.unused(shard);
        }
    }
}
