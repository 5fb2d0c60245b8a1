//! `bench oauth`: an MCP client's whole authorization over HTTP, with the certified `oidc-provider` as the
//! upstream IdP (no dynamic registration): the challenge, protected-resource and server metadata,
//! `/authorize` (the client registered once before its first flow), the consent page approved, the IdP's
//! login form, the callback, the token, and a first MCP call. The same client and IdP run the same flow
//! through FastMCP's OAuth proxy (`OIDCProxy`, set up by the bench in a virtual environment of its own),
//! one flow each in turn. Measured: the gateway's own time per flow (every request to the gateway, less
//! its own requests to the IdP during the callback, which `mgw_idp_request_duration_seconds` times), both
//! whole flows and their ratio per round, flows per second with 8 clients in parallel, and refreshes per
//! second.
//!
//! The gateway runs on PostgreSQL with production settings (fsync on) and its recorder installed as
//! `serve` installs it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use api::{Gateway, GatewayConfig};
use domain::Role;
use domain::identity::{ClaimSource, RoleRule};
use metrics_exporter_prometheus::PrometheusHandle;
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
    #[arg(long, default_value_t = 200)]
    parallel_flows: usize,
    /// Refreshes run by 8 clients in parallel.
    #[arg(long, default_value_t = 8_000)]
    refreshes: usize,
}

const CLIENT_REDIRECT: &str = "http://127.0.0.1:33418/callback";
const PARALLEL: usize = 8;

/// What one flow's client ends with, and the time its requests spent at the gateway.
struct Flow {
    client_id: String,
    refresh_token: String,
    /// Time in requests to the target (the gateway, or FastMCP).
    at_target: Duration,
}

/// A client with a browser's cookie jar (every cookie name is distinct across the gateway and the IdP,
/// so one jar keyed by name serves both), timing its requests to the gateway.
struct Agent {
    http: reqwest::Client,
    base: String,
    cookies: BTreeMap<String, String>,
    at_target: Duration,
}

