//! Session ids that carry their own lease, signed with the deployment's secret.
//!
//! `/connect` hands out `<shard>.<generation>.<max_shards>.<fence>.<epoch>.<nonce>.<mac>`, with
//! `.<shards_per_process>` after the nonce when the session holds a shard group of more than one
//! (so ids of one-shard sessions are exactly what they were). The nonce
//! (128 random bits) is the session's key in the store; the rest lets a beat re-establish its lease
//! after Redis lost its data, and the MAC (HMAC-SHA256 under a key derived from SECRET, 128 bits
//! kept) proves shardman issued it, so nobody can mint a session for a shard they never held.
//!
//! During a secret rotation (`SECRET_PREVIOUS`) a session id signed under the previous secret
//! still verifies, and [`SessionSigner::resign`] gives the same session signed under the current
//! one: a beat hands it back, so finishing the rotation ends no session. The signing key is
//! derived from the secret rather than kept in Redis, because a session id must stay verifiable
//! after Redis lost its data (that is how a lease comes back).
//!
//! [`secret_fingerprint`] derives a third value from the secret: what replicas compare in the
//! store to notice that one of them runs another `SECRET` (never the secret itself).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a session id says about its lease, as the store recorded it at `/connect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionClaims {
    pub shard_id: u32,
    pub generation: u64,
    pub max_shards: u32,
    pub fence: u64,
    /// When the shard plan the session was granted under was created (ms of store time): a plan
    /// with another epoch was re-created after a data loss.
    pub epoch: u64,
    /// 32 hex digits: the session's key in the store.
    pub nonce: String,
    /// The group size of the session's generation (1: one shard per session).
    pub shards_per_process: u32,
}

/// Which key a session id verified under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningKey {
    /// The key of `SECRET`: the one new session ids are signed with.
    Current,
    /// The key of `SECRET_PREVIOUS`: accepted during a rotation, never used to sign.
    Previous,
}

/// Signs and checks session ids.
pub struct SessionSigner {
    key: [u8; 32],
    previous: Option<[u8; 32]>,
}

const MAC_BYTES: usize = 16;

/// Labels of the keys derived from a secret: a session id's MAC and a fingerprint are made under
/// keys of their own, so neither reveals anything usable about the API secret or about the other.
const SESSION_KEY_LABEL: &[u8] = b"shardman session id v1\0";
const FINGERPRINT_KEY_LABEL: &[u8] = b"shardman secret fingerprint v1\0";
/// What a fingerprint is the MAC of.
const FINGERPRINT_MESSAGE: &[u8] = b"the deployment's secret";

/// A key for one deployment, derived from `secret` for one use: deployments sharing a Redis (and
/// even a secret) under different key prefixes get different keys.
fn derive_key(secret: &str, label: &[u8], key_prefix: &str) -> [u8; 32] {
    let mut derive = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    derive.update(label);
    derive.update(key_prefix.as_bytes());
    derive.finalize().into_bytes().into()
}

impl SessionSigner {
    /// Signs and verifies with the key of `secret`, for one deployment (`key_prefix`).
    pub fn new(secret: &str, key_prefix: &str) -> Self {
        Self::rotating(secret, None, key_prefix)
    }

    /// Signs with the key of `secret`; verifies with it or with the key of `previous` (the secret
    /// being rotated away from, or towards: see README, "Rotating the secret").
    pub fn rotating(secret: &str, previous: Option<&str>, key_prefix: &str) -> Self {
        Self {
            key: derive_key(secret, SESSION_KEY_LABEL, key_prefix),
            previous: previous.map(|previous| derive_key(previous, SESSION_KEY_LABEL, key_prefix)),
        }
    }

    fn mac(key: &[u8; 32], payload: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
        mac.update(payload.as_bytes());
        mac
    }

