//! `shardman status | reshard | autoscale | drain`: the built binary, run as an operator runs it, against a
//! replica on a real port.

use std::process::{Output, Stdio};

use serde_json::Value;
use tokio::process::Command;

use crate::helpers::{Backend, SECRET, TestApp, settings, spawn_app};
use crate::support::process::free_port;

/// `shardman <args>` with only `vars` in its environment, in a scratch directory (no `.env`).
/// Awaited, not waited for: the replica it asks runs on this test's runtime.
async fn shardman(vars: &[(&str, &str)], args: &[&str]) -> Output {
    let scratch = crate::support::process::Scratch::new("cli");
    Command::new(env!("CARGO_BIN_EXE_shardman"))
        .args(args)
        .current_dir(&scratch.0)
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run shardman")
}

/// `shardman <args>` pointed at `app` with the right secret.
async fn shardman_at(app: &TestApp, args: &[&str]) -> Output {
    shardman(
        &[
            ("SHARDMAN_URL", app.address.as_str()),
            ("SHARDMAN_SECRET", SECRET),
        ],
        args,
    )
    .await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit status and returns stdout.
fn expect_exit(output: &Output, code: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

#[tokio::test]
async fn status_shows_a_claimed_shard_with_its_process_label() {
    let mut settings = settings(Backend::Memory);
    settings.max_shards = 2;
    let app = spawn_app(settings).await;
    let granted = app.get("/connect?process=bot-cli:7").await;
    assert!(granted.status().is_success());

    let text = expect_exit(&shardman_at(&app, &["status"]).await, 0);

    assert!(
        text.starts_with("generation 1: 2 shards, 1 held, 1 missing (1)\n"),
        "{text}"
    );
    let shard_row = text
        .lines()
        .find(|line| line.trim_start().starts_with("0 "))
        .unwrap_or_else(|| panic!("no row for shard 0:\n{text}"));
    assert!(shard_row.contains("bot-cli:7"), "{shard_row}");
    let process_row = text
        .lines()
        .find(|line| line.starts_with("bot-cli:7"))
        .unwrap_or_else(|| panic!("no row for the process:\n{text}"));
    assert!(process_row.contains(" 0 "), "its shard ids: {process_row}");
}

#[tokio::test]
async fn status_json_prints_what_the_status_route_answers() {
    let app = spawn_app(settings(Backend::Memory)).await;
    app.claim().await;

    let text = expect_exit(&shardman_at(&app, &["status", "--json"]).await, 0);

    let mut printed: Value = serde_json::from_str(&text).expect("JSON on stdout");
    let mut answered = app.status().await;
    // The load history gains a point every 30 s, perhaps between the two reads.
    printed["history"].take();
    answered["history"].take();
    assert_eq!(printed, answered);
}

#[tokio::test]
async fn reshard_starts_a_new_generation_with_the_count_asked_for() {
    let app = spawn_app(settings(Backend::Memory)).await;
    // A held shard keeps generation 1 running, so the new one is pending beside it.
    app.claim().await;

    let text = expect_exit(&shardman_at(&app, &["reshard", "3"]).await, 0);

    assert_eq!(
        text,
        "reshard started: generation 2 with 3 shards (from generation 1 with 1 shard); \
         `shardman status` shows its progress\n"
    );
    let status = app.status().await;
    assert_eq!(status["generations"]["pending"]["generation"], 2);
    assert_eq!(status["generations"]["pending"]["max_shards"], 3);
}

#[tokio::test]
async fn reshard_sends_the_group_size_and_an_answer_refusing_it_exits_5_with_its_detail() {
    let app = spawn_app(settings(Backend::Memory)).await;

    let refused = shardman_at(&app, &["reshard", "4", "--shards-per-process", "0"]).await;

    expect_exit(&refused, 5);
    assert!(
        stderr(&refused).contains("422 body.shards_per_process: ensure this value is between"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(app.status().await["total_shards"], 1, "nothing was planned");
}

#[tokio::test]
async fn autoscale_prints_the_processes_the_plan_needs() {
    let mut settings = settings(Backend::Memory);
    settings.max_shards = 3;
    let app = spawn_app(settings).await;
    app.claim().await;

    let text = expect_exit(&shardman_at(&app, &["autoscale"]).await, 0);
    assert!(
        text.starts_with("desired processes: 3 (1 held, 2 missing)\n"),
        "{text}"
    );

    let json = expect_exit(&shardman_at(&app, &["autoscale", "--json"]).await, 0);
    let report: Value = serde_json::from_str(&json).expect("JSON on stdout");
    assert_eq!(report["desired_processes"], 3);
}

#[tokio::test]
async fn a_wrong_secret_exits_4_with_the_refusal_and_never_prints_the_secret() {
    let app = spawn_app(settings(Backend::Memory)).await;
    let wrong = "not-the-secret-4f9a";

    let output = shardman(
        &[
            ("SHARDMAN_URL", app.address.as_str()),
            ("SHARDMAN_SECRET", wrong),
        ],
        &["status"],
    )
    .await;

    expect_exit(&output, 4);
    assert_eq!(
        stderr(&output),
        "error: shardman refused the secret (403 Invalid Token)\n"
    );
    assert!(!stdout(&output).contains(wrong));
}

#[tokio::test]
async fn without_a_secret_a_private_status_exits_4_asking_for_one() {
    let app = spawn_app(settings(Backend::Memory)).await;

    let output = shardman(&[("SHARDMAN_URL", app.address.as_str())], &["status"]).await;

    expect_exit(&output, 4);
    assert!(
        stderr(&output).contains("SHARDMAN_SECRET"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn an_unreachable_url_exits_3_naming_the_address_and_the_reason() {
    let url = format!("http://127.0.0.1:{}", free_port());

    let output = shardman(
        &[("SHARDMAN_URL", url.as_str()), ("SHARDMAN_SECRET", SECRET)],
        &["status"],
    )
    .await;

    expect_exit(&output, 3);
    assert_eq!(
        stderr(&output),
        format!("error: cannot reach shardman at {url}: connection refused\n")
    );
}

#[tokio::test]
async fn without_shardman_url_a_command_exits_2_naming_the_variable() {
    let output = shardman(&[("SHARDMAN_SECRET", SECRET)], &["autoscale"]).await;

    expect_exit(&output, 2);
    assert!(
        stderr(&output).starts_with("error: SHARDMAN_URL is not set"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains(SECRET));
}

#[tokio::test]
async fn help_shows_where_the_secret_comes_from_but_not_the_secret() {
    let output = shardman(
        &[("SHARDMAN_SECRET", "do-not-show-me")],
        &["status", "--help"],
    )
    .await;

    let help = expect_exit(&output, 0);
    assert!(help.contains("SHARDMAN_SECRET"), "{help}");
    assert!(!help.contains("do-not-show-me"), "{help}");
}

#[tokio::test]
async fn drain_names_the_shards_that_move_and_wait_exits_6_while_the_process_still_holds_one() {
    let mut settings = settings(Backend::Memory);
    settings.max_shards = 2;
    settings.shards_per_process = shardman::config::ShardsPerProcess::Auto;
    let app = spawn_app(settings).await;
    assert!(
        app.get("/connect?process=bot%20a")
            .await
            .status()
            .is_success()
    );

    let text = expect_exit(&shardman_at(&app, &["drain", "bot a"]).await, 0);
    assert!(
        text.starts_with("bot a is draining: 1 shard (0) move to other processes by RESUME"),
        "{text}"
    );
    // Nobody else runs: the shard stays, and --wait gives up with exit status 6.
    let waited = shardman_at(&app, &["drain", "bot a", "--wait", "--timeout", "1"]).await;
    expect_exit(&waited, 6);
    assert!(
        stderr(&waited).contains("bot a still holds 1 shard (0)"),
        "{}",
        stderr(&waited)
    );

    let undone = expect_exit(&shardman_at(&app, &["drain", "bot a", "--undo"]).await, 0);
    assert_eq!(undone, "bot a is not draining; it holds 1 shard (0)\n");
    let unknown = shardman_at(&app, &["drain", "nobody"]).await;
    expect_exit(&unknown, 5);
    assert!(
        stderr(&unknown).contains("404 Process Not Found"),
        "{}",
        stderr(&unknown)
    );
}
