//! Secret rotation (`SECRET_PREVIOUS` is accepted, and a session signed under it is re-signed on
//! its next beat) and secret drift (a replica whose `SECRET` is not the deployment's serves none of
//! its writes and is not ready).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shardman::config::{Secret, Settings};
use shardman::session_token::SessionSigner;

use crate::helpers::{
    Backend, RunningApp, TestApp, both_stores, expect_detail, expect_json, held_ids, settings,
    spawn_app,
};
use crate::support::process::Scratch;

both_stores!(
    the_previous_secret_is_accepted_and_counted_and_never_signs,
    a_beat_of_a_session_signed_under_the_previous_secret_answers_it_resigned,
);

const OLD: &str = "old-secret";
const NEW: &str = "new-secret";
const DIFFERS: &str = "Secret Differs From Deployment";

fn with_secrets(mut settings: Settings, secret: &str, previous: Option<&str>) -> Settings {
    settings.secret = Some(Secret::new(secret));
    settings.secret_previous = previous.map(Secret::new);
    settings
}

/// This replica's `shardman_previous_secret_uses_total{use=<kind>}`, summed over its bots.
async fn previous_secret_uses(app: &TestApp, secret: &str, kind: &str) -> u64 {
    let text = app
        .get_as("/metrics", secret)
        .await
        .text()
        .await
        .expect("metrics");
    let label = format!("use=\"{kind}\"");
    text.lines()
        .filter(|line| line.starts_with("shardman_previous_secret_uses_total{"))
        .filter(|line| line.contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn the_previous_secret_is_accepted_and_counted_and_never_signs(backend: Backend) {
    let settings = with_secrets(settings(backend), NEW, Some(OLD));
    let prefix = settings.key_prefix.clone();
    let app = spawn_app(settings).await;
    let grant = expect_json(app.get_as("/connect", OLD).await, StatusCode::OK).await;
    let session_id = grant["session_id"].as_str().expect("session_id");
    assert!(
        SessionSigner::new(NEW, &prefix)
            .verify(session_id)
            .is_some(),
        "signed under SECRET, whichever secret connected"
    );
    assert!(
        SessionSigner::new(OLD, &prefix)
            .verify(session_id)
            .is_none()
    );
    let beat = app
        .request_as(Method::POST, "/beat", &format!("Bearer {OLD}"))
        .form(&[("session_id", session_id)])
        .send()
        .await
        .expect("beat");
    assert_eq!(beat.status(), StatusCode::NO_CONTENT);
    assert!(
        beat.headers().get("session-id").is_none(),
        "nothing to re-sign"
    );
    expect_detail(
        app.get_as("/connect", "neither").await,
        StatusCode::FORBIDDEN,
        "Invalid Token",
    )
    .await;
    assert_eq!(previous_secret_uses(&app, NEW, "authorization").await, 2);
    assert_eq!(previous_secret_uses(&app, NEW, "session").await, 0);
}

async fn a_beat_of_a_session_signed_under_the_previous_secret_answers_it_resigned(
    backend: Backend,
) {
    let settings = with_secrets(settings(backend), NEW, Some(OLD));
    let prefix = settings.key_prefix.clone();
    let app = spawn_app(settings).await;
    let current = app.request_as(Method::GET, "/connect", NEW);
    let grant = expect_json(current.send().await.expect("connect"), StatusCode::OK).await;
    let signed_now = grant["session_id"].as_str().expect("session_id").to_owned();
    // The same session as a replica still signing under the old secret handed it out.
    let claims = SessionSigner::new(NEW, &prefix)
        .verify(&signed_now)
        .expect("claims");
    let signed_before = SessionSigner::new(OLD, &prefix).sign(&claims);

    let beat = |session_id: String, representation: bool| {
        let mut request = app
            .request_as(Method::POST, "/beat", NEW)
            .form(&[("session_id", session_id)]);
        if representation {
            request = request.header("Prefer", "return=representation");
        }
        async move { request.send().await.expect("beat") }
    };
    let answer = beat(signed_before.clone(), false).await;
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        answer.headers()["session-id"].to_str().ok(),
        Some(signed_now.as_str()),
        "the same claims and nonce, signed under SECRET"
    );
    let answer = beat(signed_before.clone(), true).await;
    assert!(answer.headers().get("session-id").is_some());
    let view = expect_json(answer, StatusCode::OK).await;
    assert_eq!(view["fence"], grant["fence"], "the same lease");
    let answer = beat(signed_now.clone(), false).await;
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    assert!(answer.headers().get("session-id").is_none());

    let identify = app
        .request_as(Method::POST, "/identify", NEW)
        .form(&[("session_id", signed_before.as_str())])
        .send()
        .await
        .expect("identify");
    assert_eq!(identify.status(), StatusCode::OK);
    assert_eq!(previous_secret_uses(&app, NEW, "session").await, 3);
    assert_eq!(
        app.get_as(&format!("/disconnect?session_id={signed_before}"), NEW)
            .await
            .status(),
        StatusCode::NO_CONTENT,
        "the old id still releases its shard"
    );
    assert_eq!(
        beat(signed_now, false).await.status(),
        StatusCode::NOT_FOUND,
        "one session under either id"
    );
}

/// A `BOTS_FILE` of two bots on the in-process store, the first rotating its secret.
fn two_bots(dir: &Scratch) -> Settings {
    let file = dir.0.join("bots.toml");
    std::fs::write(
        &file,
        format!(
            "[[bot]]\nname = \"music\"\nsecret = \"music-new\"\nsecret_previous = \"music-old\"\n\
             key_prefix = \"{}\"\nmax_shards = 2\n\n\
             [[bot]]\nname = \"moderation\"\nsecret = \"moderation\"\nkey_prefix = \"{}\"\n\
             max_shards = 2\n",
            crate::helpers::fresh_prefix(),
            crate::helpers::fresh_prefix(),
        ),
    )
    .expect("bots file");
    let mut settings = settings(Backend::Memory);
    settings.secret = None;
    settings.bots_file = Some(file.display().to_string());
    settings
}

#[tokio::test]
async fn with_several_bots_a_previous_secret_selects_its_own_bot() {
    let dir = Scratch::new("rotation-bots");
    let app = spawn_app(two_bots(&dir)).await;
    let grant = expect_json(app.get_as("/connect", "music-old").await, StatusCode::OK).await;
    let session_id = grant["session_id"].as_str().expect("session_id");
    let beat_as = |secret: &'static str| {
        let request = app
            .request_as(Method::POST, "/beat", secret)
            .form(&[("session_id", session_id)]);
        async move { request.send().await.expect("beat").status() }
    };
    assert_eq!(beat_as("music-new").await, StatusCode::NO_CONTENT);
    assert_eq!(beat_as("music-old").await, StatusCode::NO_CONTENT);
    assert_eq!(
        beat_as("moderation").await,
        StatusCode::NOT_FOUND,
        "the other bot never signed it"
    );
}

