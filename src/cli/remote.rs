//! Talking to a running deployment: where it is and its secret (`SHARDMAN_URL`,
//! `SHARDMAN_SECRET`), one request, and what went wrong as an exit status a script can test.

use std::fmt;
use std::time::Duration;

use clap::Args;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode, Url};
use serde_json::Value;

/// A connection that does not open within this is taken as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a command waits for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a command failed. Each kind is one exit status (README "Command line"); clap's own usage
/// errors exit 2 as well.
#[derive(Debug)]
pub enum Failure {
    /// 2: the command's arguments or settings are wrong.
    Usage(String),
    /// 3: no answer from shardman (wrong URL, connection refused, timeout).
    Unreachable(String),
    /// 4: shardman refused the secret (401, 403), or wants one.
    Refused(String),
    /// 5: shardman answered with another error, or with something that is not its API.
    Answered(String),
    /// 6: what the command waited for did not happen in time (`drain --wait`).
    TimedOut(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 3,
            Failure::Refused(_) => 4,
            Failure::Answered(_) => 5,
            Failure::TimedOut(_) => 6,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Failure::Usage(message)
        | Failure::Unreachable(message)
        | Failure::Refused(message)
        | Failure::Answered(message)
        | Failure::TimedOut(message)) = self;
        formatter.write_str(message)
    }
}

/// The deployment a command asks.
#[derive(Debug, Args)]
pub struct Deployment {
    /// The address of shardman, as the bots reach it (e.g. http://127.0.0.1:8000).
    #[arg(long, env = "SHARDMAN_URL", value_name = "URL")]
    url: Option<String>,
    /// The secret the bots send (`SECRET`); the environment variable keeps it out of `ps`.
    #[arg(
        long,
        env = "SHARDMAN_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    secret: Option<String>,
}

impl Deployment {
    /// A client for this deployment, once its URL and secret are usable.
    pub fn client(self) -> Result<Shardman, Failure> {
        let Some(text) = self.url.filter(|url| !url.trim().is_empty()) else {
            return Err(Failure::Usage(
                "SHARDMAN_URL is not set: set it (or pass --url) to shardman's address, e.g. http://127.0.0.1:8000".into(),
            ));
        };
        let mut base = Url::parse(text.trim())
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "SHARDMAN_URL (or --url) is not an http:// or https:// address: {text}"
                ))
            })?;
        // Paths are joined to it: a deployment behind a path prefix keeps its prefix.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let authorization = self
            .secret
            .filter(|secret| !secret.is_empty())
            .map(|secret| {
                HeaderValue::from_str(&secret)
                    .map(|mut value| {
                        value.set_sensitive(true);
                        value
                    })
                    .map_err(|_| {
                        Failure::Usage(
                            "SHARDMAN_SECRET (or --secret) holds characters a header cannot carry"
                                .into(),
                        )
                    })
            })
            .transpose()?;
        crate::outbound::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("shardman-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(ANSWER_TIMEOUT)
            // A redirect would carry the secret somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| Failure::Usage(format!("cannot make an HTTP client: {error}")))?;
        Ok(Shardman {
            shown_url: shown(&base),
            base,
            authorization,
            http,
        })
    }
}

/// The base URL as messages show it: without a password it may carry.
fn shown(base: &Url) -> String {
    let mut url = base.clone();
    let _ = url.set_password(None);
    url.as_str().trim_end_matches('/').to_owned()
}

/// A deployment's API.
pub struct Shardman {
    base: Url,
    shown_url: String,
    authorization: Option<HeaderValue>,
    http: reqwest::Client,
}

/// A successful answer, as it came.
pub struct Answer {
    pub text: String,
    shown_url: String,
}

impl Answer {
    /// The answer as the command reads it.
    pub fn read<T: serde::de::DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_str(&self.text).map_err(|error| {
            Failure::Answered(format!(
                "the answer of {} is not shardman's API as this command reads it: {error}",
                self.shown_url
            ))
        })
    }
}

impl Shardman {
    pub async fn get(&self, path: &str) -> Result<Answer, Failure> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Answer, Failure> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// `POST` (or, with `undo`, `DELETE`) to the path of `segments`, each percent-encoded (a
    /// process label may hold any printable character).
    pub async fn send_to(&self, segments: &[&str], undo: bool) -> Result<Answer, Failure> {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        let method = if undo {
            reqwest::Method::DELETE
        } else {
            reqwest::Method::POST
        };
        self.send(self.http.request(method, url)).await
    }

