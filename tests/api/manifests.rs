//! deploy/: every Kubernetes overlay as `kubectl kustomize` renders it, and the Grafana dashboard
//! and Prometheus rules against what a running replica's `/metrics` exports (and `promtool`).
//! kubectl and promtool are Debian packages (`kubernetes-client`, `prometheus`) that
//! scripts/test.sh installs; without them these tests fail rather than pass unchecked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use shardman::config::{Secret, Settings};

use crate::helpers::{Backend, eventually, settings, spawn_app};
use crate::operations::metrics_text;
use crate::standin::{Reply, StandIn, gateway_bot};

/// How an overlay's shardman reaches Redis.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Store {
    /// A Redis StatefulSet of the overlay's own, `REDIS_URL` to its Service.
    Bundled,
    /// `REDIS_URL` from the Secret (it may carry a password).
    ExternalUrl,
    /// `REDIS_SENTINELS` and `REDIS_SENTINEL_MASTER`, from the ConfigMap.
    Sentinel,
    /// `REDIS_CLUSTER` from the Secret (it may carry a password).
    Cluster,
}

/// The options of deploy/kubernetes/options an overlay may add.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Extra {
    ExampleBot,
    Keda,
    Hpa,
    ServiceMonitor,
}

/// Every overlay, its store and its options: the table the rendered output is checked against.
const OVERLAYS: &[(&str, Store, &[Extra])] = &[
    ("bundled-redis", Store::Bundled, &[]),
    ("external-redis", Store::ExternalUrl, &[]),
    ("sentinel", Store::Sentinel, &[]),
    ("cluster", Store::Cluster, &[]),
    (
        "example-keda",
        Store::Bundled,
        &[Extra::ExampleBot, Extra::Keda, Extra::ServiceMonitor],
    ),
    (
        "example-hpa",
        Store::Bundled,
        &[Extra::ExampleBot, Extra::Hpa, Extra::ServiceMonitor],
    ),
];

/// The variables that choose the store; an overlay sets exactly its own.
const STORE_VARIABLES: &[&str] = &["REDIS_URL", "REDIS_SENTINELS", "REDIS_CLUSTER"];

const NAMESPACE: &str = "shardman";

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `program args...`'s stdout; panics naming the Debian package when the program is missing.
fn run_tool(program: &str, package: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(repository())
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run {program} ({error}): scripts/test.sh installs it (Debian package \
                 `{package}`), as CI does; install it, or put it on PATH"
            )
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// The objects `kubectl kustomize` renders for `dir`, as JSON values.
fn render(dir: &Path) -> Vec<Value> {
    let text = run_tool(
        "kubectl",
        "kubernetes-client",
        &["kustomize", dir.to_str().unwrap()],
    );
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| {
            serde::Deserialize::deserialize(document)
                .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        })
        .filter(|value: &Value| !value.is_null())
        .collect()
}

fn all_of<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|doc| doc["kind"] == kind).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|doc| doc["kind"] == kind && doc["metadata"]["name"] == name)
}

fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|containers| containers.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name}: {deployment}"))
}

fn env_entry<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|entry| entry["name"] == name))
}

/// Asserts that `container` reads `variable` from key `key` of the Secret `shardman`.
fn assert_from_secret(container: &Value, variable: &str, key: &str) {
    let entry = env_entry(container, variable).unwrap_or_else(|| panic!("no {variable} env"));
    assert!(entry["value"].is_null(), "{variable} is not written out");
    let reference = &entry["valueFrom"]["secretKeyRef"];
    assert_eq!(reference["name"], "shardman", "{variable}: {entry}");
    assert_eq!(reference["key"], key, "{variable}: {entry}");
}

/// Asserts that `selector` (matchLabels, or a Service's selector) selects pods labelled `labels`.
fn assert_selects(selector: &Value, labels: &Value, what: &str) {
    let selector = selector.as_object().expect("a selector");
    assert!(!selector.is_empty(), "{what}: an empty selector");
    for (key, value) in selector {
        assert_eq!(labels[key], *value, "{what} selects by {key}");
    }
}

