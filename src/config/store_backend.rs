//! Which store engine a replica runs on: one typed value, chosen from the Redis settings.

use super::parse::invalid_cluster_seed;
use super::settings::{ConfigError, Settings};

/// The store engine the settings ask for, with what it needs to connect. `REDIS_URL`,
/// `REDIS_SENTINELS` (with `REDIS_SENTINEL_MASTER`) and `REDIS_CLUSTER` each choose one; setting
/// none chooses the in-process store. Every engine's round trips are bounded by
/// `REDIS_TIMEOUT_MS`.
/// Not `Debug`: a URL may carry a password.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// State in this process: for exactly one replica.
    InProcess,
    /// One Redis server (`REDIS_URL`).
    Redis { url: String },
    /// The master that the sentinels (`host:port` each) monitor under `master`, followed after a
    /// failover; each with its password, if it asks for one.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
        sentinel_password: Option<String>,
        master_password: Option<String>,
    },
    /// A Redis Cluster, found through its seed nodes (`host:port` or `redis://` URLs).
    Cluster { seeds: Vec<String> },
}

impl Settings {
    /// The store engine these settings choose; an error names the Redis setting at fault (set
    /// without its companion, or beside another choice), never echoing a password.
    pub fn store_backend(&self) -> Result<StoreBackend, ConfigError> {
        let invalid = |variable: &'static str, value: String, reason: &str| ConfigError {
            variable,
            value,
            reason: reason.into(),
        };
        if !self.redis_sentinels.is_empty() {
            if self.redis_sentinel_master.is_none() {
                return Err(invalid(
                    "REDIS_SENTINEL_MASTER",
                    String::new(),
                    "must name the monitored master when REDIS_SENTINELS is set",
                ));
            }
            if self.redis_url.is_some() {
                // The URL may carry a password: never echo it.
                return Err(invalid(
                    "REDIS_URL",
                    "***".into(),
                    "set either REDIS_URL or REDIS_SENTINELS, not both",
                ));
            }
        } else if let Some(master) = &self.redis_sentinel_master {
            return Err(invalid(
                "REDIS_SENTINEL_MASTER",
                master.clone(),
                "needs REDIS_SENTINELS (host:port of each sentinel)",
            ));
        } else {
            for (variable, password) in [
                (
                    "REDIS_SENTINEL_MASTER_PASSWORD",
                    &self.redis_sentinel_master_password,
                ),
                ("REDIS_SENTINEL_PASSWORD", &self.redis_sentinel_password),
            ] {
                if password.is_some() {
                    return Err(invalid(
                        variable,
                        "***".into(),
                        "only with REDIS_SENTINELS (REDIS_URL and REDIS_CLUSTER carry the password \
                         in their URLs)",
                    ));
                }
            }
        }
        if let Some(reason) = self
            .redis_cluster
            .iter()
            .find_map(|seed| invalid_cluster_seed(seed))
        {
            return Err(invalid("REDIS_CLUSTER", "***".into(), &reason));
        }
        if !self.redis_cluster.is_empty()
            && (self.redis_url.is_some() || !self.redis_sentinels.is_empty())
        {
            // The seeds may carry a password: never echo them.
            return Err(invalid(
                "REDIS_CLUSTER",
                "***".into(),
                "set only one of REDIS_URL, REDIS_SENTINELS and REDIS_CLUSTER",
            ));
        }
        // The checks above leave at most one choice.
        Ok(if !self.redis_cluster.is_empty() {
            StoreBackend::Cluster {
                seeds: self.redis_cluster.clone(),
            }
        } else if let Some(master) = &self.redis_sentinel_master {
            let expose = |secret: &Option<super::Secret>| {
                secret.as_ref().map(|secret| secret.expose().to_owned())
            };
            StoreBackend::Sentinel {
                sentinels: self.redis_sentinels.clone(),
                master: master.clone(),
                sentinel_password: expose(&self.redis_sentinel_password),
                master_password: expose(&self.redis_sentinel_master_password),
            }
        } else if let Some(url) = &self.redis_url {
            StoreBackend::Redis { url: url.clone() }
        } else {
            StoreBackend::InProcess
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::settings::testing::{error, load};
    use super::*;

    fn backend(variables: &[(&str, &str)]) -> StoreBackend {
        load(variables)
            .and_then(|settings| settings.store_backend())
            .unwrap_or_else(|error| panic!("{variables:?}: {error}"))
    }

    #[test]
    fn each_redis_setting_chooses_its_engine_and_none_chooses_the_in_process_store() {
        assert!(backend(&[]) == StoreBackend::InProcess);
        assert!(
            backend(&[("REDIS_URL", " redis://10.0.0.9:6379 ")])
                == StoreBackend::Redis {
                    url: "redis://10.0.0.9:6379".into()
                }
        );
        assert!(
            backend(&[
                ("REDIS_SENTINELS", "10.0.0.5:26379,10.0.0.6:26379"),
                ("REDIS_SENTINEL_MASTER", "mymaster"),
            ]) == StoreBackend::Sentinel {
                sentinels: vec!["10.0.0.5:26379".into(), "10.0.0.6:26379".into()],
                master: "mymaster".into(),
                sentinel_password: None,
                master_password: None,
            }
        );
        assert!(
            backend(&[
                ("REDIS_SENTINELS", "10.0.0.5:26379"),
                ("REDIS_SENTINEL_MASTER", "mymaster"),
                ("REDIS_SENTINEL_PASSWORD", "sentinel-pw"),
                ("REDIS_SENTINEL_MASTER_PASSWORD", "master-pw"),
            ]) == StoreBackend::Sentinel {
                sentinels: vec!["10.0.0.5:26379".into()],
                master: "mymaster".into(),
                sentinel_password: Some("sentinel-pw".into()),
                master_password: Some("master-pw".into()),
            }
        );
        assert!(
            backend(&[("REDIS_CLUSTER", "10.0.0.1:7000,10.0.0.2:7000")])
                == StoreBackend::Cluster {
                    seeds: vec!["10.0.0.1:7000".into(), "10.0.0.2:7000".into()]
                }
        );
        assert!(
            Settings::default()
                .store_backend()
                .is_ok_and(|backend| backend == StoreBackend::InProcess),
            "Settings built in code default to the in-process store"
        );
    }

    #[test]
    fn the_sentinel_settings_need_each_other_and_exclude_redis_url() {
        assert_eq!(
            error(&[("REDIS_SENTINELS", "10.0.0.5:26379")]),
            r#"invalid REDIS_SENTINEL_MASTER="": must name the monitored master when REDIS_SENTINELS is set"#
        );
        assert_eq!(
            error(&[("REDIS_SENTINEL_MASTER", "mymaster")]),
            r#"invalid REDIS_SENTINEL_MASTER="mymaster": needs REDIS_SENTINELS (host:port of each sentinel)"#
        );
        assert_eq!(
            error(&[
                ("REDIS_SENTINELS", "10.0.0.5:26379"),
                ("REDIS_SENTINEL_MASTER", "mymaster"),
                ("REDIS_URL", "redis://:pw@10.0.0.9"),
            ]),
            r#"invalid REDIS_URL="***": set either REDIS_URL or REDIS_SENTINELS, not both"#
        );
        for variable in ["REDIS_SENTINEL_PASSWORD", "REDIS_SENTINEL_MASTER_PASSWORD"] {
            assert_eq!(
                error(&[("REDIS_URL", "redis://10.0.0.9"), (variable, "pw")]),
                format!(
                    r#"invalid {variable}="***": only with REDIS_SENTINELS (REDIS_URL and REDIS_CLUSTER carry the password in their URLs)"#
                )
            );
        }
    }

    #[test]
    fn redis_cluster_takes_seed_addresses_or_urls_and_excludes_the_other_redis_settings() {
        let settings = load(&[(
            "REDIS_CLUSTER",
            "rediss://:pw@10.0.0.1:7000, 10.0.0.2:7000,[::1]:7001",
        )])
        .expect("valid");
        assert_eq!(
            settings.redis_cluster,
            ["rediss://:pw@10.0.0.1:7000", "10.0.0.2:7000", "[::1]:7001"]
        );
        assert_eq!(
            error(&[
                ("REDIS_CLUSTER", "10.0.0.1:7000"),
                ("REDIS_URL", "redis://:pw@10.0.0.9")
            ]),
            r#"invalid REDIS_CLUSTER="***": set only one of REDIS_URL, REDIS_SENTINELS and REDIS_CLUSTER"#
        );
        let wrong_scheme = error(&[("REDIS_CLUSTER", "http://:pw@10.0.0.1:7000")]);
        assert!(wrong_scheme.contains("redis://"), "{wrong_scheme}");
        assert!(
            !wrong_scheme.contains("pw"),
            "the password is never echoed: {wrong_scheme}"
        );
    }
}
