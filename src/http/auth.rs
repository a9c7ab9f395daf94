//! `Authorization: <SECRET>` (or `Bearer <SECRET>`), compared in constant time.
//!
//! With several bots (`BOTS_FILE`) the secret also selects the bot: [`select_bot`] compares the
//! presented secret with every bot's (and the admin secret), always all of them and without
//! branching on which matched, so the time taken tells nothing about which bots exist. The
//! request then sees that bot's state and authenticator only.
//!
//! Brute-force protection (`rate_limit`) is decided here too, once per request: a request from a
//! blocked address is refused before its secret is compared, unless it carries a session id
//! signed for its bot (see [`select_bot`]).
//!
//! During a secret rotation a bot's `SECRET_PREVIOUS` is accepted as well as its `SECRET` (and
//! each use counted). A bot whose secret on this replica is not the deployment's (secret drift,
//! see `store::secrets`) gets 503 on its writes here instead of being served.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{
    FromRequest, HttpMessage, HttpRequest, ResponseError, dev::Payload, http::Method, http::header,
    web,
};
use futures_util::StreamExt;
use serde::Deserialize;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use subtle::{Choice, ConditionallySelectable};

use crate::http::body::MAX_BODY_BYTES;
use crate::http::error::{
    InvalidToken, SecretDiffersFromDeployment, TooManyFailedAuthentications, ValidationFailed,
    ValidationIssue, error_set,
};
use crate::http::rate_limit::{Admission, FailedAuthLimiter};
pub use crate::http::secret::SecretDigest;
use crate::http::secret::bearer_token;
use crate::http::state::AppState;
use crate::store::PreviousSecretUses;

/// What checking a caller takes: the secret (and during a rotation the previous one, whose uses
/// it counts) and the failed authentications per client address (brute-force protection, shared
/// by every bot of the replica). App data of its own.
pub struct Authenticator {
    secret: SecretDigest,
    previous: Option<SecretDigest>,
    previous_uses: Arc<PreviousSecretUses>,
    failed_auth: Arc<FailedAuthLimiter>,
}

impl Authenticator {
    /// Accepts `secret`, and `previous` too (`SECRET_PREVIOUS`), counting its uses in
    /// `previous_uses`.
    pub fn new(
        secret: &str,
        previous: Option<&str>,
        previous_uses: Arc<PreviousSecretUses>,
        failed_auth: Arc<FailedAuthLimiter>,
    ) -> Self {
        Self {
            secret: SecretDigest::new(secret),
            previous: previous.map(SecretDigest::new),
            previous_uses,
            failed_auth,
        }
    }

    fn from_digest(secret: SecretDigest, failed_auth: Arc<FailedAuthLimiter>) -> Self {
        Self {
            secret,
            previous: None,
            previous_uses: Arc::default(),
            failed_auth,
        }
    }

    /// Whether `presented` (a digest) is the secret or the previous one: both compared in
    /// constant time, always.
    fn accepts(&self, presented: &SecretDigest) -> Choice {
        self.secret.ct_eq(presented) | self.accepts_as_previous(presented)
    }

    fn accepts_as_previous(&self, presented: &SecretDigest) -> Choice {
        // Without a previous secret, a comparison that cannot match: the time taken is the same.
        let (previous, configured) = match &self.previous {
            Some(previous) => (previous, Choice::from(1)),
            None => (&NO_SECRET, Choice::from(0)),
        };
        previous.ct_eq(presented) & configured
    }
}

/// Stands in for a previous secret that is not configured.
const NO_SECRET: SecretDigest = SecretDigest::from_bytes([0; 32]);

/// Set by [`select_bot`] when the request's bot is refused on this replica (its secret here is not
/// the deployment's): its writes answer 503.
#[derive(Clone, Copy)]
struct SecretDiffers {
    /// The request's secret is the deployment's, told by its fingerprint, not this replica's:
    /// nothing here can be served with it.
    deployment_secret: bool,
}

/// Routes that write a bot's state: a replica whose secret differs from the deployment's refuses
/// them for that bot.
const WRITE_ROUTES: &[&str] = &[
    "/connect",
    "/beat",
    "/identify",
    "/identify/permit",
    "/identify/confirm",
    "/disconnect",
    "/reshard",
];

/// The admin secret was presented: app data of the request, for the routes that read all bots.
pub struct AdminAccess;

/// Routes the admin secret may call: reads only.
const ADMIN_ROUTES: &[&str] = &["/status", "/autoscale", "/metrics"];

