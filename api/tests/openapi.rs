//! The OpenAPI document: every route the router serves is in it with its methods (read from the route
//! tables in the source, so a new route without an annotation fails here), it passes the
//! `openapi-spec-validator`, and `schemathesis` (both PyPI, pinned, installed by `.ci/run`), sending
//! generated requests to an embedded gateway, finds no server error and no status or media type the
//! document does not declare.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

/// `(path, method)` of every `.route("…", get(…).post(…))` in the API's sources.
fn routed() -> BTreeSet<(String, String)> {
    let sources = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut files = vec![std::path::PathBuf::from(sources)];
    let mut routes = BTreeSet::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for part in text.split(".route(\"").skip(1) {
            let (route, rest) = part.split_once('"').unwrap();
            // The handlers of this route: up to the next route, or the end of the statement.
            let chain = rest.split(".route(\"").next().unwrap().split(";\n").next().unwrap();
            for method in ["get", "post", "put", "patch", "delete"] {
                let called = chain.match_indices(&format!("{method}(")).any(|(at, _)| {
                    let before = chain[..at].chars().last();
                    before.is_none_or(|c| !c.is_alphanumeric() && c != '_')
                });
                if called {
                    routes.insert((route.to_owned(), method.to_owned()));
                }
            }
        }
    }
    routes
}

mod common;

/// The tools, pinned as in `.ci/run`.
const TOOLS: [&str; 2] = ["openapi-spec-validator==0.9.0", "schemathesis==4.32.5"];

/// A Python that has the tools: `MGW_PYTHON` (as `.ci/run` sets it), else `python3` when it has them,
/// else a virtual environment made for them in the build's temporary directory on first use (as the
/// harness installs its npm peers).
fn validator_python() -> std::path::PathBuf {
    // Both tests ask at once: one of them makes the environment.
    static PYTHON: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(find_or_make_python).clone()
}

fn find_or_make_python() -> std::path::PathBuf {
    if let Ok(python) = std::env::var("MGW_PYTHON") {
        return python.into();
    }
    let has_it = |python: &std::path::Path| {
        std::process::Command::new(python)
            .args(["-c", "import openapi_spec_validator, schemathesis"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let system = std::path::PathBuf::from("python3");
    if has_it(&system) {
        return system;
    }
    let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("openapi-validator-venv");
    let python = venv.join("bin/python");
    if !has_it(&python) {
        let made = std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv).status().unwrap();
        assert!(made.success(), "python3 -m venv (Debian: python3-venv)");
        let pip = venv.join("bin/pip");
        let installed = std::process::Command::new(pip).args(["install", "--quiet"]).args(TOOLS).status().unwrap();
        assert!(installed.success(), "pip install {TOOLS:?}");
    }
    python
}

#[test]
fn every_route_is_documented_and_the_document_is_valid() {
    let document = serde_json::to_value(api::openapi::document()).unwrap();
    let routes = routed();
    assert!(routes.len() > 30, "the route tables were read: {routes:?}");
    let missing: Vec<_> = routes.iter().filter(|(path, method)| !document["paths"][path][method].is_object()).collect();
    assert!(missing.is_empty(), "routes without documentation: {missing:?}");
    // Every response described; every error body declared as the problem documents it is
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            // The JSON-body layer answers 415 on every write under /api, whatever the handler takes
            if path.starts_with("/api/") && ["post", "put", "patch"].contains(&method.as_str()) {
                assert!(operation["responses"]["415"].is_object(), "{method} {path}: 415 undeclared");
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                let description = response["description"].as_str().unwrap_or_default();
                assert!(!description.is_empty(), "{method} {path} {status}: no description");
                if status.starts_with('4') || status.starts_with('5') {
                    let content = response["content"].as_object().map(|c| c.keys().cloned().collect::<Vec<_>>());
                    assert!(
                        content.as_deref().is_none_or(|c| c.iter().all(|t| t != "application/json")),
                        "{method} {path} {status}: errors are application/problem+json, not {content:?}"
                    );
                }
            }
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    let output = std::process::Command::new(validator_python())
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("python3 with openapi-spec-validator");
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "openapi-spec-validator refuses the document:\n{out}\n{err}");
}

/// Generated requests (valid and invalid, deterministic, bounded) against the embedded gateway with the
/// owner's key: no 5xx, no status and no media type the document does not declare.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_find_no_server_error_and_nothing_undocumented() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, address, key) = common::serve_first(dir.path()).await;
    let output = tokio::process::Command::new(validator_python())
        .args(["-m", "schemathesis.cli", "run", &format!("http://{address}/api/v1/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance"])
        .args(["--max-examples", "20", "--seed", "1", "--generation-deterministic", "--workers", "2"])
        .args(["--request-timeout", "10"])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "schemathesis found:\n{out}\n{err}");
    common::stop(gateway).await;
}
