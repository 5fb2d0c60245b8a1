//! The `mcp-gateway` binary end to end against a throwaway PostgreSQL: migrate, bootstrap, serve (ready,
//! Add Server with the printed key, graceful stop on SIGTERM), projections status and rebuild.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

mod common;

use common::{BIN, DEADLINE, http};

const KEY: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

async fn run(args: &[&str], database_url: &str) -> (bool, String, String) {
    let output =
        Command::new(BIN).args(args).env("DATABASE_URL", database_url).env("RUST_LOG", "warn").output().await.unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_bootstrap_serve_add_a_server_rebuild_and_stop() {
    let db = tests::PostgresServer::shared().unwrap().create_database().await.unwrap();

    let (ok, out, err) = run(&["migrate"], &db.url).await;
    assert!(ok && out.contains("migrated"), "{out}{err}");

    let (ok, out, err) = run(&["admin", "bootstrap", "--name", "Ada"], &db.url).await;
    assert!(ok, "{err}");
    let key = out.split_whitespace().find(|w| w.starts_with("mgw_")).expect("the key is printed").to_owned();
    let (ok, _, err) = run(&["admin", "bootstrap"], &db.url).await;
    assert!(!ok && err.contains("already bootstrapped"), "a second bootstrap is refused: {err}");

    // Without sealing keys, serve refuses to start and says what is missing.
    let (ok, _, err) = run(&["serve"], &db.url).await;
    assert!(!ok && err.contains("MGW_SEALING_KEYS"), "{err}");
    // A malformed setting is refused at start, naming it: rate limits, trusted proxies, CORS origins,
    // the break-glass hash.
    // Settings parsed by the command line name their flag: snapshots, analytics.
    for (setting, value, named) in [
        ("MGW_RATE_LIMITS", "rest.per_address=lots", "MGW_RATE_LIMITS"),
        ("MGW_TRUSTED_PROXIES", "the-proxy", "MGW_TRUSTED_PROXIES"),
        ("MGW_CORS_ORIGINS", "https://console.example.com/app", "MGW_CORS_ORIGINS"),
        ("MGW_BREAK_GLASS_SHA256", "not-hex", "MGW_BREAK_GLASS_SHA256"),
        ("MGW_SNAPSHOT_EVERY_EVENTS", "often", "--snapshot-every-events"),
        ("MGW_ANALYTICS", "maybe", "--analytics"),
    ] {
        let refused = Command::new(BIN)
            .arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("MGW_SEALING_KEYS", KEY)
            .env(setting, value)
            .env("RUST_LOG", "warn")
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && err.contains(named), "{setting}: {err}");
    }
    // The container health check: a refused connection is a failure (exit 1), said on stderr.
    let closed = format!("http://127.0.0.1:{}/health", tests::free_port().unwrap());
    let (ok, _, err) = run(&["probe", &closed], &db.url).await;
    assert!(!ok && err.contains(&closed), "{err}");

    // A configuration file with an unknown key is refused, naming the file and the key.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "database_url = \"x\"\ncolour = \"blue\"\n").unwrap();
    let refused =
        Command::new(BIN).args(["serve", "--config"]).arg(&bad).env_remove("DATABASE_URL").output().await.unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("bad.toml") && err.contains("colour"), "{err}");

    // Settings from a configuration file, the listen address from the environment.
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, format!("database_url = \"{}\"\nsealing_keys = [\"{KEY}\"]\n", db.url)).unwrap();
    let mut serve = Command::new(BIN)
        .arg("serve")
        .env("MGW_CONFIG", &config)
        .env_remove("DATABASE_URL")
        .env_remove("MGW_SEALING_KEYS")
        .env("MGW_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let address = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("mcp-gateway listening on http://") {
                return url.to_owned();
            }
        }
        panic!("serve exited before listening");
    })
    .await
    .unwrap();

    tests::eventually(DEADLINE, "GET /ready to answer 200", || async {
        (http(&address, "GET", "/ready", None, None).await?.0 == 200).then_some(())
    })
    .await;
    let server = r#"{"name":"io.example/cli-weather","description":"d","transport":"streamable_http","url":"https://93.184.216.34/mcp"}"#;
    let (status, body) = tests::eventually(DEADLINE, "Add Server with the printed key", || async {
        http(&address, "POST", "/api/v1/servers", Some(&key), Some(server)).await.filter(|(s, _)| *s != 503)
    })
    .await;
    assert_eq!(status, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let position = created["position"].as_str().unwrap().to_owned();
    let (status, _) = http(&address, "GET", &format!("/api/v1/servers/{id}?min_position={position}"), Some(&key), None)
        .await
        .unwrap();
    assert_eq!(status, 200);

    let (ok, out, err) = run(&["projections", "list"], &db.url).await;
    assert!(ok && out.contains("registry") && out.contains("authz"), "{out}{err}");
    let (ok, out, err) = run(&["projections", "status"], &db.url).await;
    assert!(ok && out.contains("registry\ttable\tcheckpoint"), "{out}{err}");
    let (ok, out, err) = run(&["projections", "rebuild", "registry"], &db.url).await;
    assert!(ok && out.contains("rebuilt registry"), "{out}{err}");
    let (ok, out, err) = run(&["projections", "rebuild", "audit"], &db.url).await;
    assert!(ok && out.contains("rebuilt audit"), "{out}{err}");
    let (ok, out, err) = run(&["audit", "verify"], &db.url).await;
    assert!(ok && out.contains("intact"), "{out}{err}");
    // A modified audit entry: verify names it and fails.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE rm_audit.entries SET actor_id = 'someone else' WHERE seq = 2").execute(&pool).await.unwrap();
    let (ok, out, _) = run(&["audit", "verify"], &db.url).await;
    assert!(!ok && out.contains("entry 2") && out.contains("Modified"), "{out}");
    let (ok, _, err) = run(&["projections", "rebuild", "nope"], &db.url).await;
    assert!(!ok && err.contains("no projection named nope"), "{err}");
    // The rebuilt model still serves the server.
    let (status, body) = http(&address, "GET", &format!("/api/v1/servers/{id}"), Some(&key), None).await.unwrap();
    assert_eq!(status, 200, "{body}");

    // Prometheus metrics count the requests by route template.
    let (status, metrics) = http(&address, "GET", "/metrics", None, None).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("mgw_http_requests_total") && metrics.contains("route=\"/api/v1/servers/{id}\""),
        "{metrics}"
    );
    assert!(metrics.contains("http_request_duration_seconds_bucket"), "explicit buckets: {metrics}");
    // One prefix, and every family described
    for line in metrics.lines().filter(|l| l.starts_with("# TYPE ")) {
        let family = line.split_whitespace().nth(2).unwrap();
        assert!(family.starts_with("mgw_"), "{family} lacks the mgw_ prefix");
        assert!(metrics.contains(&format!("# HELP {family} ")), "{family} has no # HELP");
    }
    for family in ["mgw_eventstore_appends_total", "mgw_eventstore_append_seconds", "mgw_projection_ready"] {
        assert!(metrics.contains(&format!("# TYPE {family} ")), "{family} missing: {metrics}");
    }
    // /ready and /metrics name the same projections
    let (_, ready) = http(&address, "GET", "/ready", Some(&key), None).await.unwrap();
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    // Without a credential, not which servers are down.
    let (_, anonymous) = http(&address, "GET", "/ready", None, None).await.unwrap();
    let anonymous: serde_json::Value = serde_json::from_str(&anonymous).unwrap();
    assert!(anonymous["checks"]["servers"]["status"].is_string(), "{anonymous}");
    assert!(anonymous["checks"]["servers"]["detail"].get("down_servers").is_none(), "{anonymous}");
    assert!(ready["checks"]["servers"]["detail"]["down_servers"].is_array(), "{ready}");
    for projection in ["authz", "registry", "audit"] {
        assert!(ready["checks"]["projections"]["detail"][projection].is_object(), "{ready}");
        assert!(
            metrics.contains(&format!("mgw_projection_ready{{projection=\"{projection}\"}}")),
            "{projection}: {metrics}"
        );
    }

    // The trail modified above is rebuilt from the events; then an export verifies offline, an edited one
    // does not, and the line is named.
    let (ok, out, err) = run(&["projections", "rebuild", "audit"], &db.url).await;
    assert!(ok, "{out}{err}");
    let (status, export) = http(&address, "GET", "/api/v1/audit/export", Some(&key), None).await.unwrap();
    assert_eq!(status, 200);
    let export = export.split("\r\n").filter(|l| l.starts_with('{')).collect::<Vec<_>>().join("\n");
    // Events caused over HTTP carry the client's address.
    let registered = export.lines().find(|l| l.contains("\"server.registered\"")).expect("the registration's entry");
    assert!(registered.contains("\"source_ip\":\"127.0.0.1\""), "{registered}");
    let file = dir.path().join("audit.jsonl");
    std::fs::write(&file, &export).unwrap();
    // This gateway has no audit signing key: the file chains but nothing vouches that it is complete.
    let checked = Command::new(BIN).args(["audit", "verify-export"]).arg(&file).output().await.unwrap();
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(!checked.status.success() && out.contains("not signed"), "{out}");
    let checked =
        Command::new(BIN).args(["audit", "verify-export", "--allow-unsigned"]).arg(&file).output().await.unwrap();
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success() && out.contains("intact"), "{out}");
    std::fs::write(&file, export.replacen("cli-weather", "cli-forged", 1)).unwrap();
    let checked =
        Command::new(BIN).args(["audit", "verify-export", "--allow-unsigned"]).arg(&file).output().await.unwrap();
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(!checked.status.success() && out.contains("was modified"), "{out}");

    // Retention: everything but the newest entry is archived to a signed file, then pruned; the rest of
    // the trail still verifies, and an archive is never overwritten.
    let archive = dir.path().join("archive.jsonl");
    let prune = |archive: std::path::PathBuf| {
        let url = db.url.clone();
        async move {
            let output = Command::new(BIN)
                .args(["audit", "prune", "--before", "2100-01-01T00:00:00Z", "--archive"])
                .arg(archive)
                .env("DATABASE_URL", url)
                .env("MGW_AUDIT_SIGNING_KEYS", KEY.replacen("k1:", "a1:", 1))
                .output()
                .await
                .unwrap();
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (output.status.success(), text(&output.stdout), text(&output.stderr))
        }
    };
    let (ok, out, err) = prune(archive.clone()).await;
    assert!(ok && out.contains("archived") && out.contains("pruned"), "{out}{err}");
    let (ok, out, err) = run(&["audit", "verify"], &db.url).await;
    assert!(ok && out.contains("intact"), "{out}{err}");
    let (ok, _, err) = prune(archive).await;
    assert!(!ok && err.contains("exists"), "{err}");

    // OAuth clients from the command line: a client registers over HTTP, the operator lists it and
    // revokes it, and the running gateway knows it revoked.
    let metadata = r#"{"redirect_uris":["http://127.0.0.1:33418/callback"],"client_name":"CLI Client"}"#;
    let (status, body) = http(&address, "POST", "/register", None, Some(metadata)).await.unwrap();
    assert_eq!(status, 201, "{body}");
    let client_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["client_id"].as_str().unwrap().to_owned();
    let (ok, out, err) = run(&["oauth", "clients", "list"], &db.url).await;
    let line = out.lines().find(|l| l.starts_with(&client_id)).unwrap_or_else(|| panic!("{out}{err}"));
    assert!(
        ok && line.contains("CLI Client\t") && line.contains("\tactive\thttp://127.0.0.1:33418/callback"),
        "{line}"
    );
    let (ok, out, err) = run(&["oauth", "clients", "revoke", &client_id, "--reason", "lost laptop"], &db.url).await;
    assert!(ok && out.contains("revoked"), "{out}{err}");
    let (ok, out, _) = run(&["oauth", "clients", "list"], &db.url).await;
    assert!(ok && out.lines().any(|l| l.starts_with(&client_id) && l.contains("\trevoked\t")), "{out}");
    let (ok, _, err) = run(&["oauth", "clients", "revoke", "no-such-client"], &db.url).await;
    assert!(!ok && !err.is_empty(), "an unknown client is an error");
    tests::eventually(DEADLINE, "the gateway to know the client revoked", || async {
        let (_, body) = http(&address, "GET", "/api/v1/oauth/clients", Some(&key), None).await?;
        let listed: serde_json::Value = serde_json::from_str(&body).ok()?;
        let client = listed["clients"].as_array()?.iter().find(|c| c["client_id"] == client_id.as_str())?.clone();
        (client["revoked"] == true).then_some(())
    })
    .await;

    // SIGTERM: a graceful stop, exit status 0.
    let pid = serve.id().unwrap().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(DEADLINE, serve.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exit status {status:?}");
}