/// Middleware: hands the request the state and authenticator of the bot whose secret it carries
/// (or, for the admin secret on a read route, of the bot named by `?bot=`, the first by default,
/// and [`AdminAccess`]). Any other request gets the first bot's, whose authenticator then refuses
/// a wrong secret as before (and an admin secret on a writing route).
///
/// It also decides the request's [`Admission`]. From a blocked address, a request to a session
/// route is let in when its session id is signed for the bot its secret selected, or else for the
/// first bot (where a wrong secret lands); it then gets that bot, so its secret is compared with
/// the secret of the bot that signed its session. Both signatures are always checked, so neither
/// the answer nor the time taken tells an attacker holding one bot's session whether a guess is
/// another bot's secret.
pub async fn select_bot(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(bots) = req.app_data::<web::Data<Bots>>().map(|bots| bots.current()) else {
        return next.call(req).await;
    };
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| bearer_token(value.to_str().unwrap_or_default()).to_owned());
    // Without a header the first bot answers (a public /status); with a wrong secret, the first
    // bot's authenticator refuses it.
    let presented = SecretDigest::new(token.as_deref().unwrap_or_default());
    let mut index = 0u32;
    let mut found = Choice::from(0);
    for (position, entry) in bots.bots.iter().enumerate() {
        let hit = entry.authenticator.accepts(&presented);
        index.conditional_assign(&(position as u32), hit);
        found |= hit;
    }
    // A bot refused on this replica knows the deployment's secret by its fingerprint: a request
    // carrying it is that bot's, answered 503 here rather than 403 (which would count towards
    // the brute-force block). Only refused bots compute a fingerprint, all of them every time.
    let mut deployment_secret_of = None;
    if let Some(token) = &token {
        for (position, entry) in bots.bots.iter().enumerate() {
            if entry.state.store.is_deployment_secret(token) {
                deployment_secret_of = Some(position);
            }
        }
    }
    let admin = match (&bots.admin, &token) {
        (Some(admin), Some(_)) => admin.ct_eq(&presented),
        _ => Choice::from(0),
    };
    // Every bot of the replica shares one limiter. Nothing is blocked almost always: then this
    // is one atomic load.
    let blocked = match (&token, bots.bots.first()) {
        (Some(_), Some(first)) => first.authenticator.failed_auth.blocked_wait(req.request()),
        _ => None,
    };
    let mut admission = blocked.map_or(Admission::Open, Admission::Blocked);
    let mut container = actix_web::dev::Extensions::new();
    if bool::from(admin) && ADMIN_ROUTES.contains(&req.path()) {
        let wanted =
            web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
                .ok()
                .and_then(|query| query.get("bot").cloned());
        let entry = match &wanted {
            Some(name) => bots.named(name),
            None => bots.bots.first(),
        };
        if let Some(entry) = entry {
            container.insert(entry.state.clone());
            container.insert(web::Data::new(Authenticator::from_digest(
                presented,
                entry.authenticator.failed_auth.clone(),
            )));
            container.insert(web::Data::new(AdminAccess));
        }
    } else {
        let mut entry = match (bool::from(found), deployment_secret_of) {
            (true, _) => bots.bots.get(index as usize),
            (false, Some(position)) => bots.bots.get(position),
            (false, None) => bots.bots.first(),
        };
        if let (Some(wait), Some(selected), Some(first)) = (blocked, entry, bots.bots.first())
            && SESSION_ROUTES.contains(&req.path())
        {
            let session_id = presented_session_id(&mut req).await;
            let signed_by = session_id.as_deref().and_then(|session_id| {
                signer_of_session(
                    selected.state.store.signed(session_id),
                    first.state.store.signed(session_id),
                )
            });
            admission = Admission::while_blocked(wait, signed_by.is_some());
            entry = match signed_by {
                Some(Signer::Selected) => Some(selected),
                Some(Signer::First) => Some(first),
                None => entry,
            };
        }
        if let Some(entry) = entry {
            if entry.state.store.secret_refused()
                && (bool::from(found) || deployment_secret_of.is_some())
            {
                container.insert(SecretDiffers {
                    deployment_secret: !bool::from(found),
                });
            }
            container.insert(entry.state.clone());
            container.insert(entry.authenticator.clone());
        }
    }
    container.insert(admission);
    req.add_data_container(Rc::new(container));
    next.call(req).await
}

/// Routes whose requests carry a session id: a blocked address may still use them with one.
const SESSION_ROUTES: &[&str] = &[
    "/beat",
    "/identify",
    "/identify/permit",
    "/identify/confirm",
    "/disconnect",
];

