//! A presented secret: read from `Authorization`, kept only as a digest.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// The secret of an `Authorization` value: `<secret>` or `Bearer <secret>`.
pub fn bearer_token(value: &str) -> &str {
    let value = value.trim();
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(value)
        .trim()
}

/// Holds only a digest of the secret: comparing digests takes the same time whatever the length
/// or content of the guess.
#[derive(Clone)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    pub fn new(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// A digest given as its bytes (a stand-in that no secret hashes to in practice).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Whether two digests are equal, in constant time.
    pub fn ct_eq(&self, other: &SecretDigest) -> Choice {
        self.0.ct_eq(&other.0)
    }
}