/// shardman's settings in a rendered overlay: the ConfigMap its container's `envFrom` names
/// (with the generator's hash suffix) and its `env` entries. A value from a Secret is `None`.
fn shardman_settings(objects: &[Value], container: &Value) -> BTreeMap<String, Option<String>> {
    let mut settings = BTreeMap::new();
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let name = source["configMapRef"]["name"]
            .as_str()
            .expect("envFrom names a ConfigMap");
        let config_map = find(objects, "ConfigMap", name)
            .unwrap_or_else(|| panic!("envFrom names {name}, which the overlay does not render"));
        for (key, value) in config_map["data"].as_object().unwrap() {
            settings.insert(key.clone(), value.as_str().map(String::from));
        }
    }
    for entry in container["env"].as_array().into_iter().flatten() {
        let name = entry["name"].as_str().unwrap().to_owned();
        settings.insert(name, entry["value"].as_str().map(String::from));
    }
    settings
}

/// Checks one rendered overlay against its row of [`OVERLAYS`].
fn check_overlay(name: &str, store: Store, extras: &[Extra], objects: &[Value]) {
    for object in objects {
        let namespace = &object["metadata"]["namespace"];
        if object["kind"] == "Namespace" {
            assert_eq!(object["metadata"]["name"], NAMESPACE);
        } else {
            assert_eq!(namespace, NAMESPACE, "{name}: {}", object["metadata"]);
        }
    }
    assert!(
        all_of(objects, "Secret").is_empty(),
        "{name}: the Secret is created by the operator, not shipped with a value"
    );

    // One shardman Deployment: probes on the health routes, the port the Service and
    // /metrics use, the secret from the Secret.
    let shardmen: Vec<&Value> = all_of(objects, "Deployment")
        .into_iter()
        .filter(|deployment| deployment["metadata"]["name"] == "shardman")
        .collect();
    assert_eq!(shardmen.len(), 1, "{name}: one shardman Deployment");
    let deployment = shardmen[0];
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let pod = &deployment["spec"]["template"]["spec"];
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_selects(
        &deployment["spec"]["selector"]["matchLabels"],
        labels,
        "the Deployment",
    );
    let shardman = container(deployment, "shardman");
    assert_eq!(shardman["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(shardman["readinessProbe"]["httpGet"]["path"], "/readyz");
    let port = &shardman["ports"][0];
    assert_eq!(port["name"], "http");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(shardman[probe]["httpGet"]["port"], "http", "{probe}");
    }
    assert_from_secret(shardman, "SECRET", "SECRET");

    let settings = shardman_settings(objects, shardman);
    for variable in settings.keys() {
        assert!(
            Settings::scope_of(variable).is_some() || variable == "RUST_LOG",
            "{name}: {variable} is no setting of src/config/settings.rs"
        );
    }
    let setting = |variable: &str| settings.get(variable).cloned().flatten();
    assert_eq!(
        port["containerPort"].as_u64().unwrap().to_string(),
        setting("PORT").unwrap_or_else(|| "8000".into()),
        "the container port is the one shardman listens on"
    );
    let drain: u64 = setting("DRAIN_SECONDS").unwrap().parse().unwrap();
    assert!(
        pod["terminationGracePeriodSeconds"].as_u64().unwrap() > drain + 30,
        "the grace period outlasts the drain and the in-flight timeout (30 s)"
    );

    // The Service selects the Deployment's pods, on the named port.
    let service = find(objects, "Service", "shardman").expect("the shardman Service");
    assert_selects(&service["spec"]["selector"], labels, "the shardman Service");
    let service_port = &service["spec"]["ports"][0];
    assert_eq!(service_port["name"], "http");
    assert_eq!(service_port["targetPort"], "http");
    let pdb = find(objects, "PodDisruptionBudget", "shardman").expect("a PodDisruptionBudget");
    assert_selects(&pdb["spec"]["selector"]["matchLabels"], labels, "the PDB");

    // The store: exactly its own variables, and a bundled Redis only where it is used.
    let chosen: Vec<&str> = STORE_VARIABLES
        .iter()
        .copied()
        .filter(|variable| settings.contains_key(*variable))
        .collect();
    let redis = find(objects, "StatefulSet", "redis");
    match store {
        Store::Bundled => {
            assert_eq!(chosen, ["REDIS_URL"], "{name}");
            let redis = redis.expect("a Redis StatefulSet");
            let args = redis["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
            assert!(
                args.contains("appendonly") && args.contains("yes"),
                "{args}"
            );
            assert!(redis["spec"]["volumeClaimTemplates"].is_array());
            let redis_service = find(objects, "Service", "redis").expect("a Redis Service");
            assert_selects(
                &redis_service["spec"]["selector"],
                &redis["spec"]["template"]["metadata"]["labels"],
                "the Redis Service",
            );
            let port = redis_service["spec"]["ports"][0]["port"].as_u64().unwrap();
            assert_eq!(
                setting("REDIS_URL").as_deref(),
                Some(&*format!("redis://redis:{port}"))
            );
        }
        Store::ExternalUrl => {
            assert_eq!(chosen, ["REDIS_URL"], "{name}");
            assert_from_secret(shardman, "REDIS_URL", "REDIS_URL");
        }
        Store::Sentinel => {
            assert_eq!(chosen, ["REDIS_SENTINELS"], "{name}");
            let sentinels = setting("REDIS_SENTINELS").unwrap();
            for address in sentinels.split(',') {
                let (host, port) = address.rsplit_once(':').expect("host:port");
                assert!(!host.is_empty() && port.parse::<u16>().is_ok(), "{address}");
            }
            assert!(setting("REDIS_SENTINEL_MASTER").is_some_and(|m| !m.is_empty()));
            for password in ["REDIS_SENTINEL_PASSWORD", "REDIS_SENTINEL_MASTER_PASSWORD"] {
                assert_from_secret(shardman, password, password);
                let entry = env_entry(shardman, password).expect("the password's entry");
                assert_eq!(
                    entry["valueFrom"]["secretKeyRef"]["optional"], true,
                    "{password}: a setup without passwords still starts"
                );
            }
        }
        Store::Cluster => {
            assert_eq!(chosen, ["REDIS_CLUSTER"], "{name}");
            assert_from_secret(shardman, "REDIS_CLUSTER", "REDIS_CLUSTER");
        }
    }
    if store != Store::Bundled {
        assert!(redis.is_none(), "{name}: no Redis of its own");
    }
    if store != Store::Sentinel {
        assert!(!settings.contains_key("REDIS_SENTINEL_MASTER"), "{name}");
    }

    // The options: present exactly where the table says.
    let bot = find(objects, "Deployment", "bot");
    let scaled = find(objects, "ScaledObject", "bot");
    let hpa = find(objects, "HorizontalPodAutoscaler", "bot");
    let monitor = find(objects, "ServiceMonitor", "shardman");
    for (extra, present) in [
        (Extra::ExampleBot, bot.is_some()),
        (Extra::Keda, scaled.is_some()),
        (Extra::Hpa, hpa.is_some()),
        (Extra::ServiceMonitor, monitor.is_some()),
    ] {
        assert_eq!(present, extras.contains(&extra), "{name}: {extra:?}");
    }
    assert!(
        scaled.is_none() || hpa.is_none(),
        "{name}: two autoscalers on one Deployment fight"
    );
    if let Some(bot) = bot {
        check_bot(bot, service);
    }
    if let Some(scaled) = scaled {
        check_scaled_object(objects, scaled, service);
    }
    if let Some(hpa) = hpa {
        check_hpa(objects, hpa);
    }
    if let Some(monitor) = monitor {
        check_service_monitor(monitor, service);
    }
}

/// The example bot: reaches the shardman Service with the secret, and rolls with spares waiting
/// and time to hand over.
fn check_bot(bot: &Value, service: &Value) {
    let container = &bot["spec"]["template"]["spec"]["containers"][0];
    let url = env_entry(container, "SHARDMAN_URL").expect("SHARDMAN_URL")["value"]
        .as_str()
        .unwrap();
    let service_port = &service["spec"]["ports"][0]["port"];
    assert_eq!(url, format!("http://shardman:{service_port}"));
    assert_from_secret(container, "SHARDMAN_SECRET", "SECRET");

    let rolling = &bot["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(bot["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        rolling["maxUnavailable"], 0,
        "an old pod stops only once a spare runs"
    );
    let surge = &rolling["maxSurge"];
    let spares = match surge.as_u64() {
        Some(count) => count > 0,
        None => surge.as_str().is_some_and(|share| share != "0%"),
    };
    assert!(spares, "spares wait in /connect: {rolling}");
    // The client packages take up to about 10 s after SIGTERM to close, beat and disconnect.
    let pod = &bot["spec"]["template"]["spec"];
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() >= 20);
    assert!(
        container["readinessProbe"].is_null(),
        "a spare holds no shard: a readiness probe on one would stall the rollout"
    );
    assert!(container["lifecycle"]["preStop"].is_null());
}

/// KEDA: scales the bot Deployment on /autoscale's `desired_processes` (README, "Autoscaling the
/// bots"), one pod per process, sending the secret.
fn check_scaled_object(objects: &[Value], scaled: &Value, service: &Value) {
    let target = &scaled["spec"]["scaleTargetRef"];
    assert_eq!(target["kind"], "Deployment");
    assert!(find(objects, "Deployment", target["name"].as_str().unwrap()).is_some());
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "metrics-api");
    let url = trigger["metadata"]["url"].as_str().unwrap();
    let service_port = &service["spec"]["ports"][0]["port"];
    assert_eq!(
        url,
        format!("http://shardman.{NAMESPACE}.svc.cluster.local:{service_port}/autoscale")
    );
    assert_eq!(trigger["metadata"]["valueLocation"], "desired_processes");
    assert_eq!(trigger["metadata"]["targetValue"], "1");
    assert_eq!(trigger["metricType"], "AverageValue");
    assert_eq!(trigger["metadata"]["authMode"], "bearer");
    let auth_name = trigger["authenticationRef"]["name"].as_str().unwrap();
    let auth = find(objects, "TriggerAuthentication", auth_name).expect("its authentication");
    let token = &auth["spec"]["secretTargetRef"][0];
    assert_eq!(token["parameter"], "token");
    assert_eq!(token["name"], "shardman");
    assert_eq!(token["key"], "SECRET");
}

