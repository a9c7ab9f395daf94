//! A bot's secrets as the store sees them: session ids verified under the current secret or,
//! during a rotation, the previous one (whose uses are counted), re-signed under the current one,
//! and the secret-drift check that keeps a replica running another `SECRET` from serving the bot.
//!
//! Drift: each replica compares fingerprints of its secrets with the deployment's record in the
//! store (`secret_fingerprint.lua`), at start and every few seconds (`jobs::secret_drift`). A
//! refused replica stays refused until a check accepts it; meanwhile its writes for the bot answer
//! 503 and so does its `/readyz` (`http::auth`, `http::routes::health`). The in-process store is
//! one process: it never checks and is never refused.

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use subtle::ConstantTimeEq;

use super::scripts::secret_fingerprint::{Compared, SecretFingerprint, Verdict};
use super::{Store, StoreError};
use crate::config::Settings;
use crate::session_token::{SessionClaims, SigningKey, secret_fingerprint};

/// How often this replica used the bot's previous secret (`SECRET_PREVIOUS`): once both counts
/// stay flat for a lease on every replica, no bot sends it and no session is signed with it, and a
/// rotation's second phase is complete.
#[derive(Default)]
pub struct PreviousSecretUses {
    /// Requests whose `Authorization` was the previous secret.
    pub authorization: AtomicU64,
    /// Session ids that verified only under the previous secret's key (each beat of one is
    /// answered with the session re-signed).
    pub session: AtomicU64,
}

/// This replica's fingerprints of the bot's secrets, and what the last drift check found.
pub(super) struct SecretDrift {
    current: String,
    previous: Option<String>,
    key_prefix: String,
    refused: AtomicBool,
    /// The deployment's fingerprints while refused: the deployment's secret is told apart by
    /// them, so that its requests answer 503 here rather than 403.
    deployment: RwLock<Vec<String>>,
}

impl SecretDrift {
    pub(super) fn new(settings: &Settings) -> Self {
        let fingerprint = |secret: &crate::config::Secret| {
            secret_fingerprint(secret.expose(), &settings.key_prefix)
        };
        Self {
            current: settings
                .secret
                .as_ref()
                .map(fingerprint)
                .unwrap_or_default(),
            previous: settings.secret_previous.as_ref().map(fingerprint),
            key_prefix: settings.key_prefix.clone(),
            refused: AtomicBool::new(false),
            deployment: RwLock::new(Vec::new()),
        }
    }
}

impl Store {
    /// The claims of a session id this deployment signed, under the current secret or the
    /// previous one; a use of the previous one is counted.
    pub(super) fn verify_session(&self, session_id: &str) -> Option<SessionClaims> {
        let (claims, key) = self.signer.verify_with_key(session_id)?;
        if key == SigningKey::Previous {
            self.previous_secret_uses
                .session
                .fetch_add(1, Ordering::Relaxed);
        }
        Some(claims)
    }

    /// The same session signed under the current secret, when `session_id` verifies only under
    /// the previous one: a beat answers it, and the client sends it from then on.
    pub fn resigned(&self, session_id: &str) -> Option<String> {
        self.signer.resign(session_id)
    }

    /// This replica's counts of uses of the previous secret, shared with the bot's authenticator.
    pub fn previous_secret_uses(&self) -> &std::sync::Arc<PreviousSecretUses> {
        &self.previous_secret_uses
    }

    /// Whether the last drift check found that this replica's secret for the bot is not the
    /// deployment's (never on the in-process store).
    pub fn secret_refused(&self) -> bool {
        self.secret_drift.refused.load(Ordering::Relaxed)
    }

    /// While refused: whether `presented` is the deployment's secret (current or previous), by
    /// its fingerprint, compared in constant time. False at once while accepted.
    pub fn is_deployment_secret(&self, presented: &str) -> bool {
        if !self.secret_refused() {
            return false;
        }
        let fingerprint = secret_fingerprint(presented, &self.secret_drift.key_prefix);
        let deployment = self
            .secret_drift
            .deployment
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        deployment.iter().fold(false, |found, known| {
            found | bool::from(known.as_bytes().ct_eq(fingerprint.as_bytes()))
        })
    }