/// Which bot signed a blocked request's session id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signer {
    /// The bot its secret selected.
    Selected,
    /// The first bot, where a secret that selects no bot lands.
    First,
}

/// Takes both verdicts, computed whatever the secret was (see [`select_bot`]).
fn signer_of_session(signed_by_selected: bool, signed_by_first: bool) -> Option<Signer> {
    match (signed_by_selected, signed_by_first) {
        (true, _) => Some(Signer::Selected),
        (false, true) => Some(Signer::First),
        (false, false) => None,
    }
}

/// The one field of a session route read before the handler runs.
#[derive(Deserialize)]
struct SessionField {
    session_id: Option<String>,
}

/// The `session_id` of a request to a session route: the query of `GET /disconnect`, else the
/// form or JSON body. The body is read (at most `MAX_BODY_BYTES`, as the handler would) and put
/// back for the handler. Only requests from a blocked address come here.
async fn presented_session_id(req: &mut ServiceRequest) -> Option<String> {
    if req.method() == Method::GET {
        return web::Query::<SessionField>::from_query(req.query_string())
            .ok()?
            .into_inner()
            .session_id;
    }
    let declared_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared_length.is_some_and(|length| length > MAX_BODY_BYTES) {
        return None;
    }
    // Whatever happens, the request is refused if this gives up: the handler never reads the
    // body it took.
    let mut payload = req.take_payload();
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.ok()?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    let body: Bytes = body.freeze();
    req.set_payload(Payload::from(body.clone()));
    session_id_in_body(&body)
}

/// `session_id` of a JSON object or a form, told apart as the body parser does without a
/// content type.
fn session_id_in_body(body: &[u8]) -> Option<String> {
    let is_json = body
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'{');
    let field: SessionField = if is_json {
        serde_json::from_slice(body).ok()?
    } else {
        serde_urlencoded::from_bytes(body).ok()?
    };
    field.session_id
}

/// What the `Authorization` header says about the caller.
enum Credentials {
    Missing,
    Wrong,
    Valid,
    /// The caller's address failed too often: answered 429 without looking at the secret.
    Limited(std::time::Duration),
    /// The request's bot is refused on this replica (secret drift): answered 503.
    SecretDiffers,
}

fn credentials(req: &HttpRequest) -> Credentials {
    let Some(state) = req.app_data::<web::Data<Authenticator>>() else {
        return Credentials::Wrong;
    };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Credentials::Missing;
    };
    let token = bearer_token(value.to_str().unwrap_or_default());
    // Decided by `select_bot`; a request that did not go through it holds no session.
    let admission = req.app_data::<Admission>().copied().unwrap_or_else(|| {
        state
            .failed_auth
            .blocked_wait(req)
            .map_or(Admission::Open, Admission::Blocked)
    });
    if let Admission::Blocked(wait) = admission {
        return Credentials::Limited(wait);
    }
    // Before the secret is compared: the deployment's secret is no wrong secret, whatever this
    // replica runs, and must not count towards the brute-force block.
    if let Some(differs) = req.app_data::<SecretDiffers>()
        && (differs.deployment_secret || WRITE_ROUTES.contains(&req.path()))
    {
        return Credentials::SecretDiffers;
    }
    let presented = SecretDigest::new(token);
    if bool::from(state.accepts(&presented)) {
        if bool::from(state.accepts_as_previous(&presented)) {
            state
                .previous_uses
                .authorization
                .fetch_add(1, Ordering::Relaxed);
        }
        return Credentials::Valid;
    }
    let address = state.failed_auth.client_address(req);
    match address.map(|address| state.failed_auth.record_failure(address)) {
        // A session holder's address is blocked already: the failure extends the block, and
        // the answer stays the 403 of a wrong secret.
        Some(Err(wait)) if admission == Admission::Open => {
            log::warn!("failed authentications from {address:?} over the limit: blocked");
            Credentials::Limited(wait)
        }
        _ => Credentials::Wrong,
    }
}

fn too_many_failures(wait: std::time::Duration) -> TooManyFailedAuthentications {
    TooManyFailedAuthentications {
        retry_after_secs: crate::http::rate_limit::retry_after_secs(wait),
    }
}

error_set! {
    /// A presented secret that is refused.
    pub RefusedCredentials {
        InvalidToken,
        TooManyFailedAuthentications,
        SecretDiffersFromDeployment,
    }
}

error_set! {
    /// What a route that needs the secret refuses before it runs.
    pub AuthenticationFailure {
        RefusedCredentials,
        ValidationFailed = "No `Authorization` header",
    }
}

