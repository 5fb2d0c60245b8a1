//! The README's commands work as written: the shell block of "Try it" runs against a fresh embedded
//! gateway (the README's first command), with the key that gateway printed, and every command in it must
//! succeed (`curl -f` fails on any HTTP error).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio::process::Command;

mod common;

use common::{serve_first, stop};

/// The fenced `sh` blocks of the section headed `heading`.
fn shell_blocks(readme: &str, heading: &str) -> Vec<String> {
    let section = readme.split("\n## ").find(|s| s.starts_with(heading)).expect("the section exists");
    section.split("```sh\n").skip(1).map(|block| block.split("\n```").next().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_commands_run_as_written_against_the_embedded_gateway() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    // The README starts with the two commands: the embedded gateway, then the tests
    let first = readme.split("```sh\n").nth(1).unwrap().split("\n```").next().unwrap();
    assert_eq!(first.lines().collect::<Vec<_>>(), ["cargo run --release -p api -- serve", "cargo test --workspace"]);

    let dir = tempfile::tempdir().unwrap();
    let (gateway, address, key) = serve_first(dir.path()).await;

    let blocks = shell_blocks(&readme, "Try it");
    assert!(!blocks.is_empty());
    for block in blocks {
        let script = format!("set -euo pipefail\n{block}");
        let output = Command::new("bash")
            .args(["-c", &script])
            .env("MGW_URL", format!("http://{address}"))
            .env("MGW_KEY", &key)
            .current_dir(dir.path())
            .output()
            .await
            .unwrap();
        let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "the README block failed:\n{block}\n--- stdout\n{out}\n--- stderr\n{err}");
        assert!(out.contains("io.example/weather") && out.contains("server.registered"), "{out}");
    }
    stop(gateway).await;
}
