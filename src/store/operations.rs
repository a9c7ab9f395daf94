//! The store's operations: what the service asks of the store, each one script call (or, for
//! shared values such as Discord's gateway info, one plain command).

use std::collections::HashMap;
use std::sync::Arc;

use ::redis::Value;

use super::scripts::{self, claim_events::Claimed, connect::Claim, disconnect::Released};
use super::scripts::{lock::Held, reap::Freed, settle_event::StillClaimed};
use super::{SCHEMA_VERSION, Store, StoreError, Wakeup, integers, text, unexpected};
use crate::domain::sizing::{ProcessAnswer, ScaleInHold};
use crate::domain::{
    BeatOutcome, BeatReport, ConnectOutcome, GatewayInfo, Grant, GrantedShard, IdentifyOutcome,
    IdentifyPacing, ReshardPlan,
};

/// The meta field holding the fleet's size by load and the load it was sized from:
/// `"<desired>:<events per second>:<cpu>"` ([`ProcessAnswer`]).
pub const PROCESSES_FIELD: &str = "autoscale_processes";
/// The meta field holding the scale-in being waited out: `"<since ms>:<count>"` ([`ScaleInHold`]).
pub const SCALE_IN_HOLD_FIELD: &str = "autoscale_scale_in_since";

/// The fleet's size by load as the autoscaler keeps it, shared by every replica.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessSizing {
    /// The last answer; `None` before the first evaluation (or after a data loss).
    pub answer: Option<ProcessAnswer>,
    /// The scale-in being waited out, if any.
    pub hold: Option<ScaleInHold>,
}
use crate::session_token::{SessionClaims, new_nonce};

impl Store {
    /// Claims the lowest free shard id for a new session and books its IDENTIFY slot, unless the
    /// free ones are spoken for by claims that wait (see `waiting.rs`). `process`: the label of
    /// the bot process, kept with the session.
    pub async fn connect(&self, process: Option<&str>) -> Result<ConnectOutcome, StoreError> {
        self.claim(process, IdentifyPacing::Slot, "").await
    }

    /// One claim attempt: `ticket` is a waiting claim's place in the queue, "" for none. With
    /// [`IdentifyPacing::Permit`] no slot is booked and no identify spent (the permits do).
    pub(super) async fn claim(
        &self,
        process: Option<&str>,
        pacing: IdentifyPacing,
        ticket: &str,
    ) -> Result<ConnectOutcome, StoreError> {
        let nonce = new_nonce();
        let claim = self
            .run_planned(&scripts::connect::Connect {
                nonce: &nonce,
                default_concurrency: self.default_concurrency,
                identify_reserve: self.identify_reserve,
                process_label: process,
                ticket,
                waiter_renew_ms: self.waiter_renew_ms(),
                identify_permits: pacing == IdentifyPacing::Permit,
            })
            .await?;
        Ok(match claim {
            Claim::Granted {
                lease,
                epoch,
                gateway_url,
                shards,
                shards_per_process,
            } => {
                let session_id = self.signer.sign(&SessionClaims {
                    shard_id: lease.shard_id,
                    generation: lease.generation,
                    max_shards: lease.max_shards,
                    fence: lease.fence,
                    epoch,
                    nonce,
                    shards_per_process,
                });
                ConnectOutcome::Granted(Grant {
                    session_id,
                    lease,
                    gateway_url,
                    shards: shards
                        .into_iter()
                        .map(|shard| GrantedShard {
                            shard_id: shard.shard_id,
                            sleep_ms: shard.sleep_ms,
                            resume: shard
                                .resume
                                .and_then(|json| serde_json::from_str(&json).ok()),
                        })
                        .collect(),
                })
            }
            Claim::Full => ConnectOutcome::Full,
            Claim::Recovering { retry_after_ms } => ConnectOutcome::Recovering { retry_after_ms },
            Claim::BudgetExhausted { retry_after_ms } => {
                ConnectOutcome::BudgetExhausted { retry_after_ms }
            }
        })
    }

    /// Whether this deployment signed `session_id` (one HMAC, no store round trip; says nothing
    /// about whether the session still holds its shard). The brute-force block lets these in.
    pub fn signed(&self, session_id: &str) -> bool {
        self.signer.verify(session_id).is_some()
    }

    /// Refreshes the session's lease and stores its report. Beats go to the store in batches
    /// (group commit, see `group_commit.rs`); the answer is this beat's own.
    pub async fn beat(self: &Arc<Self>, report: &BeatReport) -> Result<BeatOutcome, StoreError> {
        // A session id this deployment did not sign names no session: no need to ask the store.
        let Some(claims) = self.verify_session(&report.session_id) else {
            return Ok(BeatOutcome::NotFound);
        };
        self.commit_beat(scripts::beat::Beat::from_claims(claims, report))
            .await
    }