impl Agent {
    fn new(http: reqwest::Client, base: &str) -> Self {
        Self { http, base: base.to_owned(), cookies: BTreeMap::new(), at_target: Duration::ZERO }
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
        if url.starts_with(&self.base) {
            self.at_target += started.elapsed();
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

/// Where a flow runs: the gateway, or FastMCP's OAuth proxy beside it.
#[derive(Clone)]
struct Target {
    /// Its origin.
    base: String,
    /// The MCP endpoint (the resource).
    mcp: String,
    /// Its protected-resource metadata.
    resource_metadata: String,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gateway,
    FastMcp,
}

/// Registers a client, as an MCP client does once (the gateway bounds registrations per address: a
/// client registers once and authorizes many times).
async fn register(http: &reqwest::Client, target: &Target) -> anyhow::Result<String> {
    let metadata = json!({ "redirect_uris": [CLIENT_REDIRECT], "client_name": "bench",
                           "token_endpoint_auth_method": "none",
                           "grant_types": ["authorization_code", "refresh_token"] });
    let answer = http.post(format!("{}/register", target.base)).json(&metadata).send().await?;
    anyhow::ensure!(answer.status().is_success(), "registration: {}", answer.status());
    let body: Value = answer.json().await?;
    Ok(body["client_id"].as_str().unwrap_or_default().to_owned())
}

/// One whole flow as a registered MCP client (and the person at its browser) runs it: the challenge,
/// both metadata documents, `/authorize`, consent, the IdP, the callback, the token, a first call.
async fn flow(http: &reqwest::Client, target: &Target, client_id: &str) -> anyhow::Result<Flow> {
    let base = target.base.as_str();
    let mut agent = Agent::new(http.clone(), base);
    let mcp = target.mcp.as_str();
    let accept = "application/json, text/event-stream";
    let (status, _, _) = agent.send(http.post(mcp).header("accept", accept).body("{}"), mcp).await?;
    anyhow::ensure!(status == 401, "the unauthenticated call: {status}");
    let (status, _, resource_metadata) = agent.get(&target.resource_metadata).await?;
    anyhow::ensure!(status == 200, "resource metadata: {status}");
    // The scope the resource advertises, as the SDK clients choose it (none when it advertises none).
    let resource_metadata: Value = serde_json::from_str(&resource_metadata)?;
    let scope = resource_metadata["scopes_supported"]
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    anyhow::ensure!(agent.get(&format!("{base}/.well-known/oauth-authorization-server")).await?.0 == 200);

    let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let challenge = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    let mut authorize = url::Url::parse(&format!("{base}/authorize"))?;
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", CLIENT_REDIRECT)
        .append_pair("state", "bench")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", mcp);
    if !scope.is_empty() {
        authorize.query_pairs_mut().append_pair("scope", &scope);
    }
    let (status, location, page) = agent.get(authorize.as_str()).await?;
    // The consent page, approved: each its own way.
    let (status, mut next, _) = match target.kind {
        Kind::Gateway => {
            anyhow::ensure!(status == 200, "the consent page: {status}");
            let consent = format!("{base}/consent");
            let form = [
                ("transaction", hidden(&page, "transaction")?),
                ("csrf", hidden(&page, "csrf")?),
                ("idp", "test".into()),
            ];
            agent.send(http.post(&consent).form(&form), &consent).await?
        }
        Kind::FastMcp => {
            anyhow::ensure!(status == 302, "FastMCP's redirect to its consent page: {status}");
            let consent = if location.starts_with('/') { format!("{base}{location}") } else { location };
            let (status, _, page) = agent.get(&consent).await?;
            anyhow::ensure!(status == 200, "FastMCP's consent page: {status}");
            let form = [
                ("txn_id", hidden_spaced(&page, "txn_id")?),
                ("csrf_token", hidden_spaced(&page, "csrf_token")?),
                ("submit", "true".into()),
                ("action", "approve".into()),
            ];
            agent.send(http.post(&consent).form(&form), &consent).await?
        }
    };
    anyhow::ensure!((300..400).contains(&status), "consent: {status}");
    // The IdP: its redirects, its login form, until it sends the browser back.
    for _ in 0..10 {
        if next.starts_with(base) {
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
        next = if location.starts_with('/') { url::Url::parse(&next)?.join(&location)?.to_string() } else { location };
    }
    let (status, back, body) = agent.get(&next).await?;
    anyhow::ensure!((300..400).contains(&status), "the callback: {status} {body}");
    let code = query(&back, "code").ok_or_else(|| anyhow::anyhow!("no code in {back}"))?;
    let token = format!("{base}/token");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CLIENT_REDIRECT),
        ("client_id", client_id),
        ("code_verifier", verifier.as_str()),
        ("resource", mcp),
    ];
    let (status, _, body) = agent.send(http.post(&token).form(&form), &token).await?;
    anyhow::ensure!(status == 200, "token: {status} {body}");
    let tokens: Value = serde_json::from_str(&body)?;
    let access = tokens["access_token"].as_str().unwrap_or_default().to_owned();
    let initialize = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "bench", "version": "1" } } });
    let call = http.post(mcp).bearer_auth(&access).header("accept", accept).json(&initialize);
    let (status, _, body) = agent.send(call, mcp).await?;
    anyhow::ensure!(status == 200, "the first MCP call: {status} {body}");
    Ok(Flow {
        client_id: client_id.to_owned(),
        refresh_token: tokens["refresh_token"].as_str().unwrap_or_default().to_owned(),
        at_target: agent.at_target,
    })
}

/// The value of the hidden input `name` written as `name="…" value="…" />` with any spacing.
fn hidden_spaced(page: &str, name: &str) -> anyhow::Result<String> {
    let marker = format!("name=\"{name}\"");
    let at = page.find(&marker).ok_or_else(|| anyhow::anyhow!("no {name} on the page"))? + marker.len();
    let rest = &page[at..];
    let start = rest.find("value=\"").ok_or_else(|| anyhow::anyhow!("{name} has no value"))? + "value=\"".len();
    Ok(rest[start..].split('"').next().unwrap_or_default().to_owned())
}