    pub fn sign(&self, claims: &SessionClaims) -> String {
        let mut payload = format!(
            "{}.{}.{}.{}.{}.{}",
            claims.shard_id,
            claims.generation,
            claims.max_shards,
            claims.fence,
            claims.epoch,
            claims.nonce
        );
        if claims.shards_per_process > 1 {
            payload.push_str(&format!(".{}", claims.shards_per_process));
        }
        let tag = Self::mac(&self.key, &payload).finalize().into_bytes();
        format!("{payload}.{}", hex::encode(&tag[..MAC_BYTES]))
    }

    /// The claims of a session id this deployment issued; `None` for anything else (compared in
    /// constant time, never panics).
    pub fn verify(&self, session_id: &str) -> Option<SessionClaims> {
        self.verify_with_key(session_id).map(|(claims, _)| claims)
    }

    /// [`SessionSigner::verify`], saying which key the id verified under.
    pub fn verify_with_key(&self, session_id: &str) -> Option<(SessionClaims, SigningKey)> {
        if session_id.len() > 200 {
            return None;
        }
        let (payload, tag) = session_id.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        if tag.len() != MAC_BYTES {
            return None;
        }
        let key = if Self::mac(&self.key, payload)
            .verify_truncated_left(&tag)
            .is_ok()
        {
            SigningKey::Current
        } else {
            let previous = self.previous.as_ref()?;
            Self::mac(previous, payload)
                .verify_truncated_left(&tag)
                .ok()?;
            SigningKey::Previous
        };
        let mut parts = payload.split('.');
        let claims = SessionClaims {
            shard_id: parts.next()?.parse().ok()?,
            generation: parts.next()?.parse().ok()?,
            max_shards: parts.next()?.parse().ok()?,
            fence: parts.next()?.parse().ok()?,
            epoch: parts.next()?.parse().ok()?,
            nonce: parts.next()?.to_owned(),
            shards_per_process: match parts.next() {
                Some(size) => size.parse().ok().filter(|size| *size > 1)?,
                None => 1,
            },
        };
        let well_formed = parts.next().is_none()
            && claims.nonce.len() == 32
            && claims.nonce.bytes().all(|byte| byte.is_ascii_hexdigit());
        well_formed.then_some((claims, key))
    }

    /// The same session (same claims, same nonce, so the same lease) signed with the current key,
    /// when `session_id` verifies only under the previous one; `None` otherwise.
    pub fn resign(&self, session_id: &str) -> Option<String> {
        // Outside a rotation, no HMAC at all: every beat asks.
        self.previous.as_ref()?;
        match self.verify_with_key(session_id)? {
            (claims, SigningKey::Previous) => Some(self.sign(&claims)),
            (_, SigningKey::Current) => None,
        }
    }
}

/// What replicas record in the store to compare their secrets (see `store::secret_drift`): the
/// MAC of a fixed message under a key derived from `secret` for this deployment, 128 bits in hex.
/// It tells whether two replicas run the same secret and nothing more; like any MAC of a known
/// message, it lets whoever reads it test guesses of a weak secret offline, as a session id does.
pub fn secret_fingerprint(secret: &str, key_prefix: &str) -> String {
    let key = derive_key(secret, FINGERPRINT_KEY_LABEL, key_prefix);
    let mut mac = HmacSha256::new_from_slice(&key).expect("any key length");
    mac.update(FINGERPRINT_MESSAGE);
    hex::encode(&mac.finalize().into_bytes()[..MAC_BYTES])
}

