//! The OpenAPI document: every route the router serves is in it with its methods (read from the route
//! tables in the source, so a new route without an annotation fails here), and it passes the
//! `openapi-spec-validator` (PyPI, installed by `.ci/run`).

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

/// The validator pinned in `.ci/run`.
const VALIDATOR: &str = "openapi-spec-validator==0.9.0";

/// A Python that has the validator: `MGW_PYTHON` (as `.ci/run` sets it), else `python3` when it has it,
/// else a virtual environment made for it in the build's temporary directory on first use (as the
/// harness installs its npm peers).
fn validator_python() -> std::path::PathBuf {
    if let Ok(python) = std::env::var("MGW_PYTHON") {
        return python.into();
    }
    let has_it = |python: &std::path::Path| {
        std::process::Command::new(python)
            .args(["-c", "import openapi_spec_validator"])
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
        let installed = std::process::Command::new(pip).args(["install", "--quiet", VALIDATOR]).status().unwrap();
        assert!(installed.success(), "pip install {VALIDATOR}");
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
