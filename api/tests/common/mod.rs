//! What the binary's end-to-end tests share.

// Each test binary includes this module and uses part of it.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub(crate) mod mcp;

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_mcp-gateway");
/// How long a started process may take.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// One HTTP/1.1 request over a plain socket; returns the status and the body.
pub(crate) async fn http(
    address: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, String)> {
    request(address, method, path, key, body, &[]).await.map(|(status, _, body)| (status, body))
}

/// [`http`] with `extra` request headers, also returning the response's headers (as sent, one per line).
pub(crate) async fn request(
    address: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
    extra: &[(&str, &str)],
) -> Option<(u16, String, String)> {
    let mut stream = TcpStream::connect(address).await.ok()?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(key) = key {
        request.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    for (name, value) in extra {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Some((status, head.to_owned(), body.to_owned()))
}

/// `mcp-gateway serve` in `dir` with nothing configured: the embedded default, on any free port.
pub(crate) fn serve_command(dir: &std::path::Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("NATS_URL")
        .env_remove("MGW_SEALING_KEYS")
        .env_remove("MGW_CONFIG")
        .env_remove("MGW_DATA_DIR")
        .env("MGW_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn");
    command
}

/// [`serve_command`], started; returns the process, its address and the key it printed before
/// listening, if any.
pub(crate) async fn serve(dir: &std::path::Path) -> (Child, String, Option<String>) {
    serve_with(dir, &[]).await
}

/// [`serve`] with `env` set as well.
pub(crate) async fn serve_with(dir: &std::path::Path, env: &[(&str, &str)]) -> (Child, String, Option<String>) {
    let mut command = serve_command(dir);
    command.envs(env.iter().copied());
    let mut child = command.stdout(Stdio::piped()).kill_on_drop(true).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (address, key) = tokio::time::timeout(DEADLINE, async {
        let mut key = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("mgw_") {
                key = Some(line.trim().to_owned());
            }
            if let Some(url) = line.strip_prefix("mcp-gateway listening on http://") {
                return (url.to_owned(), key);
            }
        }
        panic!("serve exited before listening");
    })
    .await
    .unwrap();
    (child, address, key)
}

/// A first start of the embedded gateway in `dir`, ready: the process, its address and the owner's key
/// it printed.
pub(crate) async fn serve_first(dir: &std::path::Path) -> (Child, String, String) {
    let (child, address, key) = serve(dir).await;
    let key = key.expect("the first start prints the owner's API key");
    tests::eventually(DEADLINE, "GET /ready to answer 200", || async {
        (http(&address, "GET", "/ready", None, None).await?.0 == 200).then_some(())
    })
    .await;
    (child, address, key)
}

/// `mcp-gateway admin bootstrap` on `database_url`: the first owner's API key it printed.
pub(crate) async fn bootstrap(database_url: &str) -> String {
    let made = Command::new(BIN)
        .args(["admin", "bootstrap"])
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&made.stdout);
    printed.split_whitespace().find(|w| w.starts_with("mgw_")).expect("the owner's key").to_owned()
}

/// Stops `child` with SIGTERM; it must exit cleanly.
pub(crate) async fn stop(mut child: Child) {
    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().await.unwrap().success());
    let status = tokio::time::timeout(DEADLINE, child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "a graceful stop: {status}");
}
