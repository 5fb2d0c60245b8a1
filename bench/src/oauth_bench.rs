//! `bench oauth`: an MCP client's whole authorization through the gateway, over HTTP, with the certified
//! `oidc-provider` as the upstream IdP (no dynamic registration): the challenge, protected-resource and
//! server metadata, `/authorize` (the client registered once before its first flow), the consent page approved, the IdP's login form, the callback,
//! the token, and a first MCP call. Measured: the gateway's own time per flow (every request to the
//! gateway, less its own requests to the IdP during the callback, which `mgw_idp_request_duration_seconds`
//! times), flows per second with 8 clients in parallel, and refreshes per second.
//!
//! The gateway runs on PostgreSQL with production settings (fsync on) and its recorder installed as
//! `serve` installs it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api::{Gateway, GatewayConfig, router};
use domain::Role;
use domain::identity::{ClaimSource, RoleRule};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};
use tests::{OidcProvider, PostgresOptions, PostgresServer};

use crate::report::Row;

/// Options of `bench oauth`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Flows run one after the other, for the gateway's time per flow.
    #[arg(long, default_value_t = 200)]
    flows: usize,
    /// Flows run by 8 clients in parallel, for flows per second.
    #[arg(long, default_value_t = 400)]
    parallel_flows: usize,
    /// Refreshes run by 8 clients in parallel.
    #[arg(long, default_value_t = 8_000)]
    refreshes: usize,
}

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const CLIENT_REDIRECT: &str = "http://127.0.0.1:33418/callback";
const PARALLEL: usize = 8;

/// What one flow's client ends with, and the time its requests spent at the gateway.
struct Flow {
    client_id: String,
    refresh_token: String,
    gateway: Duration,
}

/// A client with a browser's cookie jar (every cookie name is distinct across the gateway and the IdP,
/// so one jar keyed by name serves both), timing its requests to the gateway.
struct Agent {
    http: reqwest::Client,
    gateway: String,
    cookies: BTreeMap<String, String>,
    at_gateway: Duration,
}

impl Agent {
    fn new(http: reqwest::Client, gateway: &str) -> Self {
        Self { http, gateway: gateway.to_owned(), cookies: BTreeMap::new(), at_gateway: Duration::ZERO }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder, url: &str) -> anyhow::Result<(u16, String, String)> {
        let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let started = Instant::now();
        let response = request.header("cookie", cookie).header("sec-fetch-site", "same-origin").send().await?;
        let status = response.status().as_u16();
        for set in response.headers().get_all("set-cookie") {
            if let Some((name, value)) = set.to_str()?.split(';').next().and_then(|pair| pair.split_once('=')) {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let body = response.text().await?;
        if url.starts_with(&self.gateway) {
            self.at_gateway += started.elapsed();
        }
        Ok((status, location, body))
    }

    async fn get(&mut self, url: &str) -> anyhow::Result<(u16, String, String)> {
        self.send(self.http.get(url), url).await
    }
}

/// The value of the hidden input `name` on a page.
fn hidden(page: &str, name: &str) -> anyhow::Result<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).ok_or_else(|| anyhow::anyhow!("no {name} on the page"))? + marker.len();
    Ok(page[start..].split('"').next().unwrap_or_default().to_owned())
}

