//! Session ids that carry their own lease, signed with the deployment's secret.
//!
//! `/connect` hands out `<shard>.<generation>.<max_shards>.<fence>.<epoch>.<nonce>.<mac>`, with
//! `.<shards_per_process>` after the nonce when the session holds a shard group of more than one
//! (so ids of one-shard sessions are exactly what they were). The nonce
//! (128 random bits) is the session's key in the store; the rest lets a beat re-establish its lease
//! after Redis lost its data, and the MAC (HMAC-SHA256 under a key derived from SECRET, 128 bits
//! kept) proves shardman issued it, so nobody can mint a session for a shard they never held.

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

/// Signs and checks session ids.
pub struct SessionSigner {
    key: [u8; 32],
}

const MAC_BYTES: usize = 16;

impl SessionSigner {
    /// A key for one deployment: deployments sharing a Redis (and even a secret) under different
    /// key prefixes never accept each other's session ids.
    pub fn new(secret: &str, key_prefix: &str) -> Self {
        // A key of its own, so a session id's MAC reveals nothing usable about the API secret.
        let mut derive = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
        derive.update(b"shardman session id v1\0");
        derive.update(key_prefix.as_bytes());
        Self {
            key: derive.finalize().into_bytes().into(),
        }
    }

    fn mac(&self, payload: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length");
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
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{payload}.{}", hex::encode(&tag[..MAC_BYTES]))
    }

    /// The claims of a session id this deployment issued; `None` for anything else (compared in
    /// constant time, never panics).
    pub fn verify(&self, session_id: &str) -> Option<SessionClaims> {
        if session_id.len() > 200 {
            return None;
        }
        let (payload, tag) = session_id.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        if tag.len() != MAC_BYTES {
            return None;
        }
        self.mac(payload).verify_truncated_left(&tag).ok()?;
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
        well_formed.then_some(claims)
    }
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
}