/// The HPA: an External metric of `shardman_desired_processes` per bot, one pod per process.
fn check_hpa(objects: &[Value], hpa: &Value) {
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    let target = &hpa["spec"]["scaleTargetRef"];
    assert_eq!(target["kind"], "Deployment");
    assert!(find(objects, "Deployment", target["name"].as_str().unwrap()).is_some());
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 1);
    let metric = &hpa["spec"]["metrics"][0];
    assert_eq!(metric["type"], "External");
    assert_eq!(
        metric["external"]["metric"]["name"],
        "shardman_desired_processes"
    );
    assert_eq!(
        metric["external"]["metric"]["selector"]["matchLabels"]["bot"],
        "default"
    );
    assert_eq!(metric["external"]["target"]["type"], "AverageValue");
    assert_eq!(metric["external"]["target"]["averageValue"], "1");
}

/// The ServiceMonitor: the shardman Service's port by name, /metrics, with the secret.
fn check_service_monitor(monitor: &Value, service: &Value) {
    assert_selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"],
        "the ServiceMonitor",
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["authorization"]["type"], "Bearer");
    assert_eq!(endpoint["authorization"]["credentials"]["name"], "shardman");
    assert_eq!(endpoint["authorization"]["credentials"]["key"], "SECRET");
}