fn query(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Registers a client, as an MCP client does once (the gateway bounds registrations per address: a
/// client registers once and authorizes many times).
async fn register(http: &reqwest::Client, gateway: &str) -> anyhow::Result<String> {
    let metadata = json!({ "redirect_uris": [CLIENT_REDIRECT], "client_name": "bench",
                           "token_endpoint_auth_method": "none",
                           "grant_types": ["authorization_code", "refresh_token"] });
    let answer = http.post(format!("{gateway}/register")).json(&metadata).send().await?;
    anyhow::ensure!(answer.status().as_u16() == 201, "registration: {}", answer.status());
    let body: Value = answer.json().await?;
    Ok(body["client_id"].as_str().unwrap_or_default().to_owned())
}

/// One whole flow as a registered MCP client (and the person at its browser) runs it: the challenge,
/// both metadata documents, `/authorize`, consent, the IdP, the callback, the token, a first call.
async fn flow(http: &reqwest::Client, gateway: &str, server_id: &str, client_id: &str) -> anyhow::Result<Flow> {
    let mut agent = Agent::new(http.clone(), gateway);
    let mcp = format!("{gateway}/servers/{server_id}/mcp");
    let (status, _, _) = agent.send(http.post(&mcp).body("{}"), &mcp).await?;
    anyhow::ensure!(status == 401, "the unauthenticated call: {status}");
    let resource_metadata = format!("{gateway}/.well-known/oauth-protected-resource/servers/{server_id}/mcp");
    anyhow::ensure!(agent.get(&resource_metadata).await?.0 == 200, "resource metadata");
    anyhow::ensure!(agent.get(&format!("{gateway}/.well-known/oauth-authorization-server")).await?.0 == 200);
    let client_id = client_id.to_owned();

    let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let challenge = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    let mut authorize = url::Url::parse(&format!("{gateway}/authorize"))?;
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", CLIENT_REDIRECT)
        .append_pair("state", "bench")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("scope", "mcp:tools")
        .append_pair("resource", &mcp);
    let (status, _, page) = agent.get(authorize.as_str()).await?;
    anyhow::ensure!(status == 200, "the consent page: {status}");
    let consent = format!("{gateway}/consent");
    let form =
        [("transaction", hidden(&page, "transaction")?), ("csrf", hidden(&page, "csrf")?), ("idp", "test".into())];
    let (status, mut next, _) = agent.send(http.post(&consent).form(&form), &consent).await?;
    anyhow::ensure!(status == 303, "consent: {status}");
    // The IdP: its redirects, its login form, until it sends the browser back to the gateway.
    for _ in 0..10 {
        if next.starts_with(gateway) {
            break;
        }
        let (status, location, _) = if next.contains("/interaction/") && !next.ends_with("/login") {
            agent.get(&next).await?;
            let login = format!("{next}/login");
            agent.send(http.post(&login).form(&[("username", "roles"), ("password", "pw")]), &login).await?
        } else {
            agent.get(&next).await?
        };
        anyhow::ensure!((300..400).contains(&status), "the IdP answered {status} at {next}");
        next = if location.starts_with('/') {
            let base = url::Url::parse(&next)?;
            base.join(&location)?.to_string()
        } else {
            location
        };
    }
    let (status, back, body) = agent.get(&next).await?;
    anyhow::ensure!(status == 303, "the callback: {status} {body}");
    let code = query(&back, "code").ok_or_else(|| anyhow::anyhow!("no code in {back}"))?;
    let token = format!("{gateway}/token");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CLIENT_REDIRECT),
        ("client_id", client_id.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    let (status, _, body) = agent.send(http.post(&token).form(&form), &token).await?;
    anyhow::ensure!(status == 200, "token: {status} {body}");
    let tokens: Value = serde_json::from_str(&body)?;
    let access = tokens["access_token"].as_str().unwrap_or_default().to_owned();
    let initialize = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "bench", "version": "1" } } });
    let call = http.post(&mcp).bearer_auth(&access).json(&initialize);
    let (status, _, body) = agent.send(call, &mcp).await?;
    anyhow::ensure!(status == 200, "the first MCP call: {status} {body}");
    Ok(Flow {
        client_id,
        refresh_token: tokens["refresh_token"].as_str().unwrap_or_default().to_owned(),
        gateway: agent.at_gateway,
    })
}