    /// Frees the session's shard at once; `false` when there was no such session.
    pub async fn disconnect(&self, session_id: &str) -> Result<bool, StoreError> {
        let Some(claims) = self.verify_session(session_id) else {
            return Ok(false);
        };
        let Released(released) = self
            .run(&scripts::disconnect::Disconnect {
                nonce: &claims.nonce,
                resume_window_ms: self.resume_window_ms,
                shard_id: claims.shard_id,
                generation: claims.generation,
            })
            .await?;
        if released {
            self.wake(Wakeup::Freed);
        }
        Ok(released)
    }

    /// Books the next IDENTIFY slot for a session that must identify again.
    /// `shard_id`: the shard of the session's group that must identify (`None`: its first).
    pub async fn identify(
        &self,
        session_id: &str,
        shard_id: Option<u32>,
    ) -> Result<IdentifyOutcome, StoreError> {
        let Some(claims) = self.verify_session(session_id) else {
            return Ok(IdentifyOutcome::NotFound);
        };
        self.run_planned(&scripts::identify::Identify {
            nonce: &claims.nonce,
            default_concurrency: self.default_concurrency,
            identify_reserve: self.identify_reserve,
            shard_id: claims.shard_id,
            generation: claims.generation,
            identify_shard_id: shard_id,
        })
        .await
    }

    /// Starts a pending generation with `max_shards` (or changes nothing if that is the plan).
    /// `shards_per_process`: the new generation's group size (`None`: the planned one).
    pub async fn reshard(
        &self,
        max_shards: u32,
        shards_per_process: Option<u32>,
    ) -> Result<ReshardPlan, StoreError> {
        let plan = self
            .run_planned(&scripts::reshard::Reshard {
                new_max_shards: max_shards,
                new_shards_per_process: shards_per_process,
            })
            .await?;
        // A new generation's shards are all free.
        if plan.started {
            self.wake(Wakeup::Freed);
        }
        Ok(plan)
    }

    /// Frees expired leases and queues an `expire` event for each; returns how many.
    pub async fn reap_expired(&self) -> Result<usize, StoreError> {
        let Freed(freed) = self.run(&scripts::reap::Reap {}).await?;
        if freed > 0 {
            self.wake(Wakeup::Freed);
        }
        Ok(freed)
    }

    /// Takes or renews the lock `name` for `owner`; false when another owner holds it.
    pub async fn try_lock(&self, name: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let Held(held) = self
            .run(&scripts::lock::Lock {
                lock_name: name,
                owner,
                ttl_ms,
            })
            .await?;
        Ok(held)
    }

    /// Shares Discord's gateway info; resets the count of identifies granted against its budget.
    pub async fn save_gateway(&self, info: &GatewayInfo) -> Result<(), StoreError> {
        let time = self.now_ms().await?;
        let reset_at = time + info.session_start_reset_after_ms;
        let fields = [
            ("read_at", time.to_string()),
            ("shards", info.shards.to_string()),
            ("max_concurrency", info.max_concurrency.max(1).to_string()),
            ("total", info.session_start_total.to_string()),
            ("remaining", info.session_start_remaining.to_string()),
            ("reset_at", reset_at.to_string()),
            ("used", "0".to_owned()),
        ];
        let mut args = vec!["HSET", &self.keys.gateway];
        for (name, value) in &fields {
            args.push(name);
            args.push(value);
        }
        if let Some(url) = &info.url {
            args.extend(["url", url.as_str()]);
        }
        self.engine.command(&args).await?;
        // A fresh budget above the reserve may alert again when it runs low.
        self.engine
            .command(&["HDEL", &self.keys.gateway, "low_alerted"])
            .await?;
        Ok(())
    }

    /// Discord's gateway info if some replica read it less than `max_age_ms` ago (store time).
    pub async fn gateway_read_within(
        &self,
        max_age_ms: u64,
    ) -> Result<Option<GatewayInfo>, StoreError> {
        let reply = self
            .engine
            .command(&["HGET", &self.keys.gateway, "read_at"])
            .await?;
        let Some(read_at) = text(Some(&reply)).and_then(|text| text.parse::<u64>().ok()) else {
            return Ok(None);
        };
        if self.now_ms().await?.saturating_sub(read_at) >= max_age_ms {
            return Ok(None);
        }
        self.gateway().await
    }

