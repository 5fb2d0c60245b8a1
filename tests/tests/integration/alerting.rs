//! Alerting end to end: a rule raises an alert for a matching event, and it reaches a real SMTP server
//! (aiosmtpd, over STARTTLS), an HTTP webhook receiver (signed), and a Slack-shaped receiver (Block Kit)
//! exactly once, across a restart of the gateway; a receiver that keeps failing is retried, then
//! dead-lettered. Every raise and delivery is in the audit trail.

use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api_servers::{Api, start_with};
use crate::conformance::{Backend, on_every_backend};
use crate::support::DEADLINE;

on_every_backend!(an_alert_reaches_email_a_webhook_and_slack_once_across_a_restart_and_a_failing_one_is_dead_lettered);

const SECRET: &str = "a-webhook-secret-of-some-length";

/// What the receiver got: path, headers, body.
type Received = Arc<Mutex<Vec<(String, axum::http::HeaderMap, String)>>>;

/// An HTTP receiver on a loopback port: `/failing` answers 500, anything else 200. Its origin.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let kept = received.clone();
    let app =
        axum::Router::new().fallback(move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
            let kept = kept.clone();
            async move {
                let path = uri.path().to_owned();
                let failing = path == "/failing";
                kept.lock().unwrap().push((path, headers, body));
                if failing { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
            }
        });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (origin, received)
}

/// What arrived at `path`: headers, the body parsed, the body as sent.
fn at(received: &Received, path: &str) -> Vec<(axum::http::HeaderMap, Value, String)> {
    let received = received.lock().unwrap();
    received
        .iter()
        .filter(|(p, ..)| p == path)
        .map(|(_, headers, body)| (headers.clone(), serde_json::from_str(body).unwrap_or(Value::Null), body.clone()))
        .collect()
}

/// A Python with `aiosmtpd`: `MGW_PYTHON` (as `.ci/run` sets it), else a virtual environment made for it.
fn smtp_python() -> std::path::PathBuf {
    let has_it = |python: &std::path::Path| {
        std::process::Command::new(python).args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success())
    };
    if let Ok(python) = std::env::var("MGW_PYTHON")
        && has_it(std::path::Path::new(&python))
    {
        return python.into();
    }
    let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("aiosmtpd-venv");
    let python = venv.join("bin/python");
    if !has_it(&python) {
        let made = std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv).status().unwrap();
        assert!(made.success(), "python3 -m venv (Debian: python3-venv)");
        let installed =
            std::process::Command::new(venv.join("bin/pip")).args(["install", "--quiet", "aiosmtpd==1.4.6"]).status();
        assert!(installed.unwrap().success(), "pip install aiosmtpd==1.4.6");
    }
    python
}

fn hmac_hex(key: &[u8], data: &[u8]) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

