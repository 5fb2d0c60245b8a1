//! A rolling restart: two `mcp-gateway` processes on one PostgreSQL and NATS behind a load balancer
//! that acts as real ones do (it routes to instances whose `/ready` answers 200, and sends a request
//! elsewhere only when a connection to an instance could not even be made). Each instance in turn gets
//! SIGTERM and is started again while clients keep adding servers and reading them back. No request may
//! fail and no acknowledged command may be lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

mod common;

use common::DEADLINE;

const SEALING_KEY: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// One instance behind the balancer.
struct Instance {
    address: String,
    ready: AtomicBool,
}

/// The balancer's view of the instances.
struct Balancer {
    instances: Vec<Instance>,
    next: AtomicUsize,
    http: reqwest::Client,
}

impl Balancer {
    /// Forwards one request: to the next ready instance; to another when no connection could be made.
    async fn forward(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<String>,
    ) -> Result<(u16, String), String> {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready: Vec<&Instance> = self.instances.iter().filter(|i| i.ready.load(Ordering::Acquire)).collect();
            if let Some(instance) = ready.get(self.next.fetch_add(1, Ordering::Relaxed) % ready.len().max(1)) {
                let mut request =
                    self.http.request(method.clone(), format!("http://{}{path}", instance.address)).bearer_auth(key);
                if let Some(body) = &body {
                    request = request.header("content-type", "application/json").body(body.clone());
                }
                match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        return Ok((status, response.text().await.map_err(|e| format!("reading the answer: {e}"))?));
                    }
                    // Never reached the instance: safe to send elsewhere.
                    Err(error) if error.is_connect() => {}
                    Err(error) => return Err(format!("{method} {path} via {}: {error:?}", instance.address)),
                }
            }
            if std::time::Instant::now() > until {
                return Err(format!("{method} {path}: no instance took it within 20 s"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Asks every instance's `/ready` every 50 ms, for as long as the test runs.
    async fn watch(self: Arc<Self>) {
        let probe = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
        loop {
            for instance in &self.instances {
                let ready = probe
                    .get(format!("http://{}/ready", instance.address))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                instance.ready.store(ready, Ordering::Release);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn serve(dir: &std::path::Path, port: u16, env: &[(&str, &str)]) -> tokio::process::Child {
    let listen = format!("127.0.0.1:{port}");
    let mut all: Vec<(&str, &str)> = env.to_vec();
    all.push(("MGW_LISTEN", &listen));
    let (child, _, _) = common::serve_with(dir, &all).await;
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_no_command_and_fails_no_request() {
    let db = tests::PostgresServer::shared().unwrap().create_database().await.unwrap();
    let nats = tests::NatsServer::start().unwrap();
    let key = common::bootstrap(&db.url).await;
    let nats_url = nats.url();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("NATS_URL", nats_url.as_str()),
        ("MGW_SEALING_KEYS", SEALING_KEY),
        ("MGW_SHUTDOWN_DRAIN_S", "1"),
        ("MGW_SHUTDOWN_TIMEOUT_S", "10"),
        ("MGW_HEALTH_CHECK_INTERVAL_S", "0"),
        // Every request comes from this one address and principal, far past a production budget.
        ("MGW_RATE_LIMITS", "rest.per_address=off,rest.per_principal=off"),
    ];
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ports = [tests::free_port().unwrap(), tests::free_port().unwrap()];
    let mut children =
        vec![Some(serve(dirs[0].path(), ports[0], &env).await), Some(serve(dirs[1].path(), ports[1], &env).await)];
    let balancer = Arc::new(Balancer {
        instances: ports
            .iter()
            .map(|port| Instance { address: format!("127.0.0.1:{port}"), ready: AtomicBool::new(false) })
            .collect(),
        next: AtomicUsize::new(0),
        // A connection per request, as a balancer that must tell "never sent" from "sent" does.
        http: reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap(),
    });
    let watcher = tokio::spawn(balancer.clone().watch());
    tests::eventually(DEADLINE, "both instances ready", || async {
        balancer.instances.iter().all(|i| i.ready.load(Ordering::Acquire)).then_some(())
    })
    .await;

    // Clients: each adds a server and reads it back, again and again, at most 25 times a second.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..4 {
        let (balancer, stop, key) = (balancer.clone(), stop.clone(), key.clone());
        clients.push(tokio::spawn(async move {
            let (mut acknowledged, mut failures) = (Vec::new(), Vec::new());
            let mut pace = tokio::time::interval(Duration::from_millis(40));
            let mut n = 0;
            while !stop.load(Ordering::Acquire) {
                pace.tick().await;
                n += 1;
                let server = serde_json::json!({ "name": format!("io.example/roll-{client}-{n}"), "description": "d",
                                                 "transport": "streamable_http", "url": "https://93.184.216.34/mcp" });
                match balancer.forward(reqwest::Method::POST, "/api/v1/servers", &key, Some(server.to_string())).await {
                    Ok((201, body)) => {
                        let created: serde_json::Value = serde_json::from_str(&body).unwrap();
                        let (id, position) = (created["id"].as_str().unwrap(), created["position"].as_str().unwrap());
                        acknowledged.push(id.to_owned());
                        let read = format!("/api/v1/servers/{id}?min_position={position}");
                        match balancer.forward(reqwest::Method::GET, &read, &key, None).await {
                            Ok((200, _)) => {}
                            other => failures.push(format!("reading back {id}: {other:?}")),
                        }
                    }
                    other => failures.push(format!("adding a server: {other:?}")),
                }
            }
            (acknowledged, failures)
        }));
    }

    let let_load_run = || async {
        // Let the load run across each step: wait for progress rather than for time.
        let before = balancer.next.load(Ordering::Relaxed);
        tests::eventually(DEADLINE, "requests to flow", || async {
            (balancer.next.load(Ordering::Relaxed) >= before + 40).then_some(())
        })
        .await;
    };
    let_load_run().await;
    for (index, child) in children.iter_mut().enumerate() {
        common::stop(child.take().expect("running")).await;
        let_load_run().await;
        *child = Some(serve(dirs[index].path(), ports[index], &env).await);
        tests::eventually(DEADLINE, "the restarted instance ready", || async {
            balancer.instances[index].ready.load(Ordering::Acquire).then_some(())
        })
        .await;
        let_load_run().await;
    }
    stop.store(true, Ordering::Release);
    let mut acknowledged = Vec::new();
    let mut failures = Vec::new();
    for client in clients {
        let (ids, failed) = client.await.unwrap();
        acknowledged.extend(ids);
        failures.extend(failed);
    }
    assert!(failures.is_empty(), "{} failed requests: {failures:#?}", failures.len());
    assert!(acknowledged.len() >= 40, "a load worth the name: {} commands", acknowledged.len());
    // Every acknowledged command is there, on both instances (each follows the log on its own).
    for instance in &balancer.instances {
        tests::eventually(DEADLINE, "every acknowledged server on each instance", || async {
            for id in &acknowledged {
                let path = format!("/api/v1/servers/{id}");
                if common::http(&instance.address, "GET", &path, Some(&key), None).await?.0 != 200 {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }
    watcher.abort();
    for child in children.into_iter().flatten() {
        common::stop(child).await;
    }
}