/// Settings of one deployment on the shared Redis (same key prefix) with its own secret.
fn replica_of(deployment: &Settings, secret: &str, previous: Option<&str>) -> Settings {
    with_secrets(deployment.clone(), secret, previous)
}

#[tokio::test]
async fn a_replica_with_another_secret_refuses_every_write_and_is_not_ready_while_the_first_serves()
{
    let deployment = settings(Backend::Redis);
    let alpha = spawn_app(replica_of(&deployment, "alpha", None)).await;
    let grant = expect_json(alpha.get_as("/connect", "alpha").await, StatusCode::OK).await;
    let session_id = grant["session_id"].as_str().expect("session_id").to_owned();

    let beta = RunningApp::start(replica_of(&deployment, "beta", None)).await;
    expect_detail(
        beta.app.get_anonymous("/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE,
        DIFFERS,
    )
    .await;
    // Its own secret and the deployment's alike: 503 on every write, before anything is written.
    for secret in ["beta", "alpha"] {
        let writes = [
            beta.app.request_as(Method::GET, "/connect", secret),
            beta.app
                .request_as(Method::POST, "/beat", secret)
                .form(&[("session_id", session_id.as_str())]),
            beta.app
                .request_as(Method::POST, "/identify", secret)
                .form(&[("session_id", session_id.as_str())]),
            beta.app.request_as(
                Method::GET,
                &format!("/disconnect?session_id={session_id}"),
                secret,
            ),
            beta.app
                .request_as(Method::POST, "/reshard", secret)
                .json(&json!({"max_shards": 2})),
        ];
        for request in writes {
            let answer = request.send().await.expect("request");
            let path = answer.url().path().to_owned();
            assert!(
                answer.headers().contains_key("retry-after"),
                "{path}: come back (elsewhere)"
            );
            let body: Value = expect_json(answer, StatusCode::SERVICE_UNAVAILABLE).await;
            assert_eq!(body, json!({"detail": DIFFERS}), "{path} with {secret}");
        }
    }
    expect_detail(
        beta.app.get_as("/connect", "gamma").await,
        StatusCode::FORBIDDEN,
        "Invalid Token",
    )
    .await;
    assert_eq!(
        beta.app.get_as("/status", "beta").await.status(),
        StatusCode::OK,
        "reads are served"
    );

    // The first replica never noticed: its bots keep their shards.
    assert_eq!(
        alpha.get_anonymous("/readyz").await.status(),
        StatusCode::OK
    );
    let beat = alpha
        .request_as(Method::POST, "/beat", "alpha")
        .form(&[("session_id", session_id.as_str())])
        .send()
        .await
        .expect("beat");
    assert_eq!(beat.status(), StatusCode::NO_CONTENT);
    let status = expect_json(alpha.get_as("/status", "alpha").await, StatusCode::OK).await;
    assert_eq!(held_ids(&status), [0]);

    // Given the deployment's secret, the same replica serves.
    beta.stop().await;
    let fixed = spawn_app(replica_of(&deployment, "alpha", None)).await;
    assert_eq!(
        fixed.get_anonymous("/readyz").await.status(),
        StatusCode::OK
    );
    let beat = fixed
        .request_as(Method::POST, "/beat", "alpha")
        .form(&[("session_id", session_id.as_str())])
        .send()
        .await
        .expect("beat");
    assert_eq!(beat.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_bot_refused_on_a_replica_takes_it_out_of_readiness_and_its_other_bots_are_served_there()
{
    let music_prefix = crate::helpers::fresh_prefix();
    let first = settings(Backend::Redis);
    let _deployment_of_music = spawn_app(Settings {
        key_prefix: music_prefix.clone(),
        ..replica_of(&first, "music-deployed", None)
    })
    .await;
    let dir = Scratch::new("drift-bots");
    let file = dir.0.join("bots.toml");
    std::fs::write(
        &file,
        format!(
            "[[bot]]\nname = \"music\"\nsecret = \"music-here\"\nkey_prefix = \"{music_prefix}\"\n\n\
             [[bot]]\nname = \"moderation\"\nsecret = \"moderation\"\nkey_prefix = \"{}\"\n",
            crate::helpers::fresh_prefix(),
        ),
    )
    .expect("bots file");
    let mut settings = settings(Backend::Redis);
    settings.secret = None;
    settings.bots_file = Some(file.display().to_string());
    let replica = spawn_app(settings).await;
    expect_detail(
        replica.get_anonymous("/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE,
        DIFFERS,
    )
    .await;
    for secret in ["music-here", "music-deployed"] {
        expect_detail(
            replica.get_as("/connect", secret).await,
            StatusCode::SERVICE_UNAVAILABLE,
            DIFFERS,
        )
        .await;
    }
    assert_eq!(
        replica.get_as("/connect", "moderation").await.status(),
        StatusCode::OK,
        "the other bot's secret is the deployment's"
    );
}

/// The periodic check: a replica accepted while its secret was the deployment's previous one is
/// refused within a few seconds once a rotation ends without it.
#[tokio::test]
async fn a_replica_left_on_the_old_secret_is_refused_once_the_rotation_ends_without_it() {
    let deployment = settings(Backend::Redis);
    let left_behind = spawn_app(replica_of(&deployment, OLD, None)).await;
    let _phase_two = spawn_app(replica_of(&deployment, NEW, Some(OLD))).await;
    assert_eq!(
        left_behind.get_anonymous("/readyz").await.status(),
        StatusCode::OK,
        "the rotation's previous secret is still the deployment's"
    );
    let _phase_three = spawn_app(replica_of(&deployment, NEW, None)).await;
    let refused = crate::helpers::eventually(Duration::from_secs(10), || async {
        left_behind.get_anonymous("/readyz").await.status() == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(refused, "the replica on the old secret is refused");
    expect_detail(
        left_behind.get_as("/connect", OLD).await,
        StatusCode::SERVICE_UNAVAILABLE,
        DIFFERS,
    )
    .await;
}

/// Beats one session every 100 ms, each on the next replica of `replicas` (a load balancer), with
/// the secret `secret` holds then, sending the session id the last re-signing beat answered.
struct BeatingClient {
    session_id: String,
    fence: u64,
    /// Every beat that was not answered 2xx: where, and what.
    failures: Vec<String>,
    beats: usize,
    resigned: usize,
}

async fn beat_until_stopped(
    mut client: BeatingClient,
    replicas: Arc<RwLock<Vec<String>>>,
    secret: Arc<RwLock<&'static str>>,
    stop: Arc<AtomicBool>,
    turn: usize,
) -> BeatingClient {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut turn = turn;
    while !stop.load(Ordering::Relaxed) {
        let address = {
            let replicas = replicas.read().expect("replicas");
            replicas[turn % replicas.len()].clone()
        };
        turn += 1;
        let secret = *secret.read().expect("secret");
        let answer = http
            .post(format!("{address}/beat"))
            .header("Authorization", secret)
            .header("Prefer", "return=representation")
            .form(&[("session_id", client.session_id.as_str())])
            .send()
            .await;
        client.beats += 1;
        match answer {
            Ok(answer) if answer.status() == StatusCode::OK => {
                if let Some(resigned) = answer.headers().get("session-id") {
                    client.session_id = resigned.to_str().expect("text").to_owned();
                    client.resigned += 1;
                }
                let view: Value = answer.json().await.expect("json");
                if view["fence"] != json!(client.fence) {
                    client
                        .failures
                        .push(format!("{address}: the lease changed: {view}"));
                }
            }
            Ok(answer) => {
                let status = answer.status();
                let body = answer.text().await.unwrap_or_default();
                client.failures.push(format!("{address}: {status} {body}"));
            }
            Err(error) => client.failures.push(format!("{address}: {error}")),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
}

/// The replicas' summed uses of the previous secret.
async fn fleet_previous_secret_uses(replicas: &[RunningApp], secret: &str, kind: &str) -> u64 {
    let mut total = 0;
    for replica in replicas {
        total += previous_secret_uses(&replica.app, secret, kind).await;
    }
    total
}

/// The README's procedure, run replica by replica on three replicas with a beating client per
/// shard: phase 1 (SECRET=old, SECRET_PREVIOUS=new), phase 2 (SECRET=new, SECRET_PREVIOUS=old),
/// the bots switch to the new secret, phase 3 (SECRET=new). Every replica is replaced by a new one
/// (started, put into the rotation, the old one taken out and stopped), as a rolling deploy does.
#[tokio::test]
async fn a_rotation_run_replica_by_replica_loses_no_beat_no_shard_and_no_session() {
    let mut deployment = settings(Backend::Redis);
    deployment.max_shards = 3;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(RunningApp::start(replica_of(&deployment, OLD, None)).await);
    }
    let addresses = Arc::new(RwLock::new(
        replicas
            .iter()
            .map(|replica| replica.app.address.clone())
            .collect::<Vec<_>>(),
    ));
    let mut clients = Vec::new();
    for replica in &replicas {
        let grant = expect_json(replica.app.get_as("/connect", OLD).await, StatusCode::OK).await;
        clients.push(BeatingClient {
            session_id: grant["session_id"].as_str().expect("session_id").into(),
            fence: grant["fence"].as_u64().expect("fence"),
            failures: Vec::new(),
            beats: 0,
            resigned: 0,
        });
    }
    let first_sessions: Vec<String> = clients.iter().map(|c| c.session_id.clone()).collect();
    let bots_secret = Arc::new(RwLock::new(OLD));
    let stop = Arc::new(AtomicBool::new(false));
    let beating: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(turn, client)| {
            tokio::spawn(beat_until_stopped(
                client,
                addresses.clone(),
                bots_secret.clone(),
                stop.clone(),
                turn,
            ))
        })
        .collect();

    let roll = |secret: &'static str, previous: Option<&'static str>| {
        let deployment = deployment.clone();
        let addresses = addresses.clone();
        move |mut replicas: Vec<RunningApp>| async move {
            for (index, replica) in replicas.iter_mut().enumerate() {
                let next = RunningApp::start(replica_of(&deployment, secret, previous)).await;
                assert_eq!(
                    next.app.get_anonymous("/readyz").await.status(),
                    StatusCode::OK,
                    "SECRET={secret} SECRET_PREVIOUS={previous:?} is ready beside the others"
                );
                addresses.write().expect("replicas")[index] = next.app.address.clone();
                let previous_replica = std::mem::replace(replica, next);
                // Beats that picked the old replica just before it left the rotation finish.
                tokio::time::sleep(Duration::from_millis(500)).await;
                previous_replica.stop().await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            replicas
        }
    };
    let replicas = roll(OLD, Some(NEW))(replicas).await;
    let replicas = roll(NEW, Some(OLD))(replicas).await;
    // Phase 2 is complete once no replica sees a session signed under the old secret for a
    // while: every client adopted its re-signed id.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let session_uses = fleet_previous_secret_uses(&replicas, NEW, "session").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        fleet_previous_secret_uses(&replicas, NEW, "session").await,
        session_uses,
        "every session is signed under the new secret"
    );
    *bots_secret.write().expect("secret") = NEW;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let authorization_uses = fleet_previous_secret_uses(&replicas, NEW, "authorization").await;
    assert!(
        authorization_uses > 0,
        "the bots sent the old secret so far"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        fleet_previous_secret_uses(&replicas, NEW, "authorization").await,
        authorization_uses,
        "no bot sends the old secret any more"
    );
    let replicas = roll(NEW, None)(replicas).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    stop.store(true, Ordering::Relaxed);
    let mut clients = Vec::new();
    for client in beating {
        clients.push(client.await.expect("client"));
    }
    for (index, client) in clients.iter().enumerate() {
        assert!(
            client.failures.is_empty(),
            "client {index}: {} of {} beats failed: {:?}",
            client.failures.len(),
            client.beats,
            client.failures
        );
        assert!(
            client.beats > 50,
            "client {index} beat {} times",
            client.beats
        );
        assert!(client.resigned > 0, "client {index} was never re-signed");
        assert_ne!(client.session_id, first_sessions[index]);
        let claims = SessionSigner::new(NEW, &deployment.key_prefix).verify(&client.session_id);
        assert_eq!(
            claims,
            SessionSigner::new(OLD, &deployment.key_prefix).verify(&first_sessions[index]),
            "client {index}: the session it was granted, signed under the new secret"
        );
    }
    for replica in &replicas {
        assert_eq!(
            replica.app.get_anonymous("/readyz").await.status(),
            StatusCode::OK
        );
    }
    let status = expect_json(replicas[0].app.get_as("/status", NEW).await, StatusCode::OK).await;
    assert_eq!(held_ids(&status), [0, 1, 2], "no shard changed hands");
    for replica in replicas {
        replica.stop().await;
    }
}
