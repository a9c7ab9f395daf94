//! The status page at `/`, in a real headless Chromium (Debian's `chromium`, installed by
//! scripts/test.sh). Screenshots go to tests/artifacts/ (ignored by git).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{Browser, LaunchOptions, Tab};
use reqwest::StatusCode;

use crate::helpers::{Backend, SECRET, TestApp, redis_key, settings, spawn_app};
use crate::support::redis::shared_redis;

const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium with a fresh profile, and every console error or uncaught exception of
/// its pages.
struct Chromium {
    browser: Browser,
    errors: Arc<Mutex<Vec<String>>>,
    _profile: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Chromium {
    fn launch() -> Self {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: run scripts/test.sh, which installs Debian's chromium"
        );
        let profile = TempDir(std::env::temp_dir().join(format!(
            "shardman-chromium-{}",
            crate::helpers::fresh_prefix()
        )));
        std::fs::create_dir_all(&profile.0).unwrap();
        let args: Vec<&OsStr> = [
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ]
        .iter()
        .map(OsStr::new)
        .collect();
        let options = LaunchOptions::default_builder()
            .path(Some(PathBuf::from(CHROMIUM)))
            .headless(true)
            .sandbox(false)
            .user_data_dir(Some(profile.0.clone()))
            .window_size(Some((1280, 900)))
            .idle_browser_timeout(Duration::from_secs(60))
            .args(args)
            .build()
            .expect("launch options");
        let browser = Browser::new(options).expect("start chromium");
        Self {
            browser,
            errors: Arc::default(),
            _profile: profile,
        }
    }

    /// A tab that records console errors, exceptions and failed loads.
    fn tab(&self) -> Arc<Tab> {
        let tab = self.browser.new_tab().expect("tab");
        tab.enable_log().unwrap();
        tab.enable_runtime().unwrap();
        let errors = self.errors.clone();
        tab.add_event_listener(Arc::new(move |event: &Event| {
            let message = match event {
                Event::LogEntryAdded(entry) => {
                    let entry = &entry.params.entry;
                    format!("{:?}", entry.level)
                        .eq_ignore_ascii_case("error")
                        .then(|| format!("log: {} {:?}", entry.text, entry.url))
                }
                Event::RuntimeConsoleAPICalled(call) => {
                    let kind = format!("{:?}", call.params.Type);
                    kind.eq_ignore_ascii_case("error").then(|| {
                        format!(
                            "console.error: {:?}",
                            call.params
                                .args
                                .iter()
                                .map(|arg| &arg.value)
                                .collect::<Vec<_>>()
                        )
                    })
                }
                Event::RuntimeExceptionThrown(thrown) => {
                    Some(format!("exception: {:?}", thrown.params.exception_details))
                }
                _ => None,
            };
            if let Some(message) = message {
                errors.lock().unwrap().push(message);
            }
        }))
        .unwrap();
        tab
    }

    fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }
}

fn eval_string(tab: &Tab, expression: &str) -> String {
    let value = tab
        .evaluate(expression, false)
        .unwrap_or_else(|error| panic!("{expression}: {error}"))
        .value
        .unwrap_or_default();
    match value {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    }
}

fn wait_for_render(tab: &Tab) {
    tab.wait_for_element_with_custom_timeout("body[data-ready='true']", Duration::from_secs(15))
        .expect("the page renders the fleet");
}

fn cell_states(tab: &Tab) -> Vec<String> {
    let joined = eval_string(
        tab,
        "Array.from(document.querySelectorAll('#grid .cell')).map(c => c.dataset.state).join(',')",
    );
    joined
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn save_screenshot(tab: &Tab, name: &str) -> PathBuf {
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("screenshot");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, png).unwrap();
    path
}