    fn url(&self, path: &str) -> Url {
        // `path` is one of the commands' own relative paths: it always joins.
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    async fn send(&self, request: RequestBuilder) -> Result<Answer, Failure> {
        let request = match &self.authorization {
            Some(value) => request.header(AUTHORIZATION, value.clone()),
            None => request,
        };
        let unreachable = |error: reqwest::Error| {
            Failure::Unreachable(format!(
                "cannot reach shardman at {}: {}",
                self.shown_url,
                transport_reason(&error)
            ))
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(Answer {
                text,
                shown_url: self.shown_url.clone(),
            });
        }
        Err(self.refusal(status, &text, retry_after.as_deref()))
    }

    /// What an error answer means to the operator.
    fn refusal(&self, status: StatusCode, text: &str, retry_after: Option<&str>) -> Failure {
        let body: Option<Value> = serde_json::from_str(text).ok();
        let detail = body.as_ref().map(|body| &body["detail"]);
        let asks_for_a_header = detail
            .and_then(Value::as_array)
            .is_some_and(|issues| issues.iter().any(names_the_authorization_header));
        let described = describe(status, detail, text);
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Failure::Refused(format!("shardman refused the secret ({described})"))
            }
            StatusCode::UNPROCESSABLE_ENTITY
                if asks_for_a_header && self.authorization.is_none() =>
            {
                Failure::Refused(
                    "shardman wants the secret here: set SHARDMAN_SECRET (or pass --secret)".into(),
                )
            }
            StatusCode::UNPROCESSABLE_ENTITY if asks_for_a_header => {
                Failure::Refused(format!("shardman refused the secret ({described})"))
            }
            _ => {
                let retry = retry_after
                    .map(|seconds| format!(" (retry after {seconds} s)"))
                    .unwrap_or_default();
                Failure::Answered(format!(
                    "shardman at {} answered {described}{retry}",
                    self.shown_url
                ))
            }
        }
    }
}

fn names_the_authorization_header(issue: &Value) -> bool {
    issue["loc"]
        .as_array()
        .is_some_and(|loc| loc.first().and_then(Value::as_str) == Some("header"))
}

/// `403 Invalid Token`, `422 body.max_shards: ensure this value is between 1 and 65536`: the
/// status and the API's `detail` (a text, or FastAPI's list of issues), else the start of the body.
fn describe(status: StatusCode, detail: Option<&Value>, text: &str) -> String {
    let said = match detail {
        Some(Value::String(detail)) => detail.clone(),
        Some(Value::Array(issues)) => issues
            .iter()
            .map(|issue| {
                let loc: Vec<String> = issue["loc"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|part| match part {
                        Value::String(part) => part.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                format!(
                    "{}: {}",
                    loc.join("."),
                    issue["msg"].as_str().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => {
            let first_line = text.lines().next().unwrap_or_default().trim();
            let first_line: String = first_line.chars().take(120).collect();
            if first_line.is_empty() {
                status.canonical_reason().unwrap_or_default().to_owned()
            } else {
                first_line
            }
        }
    };
    format!("{} {said}", status.as_u16())
}

/// Why no answer came, in a few words: the innermost cause names it best ("connection refused",
/// "failed to lookup address information: ...").
fn transport_reason(error: &reqwest::Error) -> String {
    if error.is_timeout() && error.is_connect() {
        return format!("no connection within {} s", CONNECT_TIMEOUT.as_secs());
    }
    if error.is_timeout() {
        return format!("no answer within {} s", ANSWER_TIMEOUT.as_secs());
    }
    let mut cause: &(dyn std::error::Error + 'static) = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    match cause.downcast_ref::<std::io::Error>() {
        Some(io) if io.raw_os_error().is_some() => io.kind().to_string(),
        _ => cause.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_answer_shows_its_status_and_detail() {
        let detail = serde_json::json!("Invalid Token");
        assert_eq!(
            describe(StatusCode::FORBIDDEN, Some(&detail), ""),
            "403 Invalid Token"
        );
        let issues = serde_json::json!([
            {"loc": ["body", "max_shards"], "msg": "ensure this value is between 1 and 65536", "type": "x"},
            {"loc": ["body", 3], "msg": "bad", "type": "y"},
        ]);
        assert_eq!(
            describe(StatusCode::UNPROCESSABLE_ENTITY, Some(&issues), ""),
            "422 body.max_shards: ensure this value is between 1 and 65536; body.3: bad"
        );
        assert_eq!(
            describe(StatusCode::BAD_GATEWAY, None, "<html>\n<p>down</p>"),
            "502 <html>"
        );
        assert_eq!(
            describe(StatusCode::BAD_GATEWAY, None, ""),
            "502 Bad Gateway"
        );
    }

    #[test]
    fn a_url_keeps_its_path_prefix_and_is_shown_without_its_password() {
        let shardman = Deployment {
            url: Some("https://ops:hunter2@example.com/shardman".into()),
            secret: None,
        }
        .client()
        .expect("a client");
        assert_eq!(
            shardman.url("status").as_str(),
            "https://ops:hunter2@example.com/shardman/status"
        );
        assert_eq!(shardman.shown_url, "https://ops@example.com/shardman");
    }

    #[test]
    fn a_url_that_is_not_http_is_a_usage_error() {
        for url in ["", "127.0.0.1:8000", "ftp://example.com"] {
            let failure = Deployment {
                url: Some(url.into()),
                secret: None,
            }
            .client()
            .err()
            .expect("refused");
            assert_eq!(failure.exit_code(), 2, "{url}: {failure}");
        }
    }
}
