//! This crate against the shared contract vectors of `clients/contract` (the Python and JS
//! packages load the same files), so the three cannot drift apart.

use serde_json::{Value, json};
use shardman_client::answers::{
    decode_beat, decode_connect, decode_disconnect, decode_identify, decode_identify_confirm,
    decode_identify_permit,
};
use shardman_client::backoff::{
    BACKOFF_BASE, BACKOFF_CAP, Backoff, CONNECT_WAIT, JITTER, NO_SHARDS_AVAILABLE_RETRY,
    beat_retry_delay, jittered_with,
};
use shardman_client::{
    Answer, Claim, ClaimEvent, Error, LAPSE_CHECK_EVERY, LeaseView, Release, Route,
};
use std::time::{Duration, Instant};

fn vectors(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../contract")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("contract JSON")
}

fn seconds(value: &Value) -> Duration {
    Duration::from_secs_f64(value.as_f64().expect("seconds"))
}

fn optional_seconds(value: &Value) -> Option<Duration> {
    value.as_f64().map(Duration::from_secs_f64)
}

fn answer(status: &Value, body: &Value, retry_after: Option<&Value>) -> Answer {
    Answer {
        status: status.as_u64().expect("status") as u16,
        retry_after: retry_after.and_then(Value::as_str).map(str::to_owned),
        body: match body {
            Value::Null => String::new(),
            Value::String(text) => text.clone(),
            json => json.to_string(),
        },
    }
}

fn route(name: &str) -> Route {
    match name {
        "connect" => Route::Connect,
        "beat" => Route::Beat,
        "identify" => Route::Identify,
        "identify_permit" => Route::IdentifyPermit,
        "identify_confirm" => Route::IdentifyConfirm,
        "disconnect" => Route::Disconnect,
        other => panic!("unknown route {other}"),
    }
}

/// The contract's error kind of an error, and its status where it has one.
fn kind(error: &Error) -> (&'static str, Option<u16>) {
    match error {
        Error::NoShardsAvailable => ("no_shards_available", Some(401)),
        Error::Retired => ("retired", Some(401)),
        Error::SessionLost => ("session_lost", Some(404)),
        Error::Forbidden => ("bad_secret", Some(403)),
        Error::Unavailable { status, .. } => ("unavailable", Some(*status)),
        Error::Unexpected { status, .. } => ("unexpected", Some(*status)),
        Error::Transport(_) | Error::Config(_) => ("not an answer", None),
    }
}

/// The contract's view of a claim whose `/connect` was sent at `sent_at`.
fn claim_fields(claim: &Claim, sent_at: Instant) -> Value {
    json!({
        "session_id": claim.session_id,
        "shard_ids": claim.shard_ids,
        "shard_count": claim.shard_count,
        "generation": claim.generation,
        "state": claim.state,
        "fence": claim.fence,
        "sleep_durations": claim.sleep_durations.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
        "resumes": claim.resumes,
        "lease_seconds": claim.lease.as_secs_f64(),
        "beat_interval": claim.beat_interval.as_secs_f64(),
        "gateway_url": claim.gateway_url,
        "placement": claim.placement,
        "lease_counts_from": claim.requested_at.duration_since(sent_at).as_secs_f64(),
    })
}

/// Numbers compared as numbers (the contract writes `6` where this crate has `6.0`).
fn same(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => {
            (a.as_f64().expect("number") - b.as_f64().expect("number")).abs() < 1e-9
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w)))
        }
        _ => got == want,
    }
}