    /// Compares this replica's secret with the deployment's (see `secret_fingerprint.lua`),
    /// remembers the verdict and logs when it changes. The in-process store skips it. A store
    /// that does not answer leaves the verdict as it was.
    pub async fn check_secret(&self) -> Result<Verdict, StoreError> {
        if self.is_embedded() {
            return Ok(Verdict::Accepted);
        }
        let drift = &self.secret_drift;
        let compared = self
            .run(&SecretFingerprint {
                current: &drift.current,
                previous: drift.previous.as_deref(),
            })
            .await?;
        let refused = compared.verdict == Verdict::Refused;
        *drift
            .deployment
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = if refused {
            deployment_fingerprints(&compared)
        } else {
            Vec::new()
        };
        let was_refused = drift.refused.swap(refused, Ordering::Relaxed);
        let prefix = &drift.key_prefix;
        match compared.verdict {
            Verdict::Refused if !was_refused => log::error!(
                "this replica's SECRET for the bot with key prefix {{{prefix}}} differs from the \
                 deployment's: neither its SECRET nor its SECRET_PREVIOUS is the SECRET the other \
                 replicas recorded in the store. It refuses this bot's writes (503 \"Secret \
                 Differs From Deployment\") and /readyz answers 503 until its SECRET is the \
                 deployment's (see README, \"Secret drift\")"
            ),
            Verdict::Refused => {}
            _ if was_refused => log::warn!(
                "this replica's SECRET for the bot with key prefix {{{prefix}}} is the \
                 deployment's again: serving it"
            ),
            Verdict::Advanced => log::warn!(
                "secret rotation for the bot with key prefix {{{prefix}}}: this replica's SECRET \
                 is now the deployment's, its SECRET_PREVIOUS still accepted"
            ),
            Verdict::Cleared => log::warn!(
                "secret rotation for the bot with key prefix {{{prefix}}} complete: the previous \
                 SECRET is no longer the deployment's"
            ),
            Verdict::Created | Verdict::Accepted => {}
        }
        Ok(compared.verdict)
    }
}