#[test]
fn every_kubernetes_overlay_renders_shardman_with_its_store_and_options() {
    let overlays = repository().join("deploy/kubernetes/overlays");
    let mut on_disk: Vec<String> = std::fs::read_dir(&overlays)
        .expect("deploy/kubernetes/overlays")
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut listed: Vec<String> = OVERLAYS.iter().map(|(name, ..)| name.to_string()).collect();
    on_disk.sort();
    listed.sort();
    assert_eq!(on_disk, listed, "every overlay is in OVERLAYS");
    for (name, store, extras) in OVERLAYS {
        let objects = render(&overlays.join(name));
        check_overlay(name, *store, extras, &objects);
    }
}

/// Each option renders on its own, as an overlay that lists it gets it.
#[test]
fn every_kubernetes_option_renders_valid_objects() {
    let options = repository().join("deploy/kubernetes/options");
    let mut rendered = Vec::new();
    for entry in std::fs::read_dir(&options).expect("deploy/kubernetes/options") {
        let objects = render(&entry.unwrap().path());
        assert!(!objects.is_empty());
        for object in &objects {
            assert!(object["apiVersion"].is_string() && object["kind"].is_string());
            assert!(object["metadata"]["name"].is_string(), "{object}");
            assert_eq!(object["metadata"]["namespace"], NAMESPACE);
            assert!(object["spec"].is_object(), "{object}");
        }
        rendered.extend(objects);
    }
    for kind in [
        "Deployment",
        "ScaledObject",
        "TriggerAuthentication",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
    ] {
        assert!(
            !all_of(&rendered, kind).is_empty(),
            "an option renders a {kind}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// deploy/grafana and deploy/prometheus

/// The metric names in a PromQL expression: shardman's (no other exporter is assumed).
fn metric_names(expression: &str) -> impl Iterator<Item = String> + '_ {
    expression.match_indices("shardman_").map(|(start, _)| {
        expression[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    })
}

/// Every PromQL expression of the dashboard (panel targets and template variable queries).
fn dashboard_expressions() -> Vec<String> {
    let path = repository().join("deploy/grafana/shardman.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("valid JSON");
    let mut expressions = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            expressions.push(target["expr"].as_str().expect("a target's expr").to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            expressions.push(query.to_owned());
        }
    }
    expressions
}

/// Every rule's expression in deploy/prometheus/alerts.yml.
fn rule_expressions() -> Vec<String> {
    let path = repository().join("deploy/prometheus/alerts.yml");
    let rules: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).expect("valid YAML");
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap())
        .map(|rule| rule["expr"].as_str().expect("a rule's expr").to_owned())
        .collect()
}

/// Sample names of a Prometheus text exposition (histograms as `_bucket`, `_sum`, `_count`).
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            line.split(['{', ' '])
                .next()
                .expect("a sample name")
                .to_owned()
        })
        .collect()
}