async fn register(api: &Api, name: &str) {
    let created =
        api.call(Method::POST, "/api/v1/servers", Some(&crate::api_servers::server(name).to_string()), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
}

async fn an_alert_reaches_email_a_webhook_and_slack_once_across_a_restart_and_a_failing_one_is_dead_lettered(
    backend: Backend,
) {
    let smtp = tests::SmtpServer::start(&smtp_python()).unwrap();
    let (origin, received) = receiver().await;
    let alerting: api::alerting::AlertingConfig = serde_json::from_value(json!({
        "channels": [
            { "name": "hook", "kind": "webhook", "url": format!("{origin}/hook"), "secret": SECRET },
            { "name": "failing", "kind": "webhook", "url": format!("{origin}/failing"), "secret": SECRET },
            { "name": "slack", "kind": "slack", "url": format!("{origin}/slack") },
            { "name": "mail", "kind": "email", "smtp": smtp.address(), "starttls": "required",
              "ca_file": smtp.ca_file(), "from": "gateway@example.com", "to": ["ops@example.com"] },
        ],
        "rules": [ { "name": "server-registered", "events": ["ServerRegistered"], "severity": "critical" } ],
        "max_attempts": 3,
        "retry_base_ms": 20,
    }))
    .unwrap();
    alerting.validate().unwrap();
    let configured = alerting.clone();
    let api = start_with(backend, move |config| config.alerting = configured).await;
    // The reader starts at the log's head: wait until it has its checkpoint before the event.
    tests::eventually(DEADLINE, "the alert reader to start", || async {
        api::alerting::checkpoint(&api.gateway.state.tables).await.ok().flatten().map(|_| ())
    })
    .await;
    register(&api, "first").await;

    tests::eventually(DEADLINE, "the alert on every channel", || async {
        let failing = at(&received, "/failing").len();
        (at(&received, "/hook").len() == 1
            && at(&received, "/slack").len() == 1
            && smtp.messages().len() == 1
            && failing == 3)
            .then_some(())
    })
    .await;
    // The webhook is signed over its timestamp and body.
    let (headers, body, raw) = at(&received, "/hook").remove(0);
    let raw = raw.into_bytes();
    let timestamp = headers["x-mgw-timestamp"].to_str().unwrap();
    let expected = format!("sha256={}", hmac_hex(SECRET.as_bytes(), &[timestamp.as_bytes(), b".", &raw].concat()));
    assert_eq!(headers["x-mgw-signature"], expected.as_str(), "{body}");
    assert_eq!(body["rule"], "server-registered");
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["event"]["type"], "ServerRegistered");
    let alert = body["alert_id"].as_str().unwrap().to_owned();
    assert_eq!(headers["x-mgw-alert-id"], alert.as_str());
    // Slack gets Block Kit; the mail went over STARTTLS to the recipient.
    let (_, slack, _) = at(&received, "/slack").remove(0);
    assert_eq!(slack["blocks"][0]["type"], "header", "{slack}");
    assert!(slack["text"].as_str().unwrap().contains("server-registered"), "{slack}");
    let mail = smtp.messages().remove(0);
    assert!(mail.contains("To: ops@example.com") && mail.contains(&alert), "{mail}");
    // The trail: raised, delivered three times, dead-lettered once.
    let trail = |action: &'static str, count: usize| {
        let api = &api;
        async move {
            tests::eventually(DEADLINE, action, || async {
                let page = api.call(Method::GET, &format!("/api/v1/audit?action={action}"), None, &[]).await;
                let entries = page.body["entries"].as_array()?.clone();
                (entries.len() == count).then_some(entries)
            })
            .await
        }
    };
    trail("alert.raised", 1).await;
    let delivered = trail("alert.delivered", 3).await;
    let channels: Vec<&str> = delivered.iter().filter_map(|e| e["changes"]["channel"].as_str()).collect();
    assert!(["hook", "slack", "mail"].iter().all(|c| channels.contains(c)), "{delivered:?}");
    let dead = trail("alert.dead_lettered", 1).await;
    assert_eq!(dead[0]["changes"]["channel"], "failing");
    assert_eq!(dead[0]["changes"]["attempts"], 3);
    assert!(dead[0]["reason"].as_str().unwrap().contains("500"), "{dead:?}");

    // A restart: nothing is sent again, and the next alert is sent once.
    let mut config = crate::api_servers::config(&api.database_url(), None);
    config.alerting = alerting;
    let api = api.restarted(config).await;
    tests::eventually(DEADLINE, "the restarted gateway to serve", || async {
        (api.call(Method::GET, "/api/v1/servers", None, &[]).await.status == StatusCode::OK).then_some(())
    })
    .await;
    register(&api, "second").await;
    tests::eventually(DEADLINE, "the second alert", || async {
        (at(&received, "/hook").len() == 2 && smtp.messages().len() == 2 && at(&received, "/slack").len() == 2)
            .then_some(())
    })
    .await;
    let ids: std::collections::BTreeSet<String> =
        at(&received, "/hook").iter().map(|(_, body, _)| body["alert_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 2, "two alerts, each once");
    // The failing receiver: three attempts per alert, then the dead letter.
    tests::eventually(DEADLINE, "the second dead letter", || async {
        let page = api.call(Method::GET, "/api/v1/audit?action=alert.dead_lettered", None, &[]).await;
        (page.body["entries"].as_array()?.len() == 2).then_some(())
    })
    .await;
    assert_eq!(at(&received, "/failing").len(), 6);
    api.gateway.stop();
}
