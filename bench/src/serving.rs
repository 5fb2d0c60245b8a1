//! A gateway served over HTTP inside a benchmark, with its owner bootstrapped, and servers registered
//! through its REST API: what the `oauth` and `proxy` benches both start from; and the configuration every
//! bench's gateway starts from.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api::{Gateway, GatewayConfig, router};
use serde_json::Value;

/// The sealing key every bench's gateway uses (a test key: the benches keep nothing).
pub(crate) const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A bench's gateway on `database_url`: one sealing key, no NATS, no IdP, no journal, no health checks,
/// listening on any loopback port; each bench sets what it measures on top.
pub(crate) fn config(database_url: &str) -> GatewayConfig {
    GatewayConfig {
        database_url: database_url.to_owned(),
        nats_url: None,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        sealing_key_current: "k1".into(),
        sealing_keys: vec![("k1".into(), KEY.into())],
        upstream_allowlist: vec![],
        max_connections: 8,
        audit_signing_keys: vec![],
        public_url: None,
        idps: vec![],
        authz_max_lag: Duration::from_secs(5),
        registry_reads: api::RegistryReads::Public,
        oauth_clients: Vec::new(),
        call_journal: None,
        health_check_interval: None,
        proxy_limits: api::ProxyLimits::default(),
        // The benches drive one principal from one address far past any production budget.
        rate_limits: api::RateLimitConfig::off(),
        cors_origins: Vec::new(),
        readiness: api::ReadinessConfig::default(),
        rotate_signing_keys: true,
        break_glass: None,
        alerting: api::alerting::AlertingConfig::default(),
        shutdown_drain: std::time::Duration::ZERO,
        shutdown_timeout: std::time::Duration::from_secs(30),
        snapshots: api::SnapshotConfig::default(),
        analytics: true,
    }
}

/// Serves `gateway` on `listener` and bootstraps its owner: the owner's API key.
pub(crate) async fn serve_with_owner(gateway: &Gateway, listener: tokio::net::TcpListener) -> anyhow::Result<String> {
    let app = router(gateway.state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let command_id = uuid::Uuid::now_v7();
    let context = commands::servers::CommandContext {
        command_id,
        metadata: eventstore::Metadata::new(command_id, eventstore::Actor::system("bench"), chrono::Utc::now()),
    };
    let owner = commands::identity::bootstrap(&*gateway.state.store, "bench", &context).await?;
    Ok(owner.api_key.expose().to_owned())
}

/// Registers the server `body` at the gateway at `base` with the owner's `key`: its id. The key works once
/// the authorization model has loaded and applied the bootstrap, so a 401 or 503 is tried again for a while.
pub(crate) async fn register_server(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = http.post(format!("{base}/api/v1/servers")).bearer_auth(key).json(body).send().await?;
        let (status, created): (_, Value) = (created.status(), created.json().await?);
        if let Some(id) = created["id"].as_str() {
            return Ok(id.to_owned());
        }
        // 401 until the model knows the key; 503 while the model is still loading.
        anyhow::ensure!(matches!(status.as_u16(), 401 | 503) && Instant::now() < deadline, "no server: {created}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