/// 128 bits from the operating system's CSPRNG (UUID v4): the part of a session id nobody can guess.
pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> SessionClaims {
        SessionClaims {
            shard_id: 7,
            generation: 2,
            max_shards: 16,
            fence: 41,
            epoch: 1_764_000_000_000,
            nonce: new_nonce(),
            shards_per_process: 1,
        }
    }

    #[test]
    fn a_group_session_id_carries_its_group_size_and_a_single_one_keeps_the_old_form() {
        let signer = SessionSigner::new("secret", "shardman");
        let single = signer.sign(&claims());
        assert_eq!(single.split('.').count(), 7, "{single}");
        let group = SessionClaims {
            shards_per_process: 4,
            ..claims()
        };
        assert_eq!(signer.verify(&signer.sign(&group)), Some(group));
    }

    #[test]
    fn a_signed_session_id_verifies_to_its_claims() {
        let signer = SessionSigner::new("secret", "shardman");
        let claims = claims();
        assert_eq!(signer.verify(&signer.sign(&claims)), Some(claims));
    }

    #[test]
    fn a_tampered_or_foreign_session_id_does_not_verify() {
        let signer = SessionSigner::new("secret", "shardman");
        let id = signer.sign(&claims());
        let other_shard = id.replacen("7.", "8.", 1);
        assert_eq!(signer.verify(&other_shard), None);
        assert_eq!(
            SessionSigner::new("other secret", "shardman").verify(&id),
            None
        );
        assert_eq!(
            SessionSigner::new("secret", "other-deployment").verify(&id),
            None
        );
        for junk in [
            "",
            ".",
            "a.b.c.d.e.f.g",
            "x".repeat(500).as_str(),
            "1.2.3.4.5.6.zz",
        ] {
            assert_eq!(signer.verify(junk), None);
        }
    }

    #[test]
    fn a_rotating_signer_accepts_the_previous_key_but_signs_with_the_current_one() {
        let old = SessionSigner::new("old", "shardman");
        let rotating = SessionSigner::rotating("new", Some("old"), "shardman");
        let new = SessionSigner::new("new", "shardman");
        let claims = claims();
        let signed_before = old.sign(&claims);
        assert_eq!(
            rotating.verify_with_key(&signed_before),
            Some((claims.clone(), SigningKey::Previous))
        );
        let signed_now = rotating.sign(&claims);
        assert_eq!(
            signed_now,
            new.sign(&claims),
            "never signed with the previous key"
        );
        assert_eq!(
            rotating.verify_with_key(&signed_now),
            Some((claims.clone(), SigningKey::Current))
        );
        assert_eq!(old.verify(&signed_now), None);
        assert_eq!(
            SessionSigner::rotating("new", Some("old"), "other-deployment").verify(&signed_before),
            None,
            "the previous key is the deployment's too"
        );
    }

    #[test]
    fn a_session_signed_with_the_previous_key_is_resigned_with_its_claims_and_nonce() {
        let rotating = SessionSigner::rotating("new", Some("old"), "shardman");
        let claims = claims();
        let before = SessionSigner::new("old", "shardman").sign(&claims);
        let resigned = rotating.resign(&before).expect("re-signed");
        assert_ne!(resigned, before);
        assert_eq!(
            SessionSigner::new("new", "shardman").verify(&resigned),
            Some(claims),
            "the same session, verifiable once the old secret is dropped"
        );
        assert_eq!(
            rotating.resign(&resigned),
            None,
            "current ids stay as they are"
        );
        assert_eq!(rotating.resign("1.2.3.4.5.6.zz"), None);
        assert_eq!(SessionSigner::new("new", "shardman").resign(&before), None);
    }

    #[test]
    fn a_secret_fingerprint_tells_secrets_and_deployments_apart_and_shows_neither() {
        let fingerprint = secret_fingerprint("alpha", "shardman");
        assert_eq!(fingerprint, secret_fingerprint("alpha", "shardman"));
        assert_eq!(fingerprint.len(), 32);
        assert_ne!(fingerprint, secret_fingerprint("beta", "shardman"));
        assert_ne!(fingerprint, secret_fingerprint("alpha", "other-deployment"));
        assert!(!fingerprint.contains("alpha"));
        // Not a session id's MAC either: its key is derived under another label.
        let signer = SessionSigner::new("alpha", "shardman");
        assert!(!signer.sign(&claims()).ends_with(&fingerprint));
    }
}