#[test]
fn answers_decode_as_the_contract_says() {
    let now = Instant::now();
    for case in vectors("answers.json")["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let answer = answer(&case["status"], &case["body"], case.get("retry_after"));
        let expect = &case["expect"];
        let decoded: Result<Value, Error> = match route(case["route"].as_str().expect("route")) {
            Route::Connect => {
                decode_connect(&answer, now, now).map(|claim| claim_fields(&claim, now))
            }
            Route::Beat => decode_beat(&answer, now, now).map(|ack| match ack.answer {
                Some(beat) => json!({"shard_id": beat.shard_id, "shard_count": beat.shard_count,
                    "generation": beat.generation, "state": beat.state, "fence": beat.fence,
                    "hand_over": beat.hand_over, "reconnect": beat.reconnect}),
                None => Value::Null,
            }),
            Route::Identify => decode_identify(&answer).map(|sleep| json!(sleep.as_secs_f64())),
            Route::IdentifyPermit => decode_identify_permit(&answer).map(|permit| {
                json!({"granted": permit.granted, "shard_id": permit.shard_id,
                    "retry_after": permit.retry_after.map(|wait| wait.as_secs_f64())})
            }),
            Route::IdentifyConfirm => {
                decode_identify_confirm(&answer).map(|confirmed| json!(confirmed))
            }
            Route::Disconnect => decode_disconnect(&answer).map(|()| json!(true)),
        };
        if let Some(error) = expect.get("error") {
            let error_kind = error.as_str().expect("kind");
            let got = decoded.expect_err(name);
            assert_eq!(
                kind(&got),
                (error_kind, Some(answer.status)),
                "{name}: {got}"
            );
            if let Some(retry_after) = expect.get("retry_after") {
                assert_eq!(got.retry_after(), optional_seconds(retry_after), "{name}");
            }
            continue;
        }
        let got = decoded.unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(claim) = expect.get("claim") {
            for (field, want) in claim.as_object().expect("fields") {
                assert!(
                    same(&got[field], want),
                    "{name}: {field} is {}, want {want}",
                    got[field]
                );
            }
        } else if let Some(beat) = expect.get("beat") {
            // Only the fields listed (older cases leave out `hand_over` and `reconnect`).
            match beat.as_object() {
                Some(fields) => {
                    for (field, want) in fields {
                        assert!(same(&got[field], want), "{name}: {got}");
                    }
                }
                None => assert!(beat.is_null() && got.is_null(), "{name}: {got}"),
            }
        } else if let Some(sleep) = expect.get("sleep_duration") {
            assert!(same(&got, sleep), "{name}: {got}");
        } else if let Some(permit) = expect.get("permit") {
            assert!(same(&got, permit), "{name}: {got}");
        } else if let Some(confirmed) = expect.get("confirmed") {
            assert_eq!(&got, confirmed, "{name}");
        } else {
            assert_eq!(expect, &json!({"ok": true}), "{name}");
        }
    }
}

/// `wait(unit)` at the extremes of the draw is the contract's bounds, and in between stays
/// within.
fn assert_bounds(wait: impl Fn(f64) -> Duration, case: &Value) {
    let (least, most) = (seconds(&case["least"]), seconds(&case["most"]));
    let close = |a: Duration, b: Duration| a.abs_diff(b) < Duration::from_micros(1);
    assert!(
        close(wait(0.0), least),
        "{case}: {:?} at the least",
        wait(0.0)
    );
    assert!(
        close(wait(1.0), most),
        "{case}: {:?} at the most",
        wait(1.0)
    );
    for unit in [0.1, 0.5, 0.9] {
        let value = wait(unit);
        assert!(
            value + Duration::from_micros(1) >= least && value <= most + Duration::from_micros(1),
            "{case}: {value:?}"
        );
    }
}

#[test]
fn backoff_waits_as_the_contract_says() {
    let contract = vectors("backoff.json");
    assert_eq!(BACKOFF_BASE, seconds(&contract["initial_seconds"]));
    assert_eq!(BACKOFF_CAP, seconds(&contract["cap_seconds"]));
    assert_eq!(JITTER, contract["jitter"].as_f64().expect("jitter"));
    let factor = Backoff::new(Duration::from_secs(1), Duration::from_secs(100)).delay(1, None, 0.5);
    assert_eq!(factor, seconds(&contract["factor"]));

    let backoff = Backoff::default();
    for case in contract["requests"]["cases"].as_array().expect("cases") {
        let attempt = case["attempt"].as_u64().expect("attempt") as u32;
        let retry_after = optional_seconds(&case["retry_after"]);
        assert_bounds(|unit| backoff.delay(attempt, retry_after, unit), case);
    }
    for case in contract["beats"]["cases"].as_array().expect("cases") {
        let failures = case["failures"].as_u64().expect("failures") as u32;
        let retry_after = optional_seconds(&case["retry_after"]);
        let interval = seconds(&case["beat_interval"]);
        assert_bounds(
            |unit| beat_retry_delay(failures, retry_after, interval, unit),
            case,
        );
    }
    let no_shards = &contract["no_shards_available"];
    assert_eq!(CONNECT_WAIT, seconds(&no_shards["connect_wait_seconds"]));
    assert_eq!(
        NO_SHARDS_AVAILABLE_RETRY,
        seconds(&no_shards["nominal_seconds"])
    );
    assert_bounds(
        |unit| jittered_with(NO_SHARDS_AVAILABLE_RETRY, unit),
        no_shards,
    );
}

