//! Key names of one deployment, as Rust passes them in `KEYS`.
//!
//! All share the hash tag `{KEY_PREFIX}`, so they live in one Redis Cluster slot and scripts may
//! touch any of them. The per-generation and per-shard keys are built inside the scripts, by
//! `gen_key` in `migrations-lua/includes/common.lua`: the whole layout is described there.

pub(super) struct Keys {
    /// `{prefix}:`, ARGV[1] of every script: the scripts derive every other key from it.
    pub base: String,
    pub schema: String,
    pub plan: String,
    pub fence: String,
    pub gateway: String,
    pub identify: String,
    /// Each bucket's outstanding IDENTIFY permit (identify_permit.lua).
    pub identify_permits: String,
    pub events: String,
    pub events_inflight: String,
    pub meta: String,
    pub quarantine: String,
    /// The fleet's load history (record_load.lua).
    pub load_history: String,
    /// The pub/sub channel of wake-ups between replicas (`wakeups.rs`); no key.
    pub wakeups: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        let base = format!("{{{prefix}}}:");
        let key = |name: &str| format!("{base}{name}");
        Self {
            schema: key("schema"),
            plan: key("plan"),
            fence: key("fence"),
            gateway: key("gateway"),
            identify: key("identify"),
            identify_permits: key("identify:permits"),
            events: key("events"),
            events_inflight: key("events:inflight"),
            meta: key("meta"),
            quarantine: key("quarantine"),
            load_history: key("load:history"),
            wakeups: key("wakeups"),
            base,
        }
    }
}