/// The dashboard, the alert rules and the HPA's adapter rule name only metrics a replica
/// exports: one with Discord's gateway info (the identify budget), a reshard under way (the
/// pending generation) and served requests (the request metrics), so every family is there.
#[tokio::test]
async fn the_dashboard_and_alerts_name_only_metrics_that_metrics_exports() {
    let discord = StandIn::start(|_, _| Reply::json(200, gateway_bot(4, 1, 900))).await;
    let mut config = settings(Backend::Redis);
    config.bot_token = Some(Secret::new("MTIz.test-bot-token.xyz"));
    config.discord_api_base = discord.base.clone();
    config.max_shards = 2;
    let app = spawn_app(config).await;
    let claim = app.claim().await;
    assert_eq!(
        app.beat(&claim.session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    let reshard = app.post_form("/reshard", &[("max_shards", "3")]).await;
    assert_eq!(reshard.status(), StatusCode::ACCEPTED);
    let knows_the_budget = eventually(Duration::from_secs(10), || async {
        metrics_text(&app)
            .await
            .contains("shardman_identify_budget_total")
    })
    .await;
    assert!(
        knows_the_budget,
        "Discord's gateway info never reached /metrics"
    );
    let exported = exported_names(&metrics_text(&app).await);

    let hpa: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repository().join("deploy/kubernetes/options/hpa/hpa.yaml"))
            .unwrap(),
    )
    .unwrap();
    let hpa_metric = hpa["spec"]["metrics"][0]["external"]["metric"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let dashboard = dashboard_expressions();
    let rules = rule_expressions();
    assert!(dashboard.len() >= 20 && rules.len() >= 3);
    let mut named = BTreeSet::new();
    for (source, expressions) in [
        ("deploy/grafana/shardman.json", &dashboard),
        ("deploy/prometheus/alerts.yml", &rules),
        ("deploy/kubernetes/options/hpa", &vec![hpa_metric]),
    ] {
        for expression in expressions {
            let names: Vec<String> = metric_names(expression).collect();
            assert!(
                !names.is_empty(),
                "{source}: no shardman metric in {expression}"
            );
            for name in names {
                assert!(
                    exported.contains(&name),
                    "{source}: {name} (in {expression}) is not in /metrics: {exported:?}"
                );
                named.insert(name);
            }
        }
    }
    // The README's alerts are rules.
    for metric in [
        "shardman_shards_missing",
        "shardman_store_up",
        "shardman_shard_latency_seconds_bucket",
    ] {
        assert!(
            rules.iter().any(|rule| rule.contains(metric)),
            "alerts.yml has no rule on {metric}"
        );
    }
    // The dashboard shows every figure the fleet exports (a new metric gets a panel).
    let unshown: Vec<&String> = exported
        .iter()
        .filter(|name| name.starts_with("shardman_"))
        .filter(|name| {
            let family = name
                .strip_suffix("_bucket")
                .or_else(|| name.strip_suffix("_sum"))
                .or_else(|| name.strip_suffix("_count"))
                .unwrap_or(name);
            !dashboard.iter().any(|expression| {
                metric_names(expression).any(|shown| {
                    shown
                        .strip_prefix(family)
                        .is_some_and(|suffix| ["", "_bucket", "_sum", "_count"].contains(&suffix))
                })
            })
        })
        .collect();
    assert!(
        unshown.is_empty(),
        "the dashboard does not show {unshown:?}"
    );
    assert!(named.len() > 20, "{named:?}");
}

fn promtool(args: &[&str]) -> String {
    run_tool("promtool", "prometheus", args)
}

#[test]
fn promtool_checks_the_alert_rules_and_their_unit_tests() {
    let checked = promtool(&["check", "rules", "deploy/prometheus/alerts.yml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "deploy/prometheus/alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// Every dashboard query parses as PromQL: promtool checks them as recording rules, with
/// Grafana's variables replaced by values.
#[test]
fn promtool_parses_every_dashboard_query() {
    let rules: Vec<Value> = dashboard_expressions()
        .iter()
        // Grafana's own template function, not PromQL.
        .filter(|expression| !expression.starts_with("label_values("))
        .enumerate()
        .map(|(index, expression)| {
            let expression = expression
                .replace("$__rate_interval", "5m")
                .replace("$bot", ".*");
            serde_json::json!({"record": format!("dashboard:query_{index}"), "expr": expression})
        })
        .collect();
    let file = std::env::temp_dir().join(format!(
        "shardman-dashboard-rules-{}.yml",
        std::process::id()
    ));
    // JSON is YAML.
    let groups = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, groups.to_string()).unwrap();
    let checked = promtool(&["check", "rules", file.to_str().unwrap()]);
    std::fs::remove_file(&file).ok();
    assert!(checked.contains("SUCCESS"), "{checked}");
}
