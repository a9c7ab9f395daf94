//! The one error type of the HTTP layer. Every failure a handler can meet maps to a status code and
//! a `{"detail": ...}` body shaped like the original FastAPI service's.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::json;

use crate::store::StoreError;

/// One entry of a FastAPI validation error: where, what, and pydantic's error type.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValidationIssue {
    pub loc: Vec<serde_json::Value>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl ValidationIssue {
    pub fn new(loc: &[&str], msg: &str, kind: &str) -> Self {
        Self {
            loc: loc.iter().map(|part| json!(part)).collect(),
            msg: msg.into(),
            kind: kind.into(),
        }
    }

    pub fn missing(loc: &[&str]) -> Self {
        Self::new(loc, "field required", "value_error.missing")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("No Shards Available")]
    NoShardsAvailable,
    #[error("Invalid Token")]
    InvalidToken,
    #[error("Session Not Found")]
    SessionNotFound,
    #[error("Not Found")]
    RouteNotFound,
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    #[error("validation failed")]
    Validation(Vec<ValidationIssue>),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// This replica's secret for the bot is not the deployment's (secret drift): it serves none of
    /// the bot's writes; another replica will.
    #[error("Secret Differs From Deployment")]
    SecretDiffersFromDeployment,
    /// Redis lost its data; new grants wait until running bots have re-established their leases.
    #[error("Recovering From Store Data Loss")]
    Recovering { retry_after_secs: u64 },
    /// Come back after `retry_after_secs` (sent as `Retry-After`).
    #[error("{detail}")]
    TooManyRequests {
        detail: String,
        retry_after_secs: u64,
    },
    #[error("Internal Server Error")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(issue: ValidationIssue) -> Self {
        ApiError::Validation(vec![issue])
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(reason) => {
                log::warn!("store unavailable: {reason}");
                ApiError::Unavailable("Store Unavailable".into())
            }
            StoreError::SchemaTooNew { found, known } => {
                log::error!(
                    "a newer shardman raised the key schema to {found} (this build knows {known}): \
                     this replica no longer writes; replace it with the new build"
                );
                ApiError::Unavailable("Replica Outdated".into())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: &str = "1";

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NoShardsAvailable => StatusCode::UNAUTHORIZED,
            ApiError::InvalidToken => StatusCode::FORBIDDEN,
            ApiError::SessionNotFound | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) | ApiError::SecretDiffersFromDeployment => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Recovering { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            ApiError::Validation(issues) => json!({ "detail": issues }),
            ApiError::Internal(reason) => {
                log::error!("internal error: {reason}");
                json!({ "detail": self.to_string() })
            }
            other => json!({ "detail": other.to_string() }),
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unavailable(_) | ApiError::SecretDiffersFromDeployment => {
                response.insert_header((
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                ));
            }
            ApiError::TooManyRequests {
                retry_after_secs, ..
            }
            | ApiError::Recovering { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            _ => {}
        }
        response.json(body)
    }
}