/// Extractor for routes that need the secret: 422 without the header (as FastAPI did), 403 when
/// wrong. It answers with the route's error set `E`, which must hold [`AuthenticationFailure`].
pub struct Authorized<E>(PhantomData<fn() -> E>);

impl<E: From<AuthenticationFailure> + ResponseError + 'static> FromRequest for Authorized<E> {
    type Error = E;
    type Future = Ready<Result<Self, E>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let refusal: AuthenticationFailure = match credentials(req) {
            Credentials::Valid => return ready(Ok(Authorized(PhantomData))),
            Credentials::Wrong => RefusedCredentials::from(InvalidToken).into(),
            Credentials::Limited(wait) => RefusedCredentials::from(too_many_failures(wait)).into(),
            Credentials::SecretDiffers => {
                RefusedCredentials::from(SecretDiffersFromDeployment).into()
            }
            Credentials::Missing => missing_header().into(),
        };
        ready(Err(refusal.into()))
    }
}

/// Extractor for routes that anonymous callers may see in part (`PUBLIC_STATUS`): tells whether
/// the caller presented the secret, and refuses a wrong one with the route's error set `E`.
pub struct MaybeAuthorized<E> {
    pub authorized: bool,
    errors: PhantomData<fn() -> E>,
}

impl<E: From<RefusedCredentials> + ResponseError + 'static> FromRequest for MaybeAuthorized<E> {
    type Error = E;
    type Future = Ready<Result<Self, E>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let caller = |authorized| MaybeAuthorized {
            authorized,
            errors: PhantomData,
        };
        ready(match credentials(req) {
            Credentials::Valid => Ok(caller(true)),
            Credentials::Missing => Ok(caller(false)),
            Credentials::Wrong => Err(RefusedCredentials::from(InvalidToken).into()),
            Credentials::Limited(wait) => {
                Err(RefusedCredentials::from(too_many_failures(wait)).into())
            }
            Credentials::SecretDiffers => {
                Err(RefusedCredentials::from(SecretDiffersFromDeployment).into())
            }
        })
    }
}

/// FastAPI's 422 for a request without `Authorization`.
pub fn missing_header() -> ValidationFailed {
    ValidationIssue::missing(&["header", "authorization"]).into()
}

/// One bot as requests see it.
#[derive(Clone)]
pub struct BotEntry {
    pub state: web::Data<AppState>,
    pub authenticator: web::Data<Authenticator>,
}

/// Every bot of the replica, in `BOTS_FILE` order (the first also answers callers without a
/// secret, e.g. a public `/status`), and the admin secret's digest.
pub struct BotList {
    pub bots: Vec<BotEntry>,
    pub admin: Option<SecretDigest>,
}

impl BotList {
    pub fn named(&self, name: &str) -> Option<&BotEntry> {
        self.bots.iter().find(|entry| entry.state.bot == name)
    }
}

/// The current [`BotList`]; a reload (SIGHUP) swaps it while requests keep the list they began
/// with.
pub struct Bots(RwLock<Arc<BotList>>);

impl Bots {
    pub fn new(list: BotList) -> Self {
        Self(RwLock::new(Arc::new(list)))
    }

    pub fn current(&self) -> Arc<BotList> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn replace(&self, list: BotList) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_id_is_read_from_a_form_or_a_json_body() {
        assert_eq!(
            session_id_in_body(b"session_id=1.2.abc&guild_count=3").as_deref(),
            Some("1.2.abc")
        );
        assert_eq!(
            session_id_in_body(
                br#" {"guild_count": 3, "extra": {"a": [1]}, "session_id": "1.2.abc"}"#
            )
            .as_deref(),
            Some("1.2.abc")
        );
    }

    #[test]
    fn a_body_without_a_readable_session_id_has_none() {
        for body in [
            &b""[..],
            b"guild_count=3",
            b"{\"session_id\": 7}",
            b"{\"session_id\": ",
            b"[1, 2]",
            b"\xff\xfe",
        ] {
            assert_eq!(session_id_in_body(body), None, "{body:?}");
        }
    }

    #[test]
    fn a_blocked_request_gets_the_bot_that_signed_its_session() {
        assert_eq!(signer_of_session(true, true), Some(Signer::Selected));
        assert_eq!(signer_of_session(true, false), Some(Signer::Selected));
        // The secret selected another bot, or none: the first bot's secret is compared, so a
        // first-bot session with another bot's secret is a 403 like any wrong secret.
        assert_eq!(signer_of_session(false, true), Some(Signer::First));
        assert_eq!(signer_of_session(false, false), None);
    }
}