#[test]
fn the_lease_view_follows_the_contract() {
    let contract = vectors("lease.json");
    assert_eq!(
        LAPSE_CHECK_EVERY,
        seconds(&contract["lapse_check_every_seconds"])
    );
    // Instants cannot be made from numbers: the contract's time t is `zero + t`.
    let zero = Instant::now();
    let at = |value: &Value| zero + seconds(value);
    for case in contract["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let spec = &case["claim"];
        let sleeps = spec["sleep_durations"].as_array().expect("sleeps");
        let body = json!({
            "shard_id": 0, "max_shards": sleeps.len(), "session_id": "s",
            "shard_ids": (0..sleeps.len()).collect::<Vec<_>>(), "sleep_durations": sleeps,
            "lease_seconds": spec["lease_seconds"],
        });
        let requested_at = at(&spec["requested_at"]);
        let answer = Answer {
            status: 200,
            retry_after: None,
            body: body.to_string(),
        };
        let claim = decode_connect(&answer, requested_at, requested_at).expect("claim");
        let mut view = LeaseView::from_claim(&claim);
        for step in case["steps"].as_array().expect("steps") {
            let now = at(&step["at"]);
            if let Some(ack) = step.get("acknowledge") {
                view.acknowledge(at(&ack["sent_at"]), now);
            }
            if let Some(deadline) = step.get("deadline") {
                let want = at(deadline);
                assert!(
                    view.deadline().max(want) - view.deadline().min(want)
                        < Duration::from_micros(1),
                    "{name}: {step}"
                );
            }
            if let Some(lapsed) = step.get("lapsed") {
                assert_eq!(
                    view.is_lapsed(now),
                    lapsed.as_bool().expect("bool"),
                    "{name}: {step}"
                );
            }
        }
    }
}

#[test]
fn the_release_reasons_are_the_contracts_list_and_do_what_it_says() {
    let contract = vectors("claim_events.json");
    let reasons = contract["reasons"].as_array().expect("reasons");
    let names: Vec<&str> = Release::ALL
        .iter()
        .map(|release| release.reason())
        .collect();
    let wanted: Vec<&str> = reasons
        .iter()
        .map(|r| r["reason"].as_str().expect("reason"))
        .collect();
    assert_eq!(names, wanted);
    for (release, spec) in Release::ALL.iter().zip(reasons) {
        assert_eq!(
            json!(release),
            spec["reason"],
            "{release:?} serializes as its reason"
        );
        assert_eq!(
            json!(release.claims_again()),
            spec["claims_again"],
            "{release:?}"
        );
        assert_eq!(
            json!(release.gives_back()),
            spec["gives_back"],
            "{release:?}"
        );
        assert_eq!(
            json!(release.close_code()),
            spec["close_code"],
            "{release:?}"
        );
        assert_eq!(json!(release.exit_code()), spec["exit_code"], "{release:?}");
    }
}

#[test]
fn claim_event_lines_are_the_contracts() {
    let contract = vectors("claim_events.json");
    let now = Instant::now();
    for case in contract["cases"].as_array().expect("cases") {
        let answer = Answer {
            status: 200,
            retry_after: None,
            body: case["connect_answer"].to_string(),
        };
        let claim = decode_connect(&answer, now, now).expect("claim");
        assert_eq!(json!(ClaimEvent::claimed(&claim)), case["claimed"]);
        for release in Release::ALL {
            let mut want = case["released"].clone();
            want["reason"] = json!(release.reason());
            assert_eq!(json!(ClaimEvent::released(&claim, release)), want);
        }
    }
}