    pub async fn gateway(&self) -> Result<Option<GatewayInfo>, StoreError> {
        let reply = self
            .engine
            .command(&["HGETALL", &self.keys.gateway])
            .await?;
        let fields = hash(&reply);
        let number = |name: &str| fields.get(name).and_then(|value| value.parse::<u64>().ok());
        let (Some(shards), Some(max_concurrency)) = (number("shards"), number("max_concurrency"))
        else {
            return Ok(None);
        };
        let now = self.now_ms().await?;
        Ok(Some(GatewayInfo {
            shards: shards as u32,
            max_concurrency: max_concurrency as u32,
            session_start_total: number("total").unwrap_or(0) as u32,
            session_start_remaining: number("remaining")
                .unwrap_or(0)
                .saturating_sub(number("used").unwrap_or(0))
                as u32,
            session_start_reset_after_ms: number("reset_at").unwrap_or(0).saturating_sub(now),
            url: fields.get("url").cloned(),
        }))
    }

    /// Claims up to `max` alert events for `redeliver_ms`, as queued text (see claim_events.lua):
    /// overdue claims of a replica that died first, then the oldest queued.
    pub async fn claim_events(
        &self,
        max: u64,
        redeliver_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        let Claimed(events) = self
            .run(&scripts::claim_events::ClaimEvents {
                max_events: max.max(1),
                redeliver_ms,
            })
            .await?;
        Ok(events)
    }

    /// Ends a claim (`redeliver_ms` 0: delivered or given up) or renews it; false when the claim
    /// had lapsed and the event was handed out again.
    pub async fn settle_event(&self, event: &str, redeliver_ms: u64) -> Result<bool, StoreError> {
        let StillClaimed(still) = self
            .run(&scripts::settle_event::SettleEvent {
                event,
                redeliver_ms,
            })
            .await?;
        Ok(still)
    }

    /// A small shared value (such as when the autoscaler's lower target was first seen).
    pub async fn get_meta(&self, field: &str) -> Result<Option<String>, StoreError> {
        let reply = self
            .engine
            .command(&["HGET", &self.keys.meta, field])
            .await?;
        Ok(text(Some(&reply)))
    }

    pub async fn set_meta(&self, field: &str, value: Option<&str>) -> Result<(), StoreError> {
        match value {
            Some(value) => {
                self.engine
                    .command(&["HSET", &self.keys.meta, field, value])
                    .await?
            }
            None => {
                self.engine
                    .command(&["HDEL", &self.keys.meta, field])
                    .await?
            }
        };
        Ok(())
    }

    /// The fleet's size by load, as the autoscaler last kept it. A field that does not decode
    /// (written by another build) reads as unset.
    pub async fn process_sizing(&self) -> Result<ProcessSizing, StoreError> {
        let answer = self.get_meta(PROCESSES_FIELD).await?;
        let hold = self.get_meta(SCALE_IN_HOLD_FIELD).await?;
        Ok(ProcessSizing {
            answer: answer.as_deref().and_then(ProcessAnswer::decode),
            hold: hold.as_deref().and_then(ScaleInHold::decode),
        })
    }

    /// Keeps `sizing` in place of `kept` (what [`Store::process_sizing`] read), writing only the
    /// fields that changed.
    pub async fn save_process_sizing(
        &self,
        sizing: ProcessSizing,
        kept: ProcessSizing,
    ) -> Result<(), StoreError> {
        if sizing.answer != kept.answer {
            let answer = sizing.answer.map(|answer| answer.encode());
            self.set_meta(PROCESSES_FIELD, answer.as_deref()).await?;
        }
        if sizing.hold != kept.hold {
            let hold = sizing.hold.map(|hold| hold.encode());
            self.set_meta(SCALE_IN_HOLD_FIELD, hold.as_deref()).await?;
        }
        Ok(())
    }

    /// The store's clock (Redis `TIME`), in ms since the epoch: the one clock all replicas share.
    pub async fn now_ms(&self) -> Result<u64, StoreError> {
        let reply = self.engine.command(&["TIME"]).await?;
        match integers(&reply, "TIME")?[..] {
            [seconds, micros] => Ok(seconds as u64 * 1000 + micros as u64 / 1000),
            _ => Err(unexpected("TIME", &reply)),
        }
    }

    /// Succeeds when the store answers and no newer build has taken over the deployment's data.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let reply = self.engine.command(&["GET", &self.keys.schema]).await?;
        match text(Some(&reply)).and_then(|version| version.parse::<u64>().ok()) {
            Some(found) if found > SCHEMA_VERSION => Err(StoreError::SchemaTooNew {
                found,
                known: SCHEMA_VERSION,
            }),
            _ => Ok(()),
        }
    }
}

/// HGETALL's reply (a flat array in RESP2, a map in RESP3) as a map.
fn hash(reply: &Value) -> HashMap<String, String> {
    match reply {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|pair| Some((text(pair.first())?, text(pair.get(1))?)))
            .collect(),
        Value::Map(pairs) => pairs
            .iter()
            .filter_map(|(name, value)| Some((text(Some(name))?, text(Some(value))?)))
            .collect(),
        _ => HashMap::new(),
    }
}
