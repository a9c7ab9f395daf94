//! Every error the API answers, as one table: each row is a type of its own, a variant of
//! [`ApiError`], a `{"detail": ...}` response shaped like the original FastAPI service's, and the
//! OpenAPI response that documents it. A route answers with an error set ([`error_set!`]) that
//! lists the rows it can produce, so its OpenAPI entry is generated from the same list the compiler
//! holds it to.

use std::collections::BTreeMap;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{ContentBuilder, Object, Ref, RefOr, ResponseBuilder, Type};

use crate::store::StoreError;

/// One entry of a FastAPI validation error: where, what, and pydantic's error type.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValidationIssue {
    pub loc: Vec<Value>,
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

/// Generates, from the table below, one type per row, the [`ApiError`] variant holding it, and
/// each row's status, `detail` and `Retry-After`. A row reads
/// `Name { field: Type = example, .. } => STATUS, detail, retry_after = seconds;` where `detail` is
/// a format string over the fields (or one field, serialised as is: the 422's list of issues),
/// `retry_after` is a number of seconds or a field (left out: no `Retry-After`), and the example
/// values fill the row's example in the OpenAPI document. The doc comment is the row's meaning.
macro_rules! error_table {
    (@struct $(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name;
    };
    (@struct $(#[$meta:meta])* $name:ident { $($field:ident: $type:ty),+ }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name { $(pub $field: $type),+ }
    };
    (@example $name:ident) => { $name };
    (@example $name:ident { $($field:ident = $example:expr),+ }) => { $name { $($field: $example),+ } };
    (@detail $field:ident) => { json!($field) };
    (@detail $template:literal) => { Value::String(format!($template)) };
    (@retry_after) => { None };
    (@retry_after $field:ident) => { Some(*$field) };
    (@retry_after $seconds:literal) => { Some($seconds) };
    ($(
        $(#[doc = $doc:literal])+
        $name:ident $({ $($field:ident: $type:ty = $example:expr),+ $(,)? })?
            => $status:ident, $detail:tt $(, retry_after = $retry_after:tt)?;
    )+) => {
        $(
            error_table!(@struct $(#[doc = $doc])+ $name $({ $($field: $type),+ })?);

            impl From<$name> for ApiError {
                fn from(error: $name) -> Self {
                    ApiError::$name(error)
                }
            }

            impl ErrorSet for $name {
                fn members() -> Vec<DocumentedError> {
                    vec![DocumentedError {
                        name: stringify!($name),
                        description: concat!($($doc),+).trim().to_owned(),
                        example: error_table!(@example $name $({ $($field = $example),+ })?).into(),
                    }]
                }
            }
        )+

        /// Any row of the table. Handlers answer with their route's error set, which holds one.
        #[derive(Clone, Debug, PartialEq)]
        pub enum ApiError {
            $($name($name)),+
        }

        impl ApiError {
            pub fn status(&self) -> StatusCode {
                match self {
                    $(ApiError::$name(_) => StatusCode::$status),+
                }
            }

            /// The body's `detail`: a text, or the list of issues of a 422.
            // A row's fields are bound whether or not its detail names them.
            #[allow(unused_variables)]
            pub fn detail(&self) -> Value {
                match self {
                    $(ApiError::$name($name $({ $($field),+ })?) => error_table!(@detail $detail)),+
                }
            }

            /// Seconds for `Retry-After`, for the rows that send it.
            #[allow(unused_variables)]
            pub fn retry_after_secs(&self) -> Option<u64> {
                match self {
                    $(ApiError::$name($name $({ $($field),+ })?) => error_table!(@retry_after $($retry_after)?)),+
                }
            }
        }
    };
}

error_table! {
    /// Every shard id is held, or the caller's shard is no longer planned: stop that shard.
    NoShardsAvailable => UNAUTHORIZED, "No Shards Available";
    /// The secret is wrong.
    InvalidToken => FORBIDDEN, "Invalid Token";
    /// The session is unknown, expired or released.
    SessionNotFound => NOT_FOUND, "Session Not Found";
    /// No route has this path.
    RouteNotFound => NOT_FOUND, "Not Found";
    /// The path is served, with another method.
    MethodNotAllowed => METHOD_NOT_ALLOWED, "Method Not Allowed";
    /// A header, a field or the body itself is missing or ill-typed: every issue at once, in
    /// FastAPI's shape.
    ValidationFailed {
        issues: Vec<ValidationIssue> = vec![ValidationIssue::missing(&["header", "authorization"])],
    } => UNPROCESSABLE_ENTITY, issues;
    /// No live session and no waiting claim has this process label.
    ProcessNotFound => NOT_FOUND, "Process Not Found";
    /// The request needs placement by load (`SHARDS_PER_PROCESS=auto`); with fixed groups a
    /// process hands its shards over when it gets SIGTERM.
    NeedsPlacementByLoad => CONFLICT, "Needs SHARDS_PER_PROCESS=auto";
    /// The request body is over 64 KiB.
    BodyTooLarge { limit_bytes: usize = 64 * 1024 }
        => PAYLOAD_TOO_LARGE, "Request body exceeds {limit_bytes} bytes";
    /// `extra`'s JSON text is longer than `MAX_EXTRA_BYTES`.
    ExtraTooLarge { limit_bytes: usize = 16 * 1024 }
        => PAYLOAD_TOO_LARGE, "extra exceeds MAX_EXTRA_BYTES ({limit_bytes} bytes)";
    /// Discord's daily identify budget is down to its reserve (`Retry-After`: until it resets).
    IdentifyBudgetExhausted { retry_after_secs: u64 = 3600 }
        => TOO_MANY_REQUESTS, "Identify Budget Exhausted", retry_after = retry_after_secs;
    /// This client address failed to authenticate too often: blocked (`Retry-After`) before its
    /// secret is even compared.
    TooManyFailedAuthentications { retry_after_secs: u64 = 12 }
        => TOO_MANY_REQUESTS, "Too Many Failed Authentications", retry_after = retry_after_secs;
    /// An unexpected failure; the reason is logged, not sent.
    Internal { reason: String = "unexpected reply".into() } => INTERNAL_SERVER_ERROR, "Internal Server Error";
    /// The store does not answer (`Retry-After`).
    StoreUnavailable => SERVICE_UNAVAILABLE, "Store Unavailable", retry_after = 1;
    /// A newer shardman raised the store's key schema: this replica no longer writes (`Retry-After`).
    ReplicaOutdated => SERVICE_UNAVAILABLE, "Replica Outdated", retry_after = 1;
    /// The replica received SIGTERM and is draining (`Retry-After`).
    ShuttingDown => SERVICE_UNAVAILABLE, "Shutting Down", retry_after = 1;
    /// This replica's secret for the bot is not the deployment's (secret drift): it serves none of
    /// the bot's writes, and nothing asked with the deployment's secret; another replica will
    /// (`Retry-After`).
    SecretDiffersFromDeployment => SERVICE_UNAVAILABLE, "Secret Differs From Deployment", retry_after = 1;
    /// The store lost its data; new grants wait until running bots have re-established their
    /// leases (`Retry-After`).
    RecoveringFromDataLoss { retry_after_secs: u64 = 60 }
        => SERVICE_UNAVAILABLE, "Recovering From Store Data Loss", retry_after = retry_after_secs;
}

impl From<ValidationIssue> for ValidationFailed {
    fn from(issue: ValidationIssue) -> Self {
        ValidationFailed {
            issues: vec![issue],
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.detail() {
            Value::String(text) => formatter.write_str(&text),
            issues => write!(formatter, "validation failed: {issues}"),
        }
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(Internal { reason }) = self {
            log::error!("internal error: {reason}");
        }
        let mut response = HttpResponse::build(self.status());
        if let Some(seconds) = self.retry_after_secs() {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(json!({ "detail": self.detail() }))
    }
}

/// One error as a route's OpenAPI entry shows it.
#[derive(Clone, Debug)]
pub struct DocumentedError {
    /// The row's name: the key of its example.
    pub name: &'static str,
    /// What it means on this route.
    pub description: String,
    /// The row filled with its example values: its status, body and headers are the real ones.
    pub example: ApiError,
}

/// Errors a type stands for: one row, or every member of an error set.
pub trait ErrorSet: Into<ApiError> {
    fn members() -> Vec<DocumentedError>;
}

/// Declares the errors a route (or an extractor) can answer with: a type that converts from each
/// member listed (a row, or another set), answers as the row it holds, and implements
/// `utoipa::IntoResponses`, so naming it in `#[utoipa::path(responses(...))]` documents exactly
/// these. `Member = "text"` says what the member means on this route instead of the row's own
/// description.
macro_rules! error_set {
    (
        $(#[$meta:meta])*
        $visibility:vis $set:ident { $($member:ty $(= $description:literal)?),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        $visibility struct $set($crate::http::error::ApiError);

        $(
            impl From<$member> for $set {
                fn from(error: $member) -> Self {
                    Self(error.into())
                }
            }
        )+

        impl From<$set> for $crate::http::error::ApiError {
            fn from(error: $set) -> Self {
                error.0
            }
        }

        impl $crate::http::error::ErrorSet for $set {
            fn members() -> Vec<$crate::http::error::DocumentedError> {
                let mut all = Vec::new();
                $(
                    #[allow(unused_mut)]
                    let mut members =
                        <$member as $crate::http::error::ErrorSet>::members();
                    $(
                        for member in &mut members {
                            member.description = $description.to_owned();
                        }
                    )?
                    all.extend(members);
                )+
                all
            }
        }

        impl std::fmt::Display for $set {
            fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, formatter)
            }
        }

        impl actix_web::ResponseError for $set {
            fn status_code(&self) -> actix_web::http::StatusCode {
                self.0.status()
            }

            fn error_response(&self) -> actix_web::HttpResponse {
                actix_web::ResponseError::error_response(&self.0)
            }
        }

        impl utoipa::IntoResponses for $set {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                $crate::http::error::documented_responses(
                    &<Self as $crate::http::error::ErrorSet>::members(),
                )
            }
        }
    };
}
pub(crate) use error_set;

error_set! {
    /// What a store call can fail with.
    pub StoreFailure { StoreUnavailable, ReplicaOutdated, Internal }
}

impl From<StoreError> for StoreFailure {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(reason) => {
                log::warn!("store unavailable: {reason}");
                StoreUnavailable.into()
            }
            StoreError::SchemaTooNew { found, known } => {
                log::error!(
                    "a newer shardman raised the key schema to {found} (this build knows {known}): \
                     this replica no longer writes; replace it with the new build"
                );
                ReplicaOutdated.into()
            }
            other => Internal {
                reason: other.to_string(),
            }
            .into(),
        }
    }
}

/// A store error is a member of a route's set as the store failures it becomes, so handlers can
/// `?` the store's results.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        StoreFailure::from(error).into()
    }
}

impl ErrorSet for StoreError {
    fn members() -> Vec<DocumentedError> {
        StoreFailure::members()
    }
}

/// The OpenAPI responses of an error set: one per status, listing what each member means there,
/// with each member's example body and, when any of them sends it, `Retry-After`.
pub fn documented_responses(
    members: &[DocumentedError],
) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    let mut by_status: BTreeMap<u16, Vec<&DocumentedError>> = BTreeMap::new();
    for member in members {
        by_status
            .entry(member.example.status().as_u16())
            .or_default()
            .push(member);
    }
    by_status
        .into_iter()
        .map(|(status, members)| (status.to_string(), documented_response(&members).into()))
        .collect()
}

fn documented_response(members: &[&DocumentedError]) -> ResponseBuilder {
    let mut descriptions: Vec<&str> = Vec::new();
    let mut examples = BTreeMap::new();
    for member in members {
        if !descriptions.contains(&member.description.as_str()) {
            descriptions.push(&member.description);
        }
        examples.entry(member.name).or_insert_with(|| {
            ExampleBuilder::new()
                .summary(member.description.as_str())
                .value(Some(json!({ "detail": member.example.detail() })))
                .build()
        });
    }
    let schema = if members
        .iter()
        .any(|member| member.example.detail().is_array())
    {
        "ValidationError"
    } else {
        "Detail"
    };
    let description = match descriptions.as_slice() {
        [only] => (*only).to_owned(),
        several => several
            .iter()
            .map(|text| format!("- {text}"))
            .collect::<Vec<_>>()
            .join("\n"),
    };
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(schema)))
            .examples_from_iter(examples)
            .build(),
    );
    if members
        .iter()
        .any(|member| member.example.retry_after_secs().is_some())
    {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(Object::with_type(Type::Integer)))
                .description(Some("Seconds to wait before trying again"))
                .build(),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;

    use super::*;

    async fn answer(error: impl Into<ApiError>) -> (StatusCode, Option<String>, Value) {
        let response = error.into().error_response();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|value| value.to_str().expect("ascii").to_owned());
        let status = response.status();
        let body = to_bytes(response.into_body()).await.expect("body");
        (
            status,
            retry_after,
            serde_json::from_slice(&body).expect("JSON"),
        )
    }

    #[actix_web::test]
    async fn a_row_answers_its_status_its_detail_and_its_retry_after() {
        assert_eq!(
            answer(NoShardsAvailable).await,
            (
                StatusCode::UNAUTHORIZED,
                None,
                json!({"detail": "No Shards Available"})
            )
        );
        assert_eq!(
            answer(StoreUnavailable).await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("1".into()),
                json!({"detail": "Store Unavailable"})
            )
        );
        assert_eq!(
            answer(IdentifyBudgetExhausted {
                retry_after_secs: 42
            })
            .await,
            (
                StatusCode::TOO_MANY_REQUESTS,
                Some("42".into()),
                json!({"detail": "Identify Budget Exhausted"})
            )
        );
    }

    #[actix_web::test]
    async fn a_template_row_fills_its_detail_from_its_fields() {
        let (status, _, body) = answer(ExtraTooLarge { limit_bytes: 512 }).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            body,
            json!({"detail": "extra exceeds MAX_EXTRA_BYTES (512 bytes)"})
        );
    }

    #[actix_web::test]
    async fn a_validation_failure_answers_fastapis_list_of_issues() {
        let (status, retry_after, body) =
            answer(ValidationFailed::from(ValidationIssue::missing(&[
                "body",
                "session_id",
            ])))
            .await;
        assert_eq!(
            (status, retry_after),
            (StatusCode::UNPROCESSABLE_ENTITY, None)
        );
        assert_eq!(
            body,
            json!({"detail": [{"loc": ["body", "session_id"], "msg": "field required",
                "type": "value_error.missing"}]})
        );
    }

    #[actix_web::test]
    async fn an_internal_failure_keeps_its_reason_out_of_the_answer() {
        let (status, _, body) = answer(Internal {
            reason: "secret detail".into(),
        })
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, json!({"detail": "Internal Server Error"}));
    }

    error_set! {
        Sample { StoreError, ShuttingDown = "Draining" }
    }

    #[test]
    fn an_error_set_documents_one_response_per_status_with_every_members_example() {
        let responses = <Sample as utoipa::IntoResponses>::responses();
        assert_eq!(
            responses.keys().collect::<Vec<_>>(),
            ["500", "503"],
            "the store's failures and the set's own"
        );
        let RefOr::T(unavailable) = &responses["503"] else {
            panic!("inline response");
        };
        let unavailable = serde_json::to_value(unavailable).expect("JSON");
        let examples = &unavailable["content"]["application/json"]["examples"];
        for (name, detail) in [
            ("StoreUnavailable", "Store Unavailable"),
            ("ReplicaOutdated", "Replica Outdated"),
            ("ShuttingDown", "Shutting Down"),
        ] {
            assert_eq!(examples[name]["value"], json!({ "detail": detail }));
        }
        assert_eq!(examples["ShuttingDown"]["summary"], "Draining");
        assert!(unavailable["headers"]["Retry-After"].is_object());
    }
}