/// Runs `count` flows with 8 clients at once (each registered once); flows per second.
async fn flows_per_second(http: &reqwest::Client, target: &Target, count: usize) -> anyhow::Result<f64> {
    let mut clients = Vec::new();
    for _ in 0..PARALLEL {
        clients.push(register(http, target).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (worker, client_id) in clients.into_iter().enumerate() {
        let (http, target) = (http.clone(), target.clone());
        let count = count / PARALLEL + usize::from(worker < count % PARALLEL);
        tasks.push(tokio::spawn(async move {
            for _ in 0..count {
                flow(&http, &target, &client_id).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Refreshes per second: 8 clients, each rotating its own grant's refresh token.
async fn refreshes_per_second(
    http: &reqwest::Client,
    target: &Target,
    grants: Vec<Flow>,
    count: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (worker, grant) in grants.into_iter().take(PARALLEL).enumerate() {
        let (http, token_url) = (http.clone(), format!("{}/token", target.base));
        let count = count / PARALLEL + usize::from(worker < count % PARALLEL);
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
    Ok(count as f64 / started.elapsed().as_secs_f64())
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

/// An HTTP client that follows no redirect (the flow follows them itself, with its cookies).
fn new_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?)
}

/// FastMCP's OAuth proxy, started from the bench's own virtual environment (made on first use with the
/// version `bench/peers/requirements.txt` pins: the bench sets its peers up, CI never does).
async fn start_fastmcp(issuer: &str, port: u16) -> anyhow::Result<tokio::process::Child> {
    let peers = crate::python_peer::peers_dir();
    let python = crate::python_peer::venv("mgw-bench-fastmcp-venv", "requirements.txt")?.join("bin/python");
    let mut child = tokio::process::Command::new(python)
        .arg(peers.join("fastmcp_oauth_proxy.py"))
        .args([issuer, &port.to_string()])
        // FastMCP keeps its OAuth state on disk through `caio`, whose default io_uring backend polls its
        // submission queue from a kernel thread that spins a whole core, paused or not: on a 2-core machine
        // that is half the CPU taken from whichever program is measured. Linux AIO does the same file work
        // without the spinner (and makes FastMCP itself faster here).
        .env("CAIO_IMPL", "linux")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("FastMCP exited before listening: {status}");
        }
        anyhow::ensure!(Instant::now() < deadline, "FastMCP did not listen within a minute");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn run(options: Options) -> anyhow::Result<Vec<Row>> {
    let metrics = api::metrics_catalog::install()?;
    let _upkeep = api::metrics_catalog::spawn_upkeep(metrics.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gateway_url = format!("http://{}", listener.local_addr()?);
    let fastmcp_port = tests::free_port()?;
    let fastmcp_url = format!("http://127.0.0.1:{fastmcp_port}");
    // One IdP for both, each its own client at it.
    let users = json!({
        "clients": [
            { "client_id": "gateway", "client_secret": "gateway-secret",
              "redirect_uris": [format!("{gateway_url}/oauth/callback/test")] },
            { "client_id": "fastmcp", "client_secret": "fastmcp-secret",
              "redirect_uris": [format!("{fastmcp_url}/auth/callback")] },
        ],
        "users": { "roles": { "password": "pw", "sub": "sub-roles", "amr": ["pwd"],
                              "claims": { "name": "Rola", "roles": ["Gateway.Developer"] } } }
    });
    let provider = OidcProvider::start(&users.to_string())?;
    let server = PostgresServer::start(PostgresOptions::default())?;
    let db = server.create_database().await?;
    let config = GatewayConfig {
        listen: listener.local_addr()?,
        max_connections: 16,
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
        ..crate::serving::config(&db.url)
    };
    let gateway = Gateway::start(&config, Some(metrics.clone())).await?;
    let key = crate::serving::serve_with_owner(&gateway, listener).await?;
    let http = new_client()?;
    let server_body = json!({ "name": "io.example/bench", "description": "d", "transport": "streamable_http",
                              "url": "https://93.184.216.34/mcp", "access": { "roles": ["developer"] } });
    let server_id = crate::serving::register_server(&http, &gateway_url, &key, &server_body).await?;
    let ours = Target {
        base: gateway_url.clone(),
        mcp: format!("{gateway_url}/servers/{server_id}/mcp"),
        resource_metadata: format!("{gateway_url}/.well-known/oauth-protected-resource/servers/{server_id}/mcp"),
        kind: Kind::Gateway,
    };
    let fastmcp = start_fastmcp(&provider.issuer(), fastmcp_port).await?;
    let theirs = Target {
        base: fastmcp_url.clone(),
        mcp: format!("{fastmcp_url}/mcp"),
        resource_metadata: format!("{fastmcp_url}/.well-known/oauth-protected-resource/mcp"),
        kind: Kind::FastMcp,
    };

    // Warm-up: the server known to the authorization model, the IdP's discovery and keys fetched once.
    let our_client = register(&http, &ours).await?;
    let their_client = register(&http, &theirs).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(error) = flow(&http, &ours, &our_client).await {
        anyhow::ensure!(Instant::now() < deadline, "the first flow through the gateway: {error:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..20 {
        flow(&http, &ours, &our_client).await?;
        flow(&http, &theirs, &their_client).await?;
    }
    crate::python_peer::signal(&fastmcp, "STOP")?;

    // One flow through each in turn, round by round: the gateway's own time (its requests, less its own
    // requests to the IdP in between), each whole flow, and their ratio per round.
    let mut own = Vec::with_capacity(options.flows);
    let mut whole = Vec::with_capacity(options.flows);
    let mut peer_whole = Vec::with_capacity(options.flows);
    let mut peer_own = Vec::with_capacity(options.flows);
    let mut ratios = Vec::with_capacity(options.flows);
    let mut grants = Vec::new();
    for _ in 0..options.flows {
        let idp_before = idp_seconds(&metrics);
        let started = Instant::now();
        let done = flow(&http, &ours, &our_client).await?;
        let ours_ms = started.elapsed().as_secs_f64() * 1000.0;
        let idp = idp_seconds(&metrics) - idp_before;
        own.push((done.at_target.as_secs_f64() - idp).max(0.0) * 1000.0);
        grants.push(done);
        crate::python_peer::signal(&fastmcp, "CONT")?;
        // Connections of its own: a resumed uvicorn closes the ones it kept idle past its keep-alive
        // while paused, and a pooled one could be picked as it closes.
        let their_http = new_client()?;
        let started = Instant::now();
        let peer = flow(&their_http, &theirs, &their_client).await?;
        let theirs_ms = started.elapsed().as_secs_f64() * 1000.0;
        crate::python_peer::signal(&fastmcp, "STOP")?;
        peer_own.push(peer.at_target.as_secs_f64() * 1000.0);
        whole.push(ours_ms);
        peer_whole.push(theirs_ms);
        ratios.push(theirs_ms / ours_ms);
    }
    for list in [&mut own, &mut whole, &mut peer_whole, &mut peer_own, &mut ratios] {
        list.sort_by(f64::total_cmp);
    }
    print_breakdown(&metrics);

    let our_flows = flows_per_second(&http, &ours, options.parallel_flows).await?;
    let our_refreshes = refreshes_per_second(&http, &ours, grants, options.refreshes).await?;
    crate::python_peer::signal(&fastmcp, "CONT")?;
    let their_flows = flows_per_second(&new_client()?, &theirs, options.parallel_flows).await?;
    gateway.stop();

    let median = |sorted: &[f64]| percentile_ms(sorted, 50.0);
    Ok(vec![
        Row::at_most("gateway time per flow p50 (its IdP requests excluded)", median(&own), "ms", 15.0),
        Row::info("gateway time per flow p99", percentile_ms(&own, 99.0), "ms"),
        Row::against(
            "whole flow p50, gateway vs FastMCP OAuthProxy (ratio: FastMCP / gateway per round)",
            median(&whole),
            "ms",
            median(&peer_whole),
            median(&ratios),
            2.0,
        ),
        Row::info("FastMCP time at its endpoints per flow p50 (its IdP requests included)", median(&peer_own), "ms"),
        Row::at_least("flows/s, 8 clients", our_flows, "flows/s", 100.0),
        Row::compared(
            "flows/s, 8 clients, gateway vs FastMCP",
            our_flows,
            "flows/s",
            their_flows,
            our_flows / their_flows,
        ),
        Row::at_least("refreshes/s, 8 clients", our_refreshes, "refreshes/s", 1_000.0),
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
