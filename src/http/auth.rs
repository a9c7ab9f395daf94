//! `Authorization: <SECRET>` (or `Bearer <SECRET>`), compared in constant time.

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use sha2::{Digest, Sha256};
use std::future::{Ready, ready};
use subtle::ConstantTimeEq;

use crate::http::error::{ApiError, ValidationIssue};
use crate::http::rate_limit::FailedAuthLimiter;

/// What checking a caller takes: the secret and the failed authentications per client address
/// (brute-force protection). Registered as app data of its own, once per replica.
pub struct Authenticator {
    secret: SecretDigest,
    failed_auth: FailedAuthLimiter,
}

impl Authenticator {
    pub fn new(secret: &str, failed_auth: FailedAuthLimiter) -> Self {
        Self {
            secret: SecretDigest::new(secret),
            failed_auth,
        }
    }
}

/// Holds only a digest of the secret: comparing digests takes the same time whatever the length
/// or content of the guess.
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    pub fn new(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0.ct_eq(&digest).into()
    }
}

/// What the `Authorization` header says about the caller.
enum Credentials {
    Missing,
    Wrong,
    Valid,
    /// The caller's address failed too often: answered 429 without looking at the secret.
    Limited(std::time::Duration),
}

fn credentials(req: &HttpRequest) -> Credentials {
    let Some(state) = req.app_data::<web::Data<Authenticator>>() else {
        return Credentials::Wrong;
    };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Credentials::Missing;
    };
    let value = value.to_str().unwrap_or_default().trim();
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(value)
        .trim();
    let address = state.failed_auth.client_address(req);
    if let Some(address) = address
        && let Err(wait) = state.failed_auth.check(address)
    {
        return Credentials::Limited(wait);
    }
    if state.secret.matches(token) {
        return Credentials::Valid;
    }
    match address.map(|address| state.failed_auth.record_failure(address)) {
        Some(Err(wait)) => {
            log::warn!("failed authentications from {address:?} over the limit: blocked");
            Credentials::Limited(wait)
        }
        _ => Credentials::Wrong,
    }
}

fn too_many_failures(wait: std::time::Duration) -> ApiError {
    ApiError::TooManyRequests {
        detail: "Too Many Failed Authentications".into(),
        retry_after_secs: crate::http::rate_limit::retry_after_secs(wait),
    }
}

/// Extractor for routes that need the secret: 422 without the header (as FastAPI did), 403 when wrong.
pub struct Authorized;

impl FromRequest for Authorized {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match credentials(req) {
            Credentials::Valid => Ok(Authorized),
            Credentials::Wrong => Err(ApiError::InvalidToken),
            Credentials::Limited(wait) => Err(too_many_failures(wait)),
            Credentials::Missing => Err(missing_header()),
        })
    }
}

/// Extractor for routes that anonymous callers may see in part (`PUBLIC_STATUS`): tells whether
/// the caller presented the secret, and refuses a wrong one.
pub struct MaybeAuthorized {
    pub authorized: bool,
}

impl FromRequest for MaybeAuthorized {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match credentials(req) {
            Credentials::Valid => Ok(MaybeAuthorized { authorized: true }),
            Credentials::Missing => Ok(MaybeAuthorized { authorized: false }),
            Credentials::Wrong => Err(ApiError::InvalidToken),
            Credentials::Limited(wait) => Err(too_many_failures(wait)),
        })
    }
}

/// FastAPI's 422 for a request without `Authorization`.
pub fn missing_header() -> ApiError {
    ApiError::invalid(ValidationIssue::missing(&["header", "authorization"]))
}