/// Six planned shards: 0, 2, 3, 4 held and beating, 1 held with a high latency, 5 missing.
async fn fleet_with_a_missing_shard(public_status: bool) -> TestApp {
    let mut config = settings(Backend::Redis);
    config.max_shards = 6;
    config.public_status = public_status;
    let app = spawn_app(config).await;
    for shard in 0..5 {
        let claim = app.claim().await;
        assert_eq!(claim.shard_id, shard);
        let latency = if shard == 1 { "2.5" } else { "0.05" };
        let guilds = (100 * (shard + 1)).to_string();
        let response = app
            .beat_form(&[
                ("session_id", claim.session_id.as_str()),
                ("guild_count", guilds.as_str()),
                ("latency", latency),
            ])
            .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    app
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_asks_for_the_secret_once_and_draws_every_planned_shard() {
    let app = fleet_with_a_missing_shard(false).await;
    let url = app.url("/");
    let page = app.get_anonymous("/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("data-public-status=\"false\"")
    );

    tokio::task::spawn_blocking(move || {
        let chromium = Chromium::launch();
        let tab = chromium.tab();
        tab.navigate_to(&url)
            .unwrap()
            .wait_until_navigated()
            .unwrap();

        // Not public: the page asks for the secret and shows no fleet.
        let input = tab
            .wait_for_element("#login:not([hidden]) #secret")
            .unwrap();
        assert_eq!(
            eval_string(&tab, "String(document.getElementById('fleet').hidden)"),
            "true"
        );
        input.click().unwrap();
        tab.type_str(SECRET).unwrap().press_key("Enter").unwrap();
        wait_for_render(&tab);

        let states = cell_states(&tab);
        assert_eq!(states.len(), 6, "one cell per planned shard: {states:?}");
        assert_eq!(states[5], "missing");
        assert_eq!(states[1], "slow", "high latency");
        for shard in [0, 2, 3, 4] {
            assert_eq!(states[shard], "held", "shard {shard}");
        }
        assert_eq!(
            eval_string(&tab, "document.getElementById('total-shards').textContent"),
            "6"
        );
        assert_eq!(
            eval_string(&tab, "document.getElementById('total-missing').textContent"),
            "1"
        );
        assert_eq!(
            eval_string(&tab, "document.getElementById('total-held').textContent"),
            "5"
        );
        assert_eq!(
            eval_string(&tab, "document.getElementById('total-guilds').textContent"),
            "1,500"
        );
        let screenshot = save_screenshot(&tab, "dashboard.png");
        assert!(std::fs::metadata(&screenshot).unwrap().len() > 1000);

        // The secret is kept for the session: a reload goes straight to the fleet.
        tab.reload(true, None).unwrap();
        wait_for_render(&tab);
        assert_eq!(
            eval_string(&tab, "String(document.getElementById('login').hidden)"),
            "true"
        );

        let errors = chromium.errors();
        assert!(errors.is_empty(), "console errors: {errors:#?}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_public_status_the_page_shows_the_fleet_without_a_secret() {
    let app = fleet_with_a_missing_shard(true).await;
    let url = app.url("/");
    tokio::task::spawn_blocking(move || {
        let chromium = Chromium::launch();
        let tab = chromium.tab();
        tab.navigate_to(&url)
            .unwrap()
            .wait_until_navigated()
            .unwrap();
        wait_for_render(&tab);
        let states = cell_states(&tab);
        assert_eq!(states.len(), 6);
        assert_eq!(states[5], "missing");
        assert_eq!(
            eval_string(&tab, "String(document.getElementById('login').hidden)"),
            "true"
        );
        save_screenshot(&tab, "dashboard-public.png");
        let errors = chromium.errors();
        assert!(errors.is_empty(), "console errors: {errors:#?}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_is_refused_and_asked_for_again() {
    let app = fleet_with_a_missing_shard(false).await;
    let url = app.url("/");
    tokio::task::spawn_blocking(move || {
        let chromium = Chromium::launch();
        let tab = chromium.tab();
        tab.navigate_to(&url)
            .unwrap()
            .wait_until_navigated()
            .unwrap();
        tab.wait_for_element("#login:not([hidden]) #secret")
            .unwrap()
            .click()
            .unwrap();
        tab.type_str("not-the-secret")
            .unwrap()
            .press_key("Enter")
            .unwrap();
        tab.wait_for_element_with_custom_timeout(
            "#login-error:not(:empty)",
            Duration::from_secs(10),
        )
        .expect("an error under the form");
        assert_eq!(
            eval_string(&tab, "String(document.getElementById('fleet').hidden)"),
            "true"
        );
        assert_eq!(
            eval_string(&tab, "String(sessionStorage.getItem('shardman.secret'))"),
            "null"
        );
        // The browser reported the refused request: the console listener sees what it should.
        let errors = chromium.errors();
        assert!(
            errors.iter().any(|error| error.contains("403")),
            "the 403 shows up as a console error: {errors:#?}"
        );
    })
    .await
    .unwrap();
}

/// Four planned shards, 3 missing; 0 and 1 held by process `bot-a:1`, 2 by `bot-b:2`, beating
/// every 0.7 s with events at 90, 6 and 24 per second until `beating` is dropped; and the load
/// history of the last hour with three more points, 40, 20 and 1 minutes old.
async fn fleet_under_load() -> (TestApp, tokio::task::JoinHandle<()>) {
    let mut config = settings(Backend::Redis);
    config.max_shards = 4;
    // A short lease, so a rate needs only a second (beat.lua, "Load counters").
    config.max_seconds = 6;
    let prefix = config.key_prefix.clone();
    let app = spawn_app(config).await;
    let mut sessions = Vec::new();
    for label in ["bot-a:1", "bot-a:1", "bot-b:2"] {
        let response = app.get(&format!("/connect?process={label}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: serde_json::Value = response.json().await.unwrap();
        sessions.push(body["session_id"].as_str().unwrap().to_owned());
    }
    let rates = [90.0, 6.0, 24.0];
    let beater = TestApp::at(app.address.clone());
    let beating = tokio::spawn(async move {
        let started = std::time::Instant::now();
        loop {
            let elapsed = started.elapsed().as_secs_f64();
            for (session, rate) in sessions.iter().zip(rates) {
                let body = serde_json::json!({
                    "session_id": session,
                    "events": (rate * elapsed) as u64,
                    "cpu_seconds": elapsed * rate / 100.0,
                    "rss_bytes": 200 * 1024 * 1024,
                });
                beater.beat_json(&body).await;
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    });
    let rated = crate::helpers::eventually(Duration::from_secs(15), || async {
        let status = app.status().await;
        status["shards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|shard| shard["events_per_second"].is_number())
    })
    .await;
    assert!(rated, "every held shard has a rate");
    let history = redis_key(&prefix, "load:history");
    let now_ms = chrono::Utc::now().timestamp_millis();
    for (minutes_ago, rate, held) in [(40, 20.0, 2), (20, 80.0, 3), (1, 120.0, 3)] {
        let at = now_ms - minutes_ago * 60_000;
        shared_redis().query(&[
            "ZADD",
            &history,
            &at.to_string(),
            &format!("{at} {rate:.3} {held}"),
        ]);
    }
    (app, beating)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_colours_shards_by_load_lists_processes_and_plots_the_last_hour() {
    let (app, beating) = fleet_under_load().await;
    let url = app.url("/");
    tokio::task::spawn_blocking(move || {
        let chromium = Chromium::launch();
        let tab = chromium.tab();
        tab.navigate_to(&url)
            .unwrap()
            .wait_until_navigated()
            .unwrap();
        tab.wait_for_element("#login:not([hidden]) #secret")
            .unwrap()
            .click()
            .unwrap();
        tab.type_str(SECRET).unwrap().press_key("Enter").unwrap();
        wait_for_render(&tab);

        // Against the mean of 40 events/s: 90 is busy, 6 low, 24 normal; shard 3 is missing.
        let loads = eval_string(
            &tab,
            "Array.from(document.querySelectorAll('#grid .cell')).map(c => c.dataset.load).join(',')",
        );
        assert_eq!(loads, "busy,low,normal,", "load levels by shard");
        assert_eq!(cell_states(&tab)[3], "missing");

        let rows = eval_string(
            &tab,
            "Array.from(document.querySelectorAll('#process-rows tr')).map(r => \
             Array.from(r.cells).map(c => c.textContent).join('|')).join('\\n')",
        );
        let rows: Vec<Vec<&str>> = rows.lines().map(|row| row.split('|').collect()).collect();
        assert_eq!(rows.len(), 2, "two processes: {rows:?}");
        assert_eq!((rows[0][0], rows[0][1]), ("bot-a:1", "0–1"), "busiest first");
        assert_eq!((rows[1][0], rows[1][1]), ("bot-b:2", "2"));
        let events: f64 = rows[0][2].replace(',', "").parse().expect("events per second");
        assert!((70.0..=120.0).contains(&events), "bot-a:1 carries about 96 events/s: {rows:?}");
        assert_eq!(rows[0][4], "200 MiB");
        let cores: f64 = rows[0][3].parse().expect("cores");
        assert!((0.7..=1.3).contains(&cores), "bot-a:1 uses about 0.96 cores: {rows:?}");
        assert_eq!(
            eval_string(&tab, "document.getElementById('total-processes').textContent"),
            "2"
        );

        // The three points written above, and the one the replica took as it started.
        let points: usize = eval_string(&tab, "document.getElementById('history').dataset.points")
            .parse()
            .unwrap();
        assert!(points >= 3, "{points} points in the plot");
        let drawn = eval_string(
            &tab,
            "document.querySelector('#history .series.rate').getAttribute('points').split(' ').length",
        );
        assert_eq!(drawn, points.to_string());
        assert_eq!(
            eval_string(&tab, "String(document.getElementById('history-empty').hidden)"),
            "true"
        );
        save_screenshot(&tab, "dashboard-load.png");
        let errors = chromium.errors();
        assert!(errors.is_empty(), "console errors: {errors:#?}");
    })
    .await
    .unwrap();
    beating.abort();
}
