//! What `deploy/` and `docker-compose.yml` promise: the Grafana dashboard and the Prometheus alert rules
//! name only metrics that `/metrics` exports, and the compose file validates.
//!
//! The metrics are read off a gateway on PostgreSQL and NATS driven through everything the panels show:
//! REST calls, a tool call to a real MCP server, its health checks, a rate-limited request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

mod common;

use common::{BIN, DEADLINE, http, request};

const SEALING_KEY: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const AUDIT_KEY: &str = "a1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn repository() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Every `mgw_…` metric family `text` names (a histogram's series as its family).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("mgw_") {
        if text[..at].chars().last().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        names.insert(family.to_owned());
    }
    names
}

/// The families `/metrics` declares (`# TYPE <name> …`).
fn exported(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_alert_rules_name_only_exported_metrics() {
    let dashboard = std::fs::read_to_string(repository().join("deploy/grafana/dashboards/gateway.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() >= 10), "a dashboard with panels");
    let alerts = std::fs::read_to_string(repository().join("deploy/prometheus/alerts.yml")).unwrap();
    let named: BTreeSet<String> = metric_names(&dashboard).into_iter().chain(metric_names(&alerts)).collect();
    assert!(named.len() >= 15, "{named:?}");

    let db = tests::PostgresServer::shared().unwrap().create_database().await.unwrap();
    let nats = tests::NatsServer::start().unwrap();
    let upstream = tests::McpServer::shared_everything().unwrap();
    let key = common::bootstrap(&db.url).await;
    let made = tokio::process::Command::new(BIN).args(["admin", "new-break-glass"]).output().await.unwrap();
    let made = String::from_utf8_lossy(&made.stdout).into_owned();
    let credential = made.split_whitespace().find(|w| w.starts_with("mgwbg_")).expect("a credential").to_owned();
    let hash =
        made.lines().find_map(|l| l.strip_prefix("configure: MGW_BREAK_GLASS_SHA256=")).expect("its hash").to_owned();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("calls");
    let (mut gateway, address, _) = common::serve_with(
        dir.path(),
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("NATS_URL", nats.url().as_str()),
            ("MGW_SEALING_KEYS", SEALING_KEY),
            ("MGW_AUDIT_SIGNING_KEYS", AUDIT_KEY),
            ("MGW_UPSTREAM_ALLOWLIST", "127.0.0.1"),
            ("MGW_HEALTH_CHECK_INTERVAL_S", "1"),
            ("MGW_RATE_LIMITS", "login.per_address=1/min burst 1"),
            ("MGW_CALL_JOURNAL", journal.to_str().unwrap()),
            ("MGW_BREAK_GLASS_SHA256", hash.as_str()),
        ],
    )
    .await;

    // A server, used: initialize and a tool call through the proxy.
    let server = serde_json::json!({ "name": "io.example/everything", "description": "d",
                                     "transport": "streamable_http", "url": upstream.url() });
    let (status, created) =
        http(&address, "POST", "/api/v1/servers", Some(&key), Some(&server.to_string())).await.unwrap();
    assert_eq!(status, 201, "{created}");
    let id = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"].as_str().unwrap().to_owned();
    let mcp = format!("/servers/{id}/mcp");
    let accept = ("accept", "application/json, text/event-stream");
    let initialize = serde_json::json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } } });
    let (status, head, body) = tests::eventually(DEADLINE, "the server to be routed", || async {
        let answer = request(&address, "POST", &mcp, Some(&key), Some(&initialize.to_string()), &[accept]).await?;
        (answer.0 == 200).then_some(answer)
    })
    .await;
    assert_eq!(status, 200, "{body}");
    let session = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("mcp-session-id")))
        .map(|(_, v)| v.trim().to_owned())
        .expect("a session id");
    let echo = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                   "params": { "name": "echo", "arguments": { "message": "hi" } } });
    let (status, _, body) = request(
        &address,
        "POST",
        &mcp,
        Some(&key),
        Some(&echo.to_string()),
        &[accept, ("mcp-session-id", session.as_str())],
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Echo: hi"), "{body}");
    // A login past its address's budget (the IdP is unknown: the first is a 404, the second a 429).
    http(&address, "GET", "/auth/none/login", None, None).await.unwrap();
    assert_eq!(http(&address, "GET", "/auth/none/login", None, None).await.unwrap().0, 429);

    // The break-glass credential presented while not enabled: refused, and counted for the alert.
    assert_eq!(http(&address, "GET", "/api/v1/users", Some(&credential), None).await.unwrap().0, 401);

    let missing = tests::eventually(DEADLINE, "every metric the dashboard and alerts name", || async {
        let (_, metrics) = http(&address, "GET", "/metrics", None, None).await?;
        let exported = exported(&metrics);
        let missing: Vec<&String> = named.iter().filter(|n| !exported.contains(*n)).collect();
        missing.is_empty().then_some(missing.len())
    })
    .await;
    assert_eq!(missing, 0);
    let (_, metrics) = http(&address, "GET", "/metrics", None, None).await.unwrap();
    // Every histogram is a histogram (buckets), never a summary that cannot be aggregated.
    assert!(!metrics.contains(" summary\n"), "{metrics}");
    assert!(metrics.contains("mgw_build_info{"), "{metrics}");
    gateway.kill().await.unwrap();
}

/// `docker compose config` (or the standalone `docker-compose`) accepts the compose file, with the
/// secrets it requires given.
#[tokio::test]
async fn the_compose_file_validates() {
    let compose =
        if std::process::Command::new("docker-compose").arg("version").output().is_ok_and(|o| o.status.success()) {
            vec!["docker-compose"]
        } else {
            vec!["docker", "compose"]
        };
    // `config -q` with every secret the file requires, less `without`.
    let config = |without: Option<&'static str>| {
        let mut command = tokio::process::Command::new(compose[0]);
        command.args(&compose[1..]).args(["-f", "docker-compose.yml", "config", "-q"]).current_dir(repository());
        for (name, value) in [
            ("MGW_SEALING_KEYS", SEALING_KEY),
            ("MGW_AUDIT_SIGNING_KEYS", AUDIT_KEY),
            ("GRAFANA_ADMIN_PASSWORD", "x"),
            ("POSTGRES_PASSWORD", "x"),
            ("NATS_TOKEN", "x"),
        ] {
            if Some(name) == without {
                command.env_remove(name);
            } else {
                command.env(name, value);
            }
        }
        command.output()
    };
    let output = config(None).await.expect("docker-compose (Debian's docker-compose; .ci/run installs it)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // Without the keys it refuses, naming what is missing.
    let refused = config(Some("MGW_SEALING_KEYS")).await.unwrap();
    assert!(!refused.status.success(), "a deployment without its sealing keys is refused");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("MGW_SEALING_KEYS"));
}
