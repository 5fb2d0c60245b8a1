//! The embedded default end to end: `mcp-gateway serve` with no database, no NATS and no keys starts on
//! a SQLite file in `./data`, prints its URL and, on the first start only, the owner's API key; serves
//! `/ready` and Add Server with that key; keeps everything across a restart; and refuses NATS (several
//! instances need Postgres).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio::process::Command;

mod common;

use common::{BIN, DEADLINE, http, serve, serve_command, serve_first, stop};

/// The body of a chunked HTTP response (RFC 9112 §7.1), as one string.
fn dechunk(body: &str) -> String {
    let (mut rest, mut out) = (body, String::new());
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_serves_from_a_data_directory_and_a_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();

    // First start: the owner's key, once
    let (first, address, key) = serve_first(dir.path()).await;
    // A second process on the same data directory is refused, saying why, and the first serves on
    let second = serve_command(dir.path()).output();
    let second = tokio::time::timeout(DEADLINE, second).await.unwrap().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success() && err.contains("already serving"), "{err}");
    assert_eq!(http(&address, "GET", "/ready", None, None).await.unwrap().0, 200);
    let server = r#"{"name":"io.example/embedded","description":"d","transport":"streamable_http","url":"https://93.184.216.34/mcp"}"#;
    let (status, body) = http(&address, "POST", "/api/v1/servers", Some(&key), Some(server)).await.unwrap();
    assert_eq!(status, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (id, position) = (created["id"].as_str().unwrap().to_owned(), created["position"].as_str().unwrap().to_owned());
    let read = format!("/api/v1/servers/{id}?min_position={position}");
    assert_eq!(http(&address, "GET", &read, Some(&key), None).await.unwrap().0, 200);
    // The trail folds on its own: its entry follows shortly
    tests::eventually(DEADLINE, "the registration in the audit trail", || async {
        let (status, body) = http(&address, "GET", "/api/v1/audit?action=server.", Some(&key), None).await?;
        (status == 200 && body.contains("server.registered")).then_some(())
    })
    .await;
    stop(first).await;

    // The data stays in ./data, the generated sealing key readable by this user only
    let data = dir.path().join("data");
    assert!(data.join("events.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["sealing.keys", "audit-signing.keys", "events.db", "events.db.lock"] {
            let mode = std::fs::metadata(data.join(file)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{file} is private: {mode:o}");
        }
    }

    // The operator's commands work on the embedded store too (gateway stopped)
    let store_url = format!("sqlite://{}", data.join("events.db").display());
    let cli = |args: &'static [&'static str]| {
        let store_url = store_url.clone();
        async move {
            let output = Command::new(BIN).args(args).args(["--database-url", &store_url]).output().await.unwrap();
            let text =
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            (output.status.success(), text)
        }
    };
    let (ok, out) = cli(&["audit", "verify"]).await;
    assert!(ok && out.contains("intact") && out.contains("0 violations"), "{out}");
    assert!(out.contains("the gateway's own keys") && out.contains("audit-signing.keys"), "says which keys: {out}");
    // An owner who lost the printed key gets a new one by local access to the store
    let (ok, out) = cli(&["admin", "owner-key"]).await;
    assert!(ok, "{out}");
    let recovered = out.split_whitespace().find(|w| w.starts_with("mgw_")).expect("a new key is printed").to_owned();
    let (ok, out) = cli(&["admin", "bootstrap"]).await;
    assert!(!ok && out.contains("already bootstrapped"), "{out}");
    let (ok, out) = cli(&["projections", "status"]).await;
    assert!(ok && out.contains("registry\ttable\tcheckpoint"), "{out}");
    let (ok, out) = cli(&["projections", "rebuild", "registry"]).await;
    assert!(ok && out.contains("rebuilt registry"), "{out}");
    let (ok, out) = cli(&["projections", "rebuild", "audit"]).await;
    assert!(ok && out.contains("rebuilt audit"), "{out}");
    let (ok, out) = cli(&["projections", "rebuild", "analytics"]).await;
    assert!(ok && out.contains("rebuilt analytics"), "{out}");
    // (The stopped gateway may not have folded its last events, its own reads of the trail among them;
    // a rebuild folds everything.)
    let (ok, out) = cli(&["projections", "status"]).await;
    let behind = out.lines().filter(|l| l.ends_with("events behind")).collect::<Vec<_>>();
    assert!(ok && behind.len() == 3 && behind.iter().all(|l| l.ends_with("\t0 events behind")), "{out}");
    let (ok, out) = cli(&["audit", "verify"]).await;
    assert!(ok && out.contains("intact"), "the rebuilt trail verifies: {out}");

    // Second start: no new key; the same key and the same server
    let (second, address, again) = serve(dir.path()).await;
    assert_eq!(again, None, "the key is printed on the first start only");
    let (status, body) = tests::eventually(DEADLINE, "the server to be listed again", || async {
        http(&address, "GET", "/api/v1/servers", Some(&key), None).await.filter(|(s, b)| *s == 200 && b.contains(&id))
    })
    .await;
    assert!(status == 200 && body.contains("io.example/embedded"), "{body}");
    assert_eq!(http(&address, "GET", "/api/v1/servers", Some(&recovered), None).await.unwrap().0, 200);
    // A signed export verifies offline with the keys its trailer names, saying so
    let (status, export) = http(&address, "GET", "/api/v1/audit/export", Some(&key), None).await.unwrap();
    assert_eq!(status, 200);
    let export = dechunk(&export);
    let file = dir.path().join("export.jsonl");
    std::fs::write(&file, &export).unwrap();
    let checked = Command::new(BIN).args(["audit", "verify-export"]).arg(&file).output().await.unwrap();
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success() && out.contains("intact") && out.contains("keys the export itself names"),
        "{out}"
    );
    stop(second).await;

    // Several instances need Postgres and NATS: NATS with the embedded store is refused, saying why
    let refused = Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("MGW_SEALING_KEYS")
        .env("NATS_URL", "nats://127.0.0.1:1")
        .env("MGW_LISTEN", "127.0.0.1:0")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("one instance"), "{err}");
}