/// The total seconds the gateway spent in requests to the IdP so far.
fn idp_seconds(metrics: &PrometheusHandle) -> f64 {
    metrics
        .render()
        .lines()
        .find(|line| line.starts_with("mgw_idp_request_duration_seconds_sum"))
        .and_then(|line| line.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn percentile_ms(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

pub(crate) async fn run(options: Options) -> anyhow::Result<Vec<Row>> {
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("mgw_http_request_duration_seconds".into()), &api::http::LATENCY_BUCKETS)?
        .install_recorder()?;
    api::metrics_catalog::describe();
    let _upkeep = api::metrics_catalog::spawn_upkeep(metrics.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gateway_url = format!("http://{}", listener.local_addr()?);
    let users = json!({
        "clients": [{ "client_id": "gateway", "client_secret": "gateway-secret",
                      "redirect_uris": [format!("{gateway_url}/oauth/callback/test")] }],
        "users": { "roles": { "password": "pw", "sub": "sub-roles", "amr": ["pwd"],
                              "claims": { "name": "Rola", "roles": ["Gateway.Developer"] } } }
    });
    let provider = OidcProvider::start(&users.to_string())?;
    let server = PostgresServer::start(PostgresOptions::default())?;
    let db = server.create_database().await?;
    let config = GatewayConfig {
        database_url: db.url.clone(),
        nats_url: None,
        listen: listener.local_addr()?,
        sealing_key_current: "k1".into(),
        sealing_keys: vec![("k1".into(), KEY.into())],
        upstream_allowlist: vec![],
        max_connections: 16,
        audit_signing_keys: vec![],
        public_url: Some(gateway_url.clone()),
        idps: vec![api::oidc::IdpConfig {
            name: "test".into(),
            issuer: provider.issuer(),
            client_id: "gateway".into(),
            client_secret: "gateway-secret".into(),
            scopes: None,
            role_rules: vec![RoleRule {
                source: ClaimSource::Roles,
                value: "Gateway.Developer".into(),
                role: Role::Developer,
            }],
            kind: Default::default(),
        }],
        authz_max_lag: Duration::from_secs(5),
        registry_reads: api::RegistryReads::Public,
        oauth_clients: Vec::new(),
    };
    let gateway = Gateway::start(&config, Some(metrics.clone())).await?;
    let app = router(gateway.state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let owner = commands::identity::bootstrap(
        &*gateway.state.store,
        "bench",
        &commands::servers::CommandContext {
            command_id: uuid::Uuid::now_v7(),
            metadata: eventstore::Metadata::new(
                uuid::Uuid::now_v7(),
                eventstore::Actor::system("bench"),
                chrono::Utc::now(),
            ),
        },
    )
    .await?;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let server_body = json!({ "name": "io.example/bench", "description": "d", "transport": "streamable_http",
                              "url": "https://93.184.216.34/mcp", "access": { "roles": ["developer"] } });
    let created: Value = http
        .post(format!("{gateway_url}/api/v1/servers"))
        .bearer_auth(owner.api_key.expose())
        .json(&server_body)
        .send()
        .await?
        .json()
        .await?;
    let server_id = created["id"].as_str().ok_or_else(|| anyhow::anyhow!("no server: {created}"))?.to_owned();
    // The server known to the authorization model, and the IdP's discovery and keys fetched once.
    let client_id = register(&http, &gateway_url).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match flow(&http, &gateway_url, &server_id, &client_id).await {
            Ok(_) => break,
            Err(error) if Instant::now() < deadline => {
                tracing_free_wait(&error).await;
            }
            Err(error) => return Err(error.context("the first flow")),
        }
    }
    for _ in 0..20 {
        flow(&http, &gateway_url, &server_id, &client_id).await?;
    }

    // The gateway's own time, flow by flow: its requests, less its requests to the IdP in between.
    let mut own = Vec::with_capacity(options.flows);
    let mut whole = Vec::with_capacity(options.flows);
    let mut grants = Vec::new();
    for _ in 0..options.flows {
        let idp_before = idp_seconds(&metrics);
        let started = Instant::now();
        let done = flow(&http, &gateway_url, &server_id, &client_id).await?;
        whole.push(started.elapsed().as_secs_f64() * 1000.0);
        let idp = idp_seconds(&metrics) - idp_before;
        own.push((done.gateway.as_secs_f64() - idp).max(0.0) * 1000.0);
        grants.push(done);
    }
    own.sort_by(f64::total_cmp);
    whole.sort_by(f64::total_cmp);
    print_breakdown(&metrics);

    // Flows per second, 8 clients at once.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..PARALLEL {
        let (http, gateway_url, server_id) = (http.clone(), gateway_url.clone(), server_id.clone());
        let count = options.parallel_flows / PARALLEL + usize::from(worker < options.parallel_flows % PARALLEL);
        let client_id = register(&http, &gateway_url).await?;
        tasks.push(tokio::spawn(async move {
            for _ in 0..count {
                flow(&http, &gateway_url, &server_id, &client_id).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let flows_per_second = options.parallel_flows as f64 / started.elapsed().as_secs_f64();

    // Refreshes per second: 8 clients, each rotating its own grant's refresh token.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (worker, grant) in grants.into_iter().take(PARALLEL).enumerate() {
        let (http, token_url) = (http.clone(), format!("{gateway_url}/token"));
        let count = options.refreshes / PARALLEL + usize::from(worker < options.refreshes % PARALLEL);
        tasks.push(tokio::spawn(async move {
            let mut refresh = grant.refresh_token;
            for _ in 0..count {
                let form = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", grant.client_id.as_str()),
                ];
                let answer: Value = http.post(&token_url).form(&form).send().await?.json().await?;
                refresh = answer["refresh_token"]
                    .as_str()
                    .ok_or_else(|| anyhow::anyhow!("a refresh was refused: {answer}"))?
                    .to_owned();
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let refreshes_per_second = options.refreshes as f64 / started.elapsed().as_secs_f64();
    gateway.stop();

    Ok(vec![
        Row::at_most("gateway time per flow p50", percentile_ms(&own, 50.0), "ms", 15.0),
        Row::info("gateway time per flow p99", percentile_ms(&own, 99.0), "ms"),
        Row::info("whole flow p50 (the IdP's login included)", percentile_ms(&whole, 50.0), "ms"),
        Row::at_least("flows/s, 8 clients", flows_per_second, "flows/s", 100.0),
        Row::at_least("refreshes/s, 8 clients", refreshes_per_second, "refreshes/s", 1_000.0),
    ])
}

/// Where the gateway's time goes, route by route (mean per request so far, from its own histogram), and
/// its time in requests to the IdP: the profile the per-flow figure is read with.
fn print_breakdown(metrics: &PrometheusHandle) {
    let text = metrics.render();
    let mut sums = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some((name_labels, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        if let Some(labels) = name_labels.strip_prefix("mgw_http_request_duration_seconds_sum") {
            sums.insert(labels.to_owned(), value);
        } else if let Some(labels) = name_labels.strip_prefix("mgw_http_request_duration_seconds_count") {
            counts.insert(labels.to_owned(), value);
        }
    }
    eprintln!("gateway time by route (mean per request):");
    for (labels, sum) in &sums {
        if let Some(count) = counts.get(labels).filter(|c| **c > 0.0) {
            eprintln!("  {:>8.2} ms × {count:>6}  {labels}", sum / count * 1000.0);
        }
    }
    eprintln!("  IdP requests from the gateway: {:.3} s in all", idp_seconds(metrics));
}

/// Waits a little before the next try of the first flow (the server reaching the authorization model).
async fn tracing_free_wait(error: &anyhow::Error) {
    eprintln!("first flow not through yet: {error:#}");
    tokio::time::sleep(Duration::from_millis(200)).await;
}