fn deployment_fingerprints(compared: &Compared) -> Vec<String> {
    std::iter::once(compared.record_current.clone())
        .chain(compared.record_previous.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::session_token::SessionSigner;

    async fn embedded_store() -> Store {
        let settings = Settings {
            secret: Some(Secret::new("unused")),
            ..Settings::default()
        };
        Store::open(&settings)
            .await
            .expect("the embedded store opens")
    }

    /// Runs the script on the embedded engine (which the check itself skips) with these
    /// fingerprints, and answers the verdict and the record afterwards.
    async fn compare(
        store: &Store,
        current: &str,
        previous: Option<&str>,
    ) -> (Verdict, String, Option<String>) {
        let compared = store
            .run(&SecretFingerprint { current, previous })
            .await
            .expect("the script runs");
        (
            compared.verdict,
            compared.record_current,
            compared.record_previous,
        )
    }

    fn record(current: &str, previous: Option<&str>) -> (String, Option<String>) {
        (current.to_owned(), previous.map(str::to_owned))
    }

    #[tokio::test]
    async fn the_first_replica_creates_the_record_and_another_secret_is_refused() {
        let store = embedded_store().await;
        let (verdict, current, previous) = compare(&store, "alpha", None).await;
        assert_eq!(
            (verdict, (current, previous)),
            (Verdict::Created, record("alpha", None))
        );
        assert_eq!(compare(&store, "alpha", None).await.0, Verdict::Accepted);
        let (verdict, current, previous) = compare(&store, "beta", None).await;
        assert_eq!(
            (verdict, (current, previous)),
            (Verdict::Refused, record("alpha", None)),
            "a refused replica changes nothing"
        );
        assert_eq!(
            compare(&store, "beta", Some("gamma")).await.0,
            Verdict::Refused,
            "nor does one whose previous secret is not the deployment's"
        );
    }

    #[tokio::test]
    async fn a_rotation_moves_the_record_phase_by_phase_and_accepts_every_replica_on_the_way() {
        let store = embedded_store().await;
        compare(&store, "old", None).await;
        // Phase 1: SECRET=old, SECRET_PREVIOUS=new beside replicas still on SECRET=old.
        assert_eq!(
            compare(&store, "old", Some("new")).await,
            (Verdict::Accepted, "old".into(), None)
        );
        assert_eq!(compare(&store, "old", None).await.0, Verdict::Accepted);
        // Phase 2: SECRET=new, SECRET_PREVIOUS=old moves the record; phase-1 replicas stay.
        assert_eq!(
            compare(&store, "new", Some("old")).await,
            (Verdict::Advanced, "new".into(), Some("old".into()))
        );
        assert_eq!(
            compare(&store, "new", Some("old")).await.0,
            Verdict::Accepted
        );
        assert_eq!(
            compare(&store, "old", Some("new")).await.0,
            Verdict::Accepted
        );
        assert_eq!(
            compare(&store, "other", Some("new")).await.0,
            Verdict::Refused,
            "one rotation at a time: the next starts once this one is complete"
        );
        // Phase 3: SECRET=new alone ends the rotation; phase-2 replicas stay, the old secret goes.
        assert_eq!(
            compare(&store, "new", None).await,
            (Verdict::Cleared, "new".into(), None)
        );
        assert_eq!(
            compare(&store, "new", Some("old")).await.0,
            Verdict::Accepted
        );
        assert_eq!(compare(&store, "old", None).await.0, Verdict::Refused);
        // And the next rotation may begin (a replica left on SECRET=old, SECRET_PREVIOUS=new would
        // begin one back to the old secret: it cannot be told from one).
        assert_eq!(
            compare(&store, "newer", Some("new")).await,
            (Verdict::Advanced, "newer".into(), Some("new".into()))
        );
    }

    #[tokio::test]
    async fn a_record_created_in_the_middle_of_a_rotation_ends_where_the_rotation_does() {
        let store = embedded_store().await;
        // After a data loss in phase 1, or a deployment started there: old, and new accepted.
        assert_eq!(
            compare(&store, "old", Some("new")).await,
            (Verdict::Created, "old".into(), Some("new".into()))
        );
        assert_eq!(
            compare(&store, "new", Some("old")).await.0,
            Verdict::Accepted
        );
        assert_eq!(
            compare(&store, "new", None).await,
            (Verdict::Cleared, "new".into(), None)
        );
        assert_eq!(compare(&store, "old", Some("x")).await.0, Verdict::Refused);
        assert_eq!(
            compare(&store, "newer", Some("new")).await.0,
            Verdict::Advanced,
            "and the next rotation may begin"
        );
    }

    #[tokio::test]
    async fn a_session_signed_under_the_previous_secret_beats_is_counted_and_resigned() {
        let settings = Settings {
            secret: Some(Secret::new("new")),
            secret_previous: Some(Secret::new("old")),
            ..Settings::default()
        };
        let store = std::sync::Arc::new(Store::open(&settings).await.expect("opens"));
        let signed_now = match store.connect(None).await.expect("connect") {
            crate::domain::ConnectOutcome::Granted(grant) => grant.session_id,
            other => panic!("no grant: {other:?}"),
        };
        let claims = store.signer.verify(&signed_now).expect("signed");
        let signed_before = SessionSigner::new("old", &settings.key_prefix).sign(&claims);
        let report = |session_id: &str| crate::domain::BeatReport {
            session_id: session_id.to_owned(),
            ready: true,
            ..Default::default()
        };
        let uses = || store.previous_secret_uses().session.load(Ordering::Relaxed);
        assert!(matches!(
            store.beat(&report(&signed_now)).await,
            Ok(crate::domain::BeatOutcome::Alive(_))
        ));
        assert_eq!((uses(), store.resigned(&signed_now)), (0, None));
        assert!(matches!(
            store.beat(&report(&signed_before)).await,
            Ok(crate::domain::BeatOutcome::Alive(_))
        ));
        assert_eq!(uses(), 1);
        assert_eq!(store.resigned(&signed_before), Some(signed_now));
    }

    #[tokio::test]
    async fn the_in_process_store_never_checks_and_is_never_refused() {
        let store = embedded_store().await;
        assert_eq!(store.check_secret().await.ok(), Some(Verdict::Accepted));
        assert!(!store.secret_refused());
        assert!(!store.is_deployment_secret("unused"));
    }
}
